"""deploy/kubernetes as `kubectl kustomize` renders it, and the checks every rendered object must pass.

Core kinds are validated against the OpenAPI schemas of one pinned Kubernetes version (the
`kubernetes-validate` package, strict: unknown fields are errors, as `kubectl apply --validate=strict`
makes them). Custom resources go to the validators that kubernetes-models compiles from each operator's
API (npm packages pinned in tests/deploy/crd/package-lock.json; tests/deploy/crd/validate.mjs runs them).
RabbitMQ's cluster operator has no such package on the registries this project reaches: RabbitmqCluster is
checked against RABBITMQ_CLUSTER below, a schema of our own of the fields this deployment sets (names and
types as the operator's API reference documents them), which rejects any other field.

Two files in deploy/kubernetes/base are generated from the compose deployment's, since kustomize may not
read files outside its directory: `python -m tests.deploy.kube` writes them again after an edit of
deploy/prometheus/alerts.yml or deploy/postgres-exporter/queries.yaml (tests/deploy/test_parity.py fails
until then).
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from kubernetes_validate.utils import schema_contents
from referencing import Registry, Resource

from tests.deploy.promql import DEPLOY

KUBERNETES = DEPLOY / "kubernetes"
BASE = KUBERNETES / "base"
OVERLAYS = sorted(p.parent.name for p in (KUBERNETES / "overlays").glob("*/kustomization.yaml"))
KUBERNETES_VERSION = "1.32"
"""The Kubernetes whose schemas every core object must fit (kubectl on these machines is 1.32)."""
CRD_VALIDATOR = Path(__file__).with_name("crd")
CUSTOM_GROUPS = ("keda.sh", "postgresql.cnpg.io", "rabbitmq.com", "monitoring.coreos.com")

PROMETHEUS_RULE = BASE / "prometheus-rule.yaml"
EXPORTER_QUERIES = BASE / "postgres-exporter-queries.yaml"
ALERTS = DEPLOY / "prometheus/alerts.yml"
QUERIES = DEPLOY / "postgres-exporter/queries.yaml"

Object = dict[str, Any]

_QUANTITY = {"type": ["string", "integer"]}
_RESOURCES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "requests": {"type": "object", "additionalProperties": _QUANTITY},
        "limits": {"type": "object", "additionalProperties": _QUANTITY},
    },
}
RABBITMQ_CLUSTER: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "rabbitmq.com/v1beta1"},
        "kind": {"const": "RabbitmqCluster"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "replicas": {"type": "integer", "minimum": 0},
                "image": {"type": "string"},
                "resources": _RESOURCES,
                "persistence": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"storage": _QUANTITY, "storageClassName": {"type": "string"}},
                },
                "rabbitmq": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "additionalPlugins": {
                            "type": "array",
                            "maxItems": 100,
                            "items": {"type": "string", "pattern": "^\\w+$", "minLength": 1},
                        },
                        "additionalConfig": {"type": "string", "maxLength": 100000},
                    },
                },
                "service": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "type": {"enum": ["ClusterIP", "LoadBalancer", "NodePort"]},
                        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                },
            },
        },
    },
}


@dataclass(frozen=True)
class Problem:
    """One object that does not validate: which object, which field, what is wrong."""

    kind: str
    name: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}: {self.field or '(the object)'}: {self.message}"


def name_of(obj: Object) -> str:
    return str(obj.get("metadata", {}).get("name", "?"))


@functools.cache
def render(overlay: str) -> tuple[Object, ...]:
    """Every object `kubectl kustomize deploy/kubernetes/overlays/<overlay>` renders."""
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if rendered.returncode != 0:
        raise AssertionError(f"kubectl kustomize overlays/{overlay}: {rendered.stderr}")
    return tuple(obj for obj in yaml.safe_load_all(rendered.stdout) if obj)


def kubectl_missing() -> str | None:
    return None if shutil.which("kubectl") else "kubectl is not installed (kubectl kustomize renders)"


def is_custom(obj: Object) -> bool:
    return str(obj.get("apiVersion", "")).split("/")[0] in CUSTOM_GROUPS


def core_problems(obj: Object) -> list[Problem]:
    """Against the pinned Kubernetes version's schema, unknown fields included: every error, not only the
    first (kubernetes_validate.validate stops at one; this is its lookup with all of jsonschema's errors)."""
    kind, name = str(obj.get("kind", "?")), name_of(obj)
    api_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", str(obj.get("apiVersion", "")))
    directory = f"kubernetes-json-schema/v{KUBERNETES_VERSION}.0-local-strict"
    try:
        schema = schema_contents(f"{directory}/{kind.lower()}-{api_version}.json", KUBERNETES_VERSION)
    except FileNotFoundError:
        return [
            Problem(kind, name, "apiVersion", f"Kubernetes {KUBERNETES_VERSION} has no {api_version} {kind}")
        ]
    definitions = schema_contents(f"{directory}/_definitions.json", KUBERNETES_VERSION)
    registry: Registry[Any] = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(definitions) @ registry
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    return [
        Problem(kind, name, ".".join(str(p) for p in error.absolute_path), error.message)
        for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    ]


def custom_problems(objects: list[Object]) -> list[Problem]:
    """Custom resources against their operators' schemas; one Problem per object with no schema here."""
    problems: list[Problem] = []
    rest: list[Object] = []
    for obj in objects:
        if obj.get("apiVersion") == "rabbitmq.com/v1beta1" and obj.get("kind") == "RabbitmqCluster":
            for error in jsonschema.Draft202012Validator(RABBITMQ_CLUSTER).iter_errors(obj):
                field = ".".join(str(p) for p in error.absolute_path)
                problems.append(Problem(obj["kind"], name_of(obj), field, error.message))
        else:
            rest.append(obj)
    if not rest:
        return problems
    validated = subprocess.run(
        ["node", str(CRD_VALIDATOR / "validate.mjs")],
        input=json.dumps(rest),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=CRD_VALIDATOR,
    )
    if validated.returncode != 0:
        raise AssertionError(f"tests/deploy/crd/validate.mjs failed: {validated.stderr}")
    for obj, result in zip(rest, json.loads(validated.stdout), strict=True):
        if not result["validated"]:
            problems.append(Problem(obj["kind"], name_of(obj), "apiVersion", "no schema to validate it with"))
            continue
        for error in result["errors"]:
            field = ".".join(part for part in error["path"].split("/") if part)
            problems.append(Problem(obj["kind"], name_of(obj), field, error["message"]))
    return problems


def problems(objects: list[Object]) -> list[Problem]:
    """Every problem of every object, core and custom."""
    found = [p for obj in objects if not is_custom(obj) for p in core_problems(obj)]
    return found + custom_problems([obj for obj in objects if is_custom(obj)])


def crd_validator_missing() -> str | None:
    if not shutil.which("node"):
        return "node is not installed (the CRD validators are npm packages; ./backbone test installs them)"
    if not (CRD_VALIDATOR / "node_modules").is_dir():
        return "run `npm ci` in tests/deploy/crd (./backbone test does)"
    return None


# ---------------------------------------------------------------- the files generated from compose's


class _Block(str):
    """A string dumped as a YAML literal block."""


def _block(dumper: yaml.SafeDumper, value: _Block) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style="|")


def _dump(value: Any) -> str:
    def blocks(item: Any) -> Any:
        if isinstance(item, dict):
            return {k: blocks(v) for k, v in item.items()}
        if isinstance(item, list):
            return [blocks(v) for v in item]
        if isinstance(item, str) and "\n" in item:
            return _Block(item)
        return item

    dumper = type("Dumper", (yaml.SafeDumper,), {})
    dumper.add_representer(_Block, _block)
    return yaml.dump(blocks(value), Dumper=dumper, sort_keys=False, width=110, allow_unicode=True)


def prometheus_rule_text() -> str:
    """base/prometheus-rule.yaml: deploy/prometheus/alerts.yml's groups in a PrometheusRule."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "backbone-alerts"},
        "spec": {"groups": groups},
    }
    return (
        "# Generated from deploy/prometheus/alerts.yml by `python -m tests.deploy.kube`: the same alert\n"
        "# rules as the compose deployment's Prometheus. Edit alerts.yml, not this file.\n" + _dump(rule)
    )


def exporter_queries_text() -> str:
    """base/postgres-exporter-queries.yaml: deploy/postgres-exporter/queries.yaml in a ConfigMap."""
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "postgres-exporter-queries"},
        "data": {"queries.yaml": QUERIES.read_text()},
    }
    return (
        "# Generated from deploy/postgres-exporter/queries.yaml by `python -m tests.deploy.kube`: the\n"
        "# exporter's custom queries, as compose mounts them. Edit queries.yaml, not this file.\n"
        + _dump(config)
    )


def sync() -> None:
    """Write the generated files again."""
    PROMETHEUS_RULE.write_text(prometheus_rule_text())
    EXPORTER_QUERIES.write_text(exporter_queries_text())


if __name__ == "__main__":
    sync()
    for path in (PROMETHEUS_RULE, EXPORTER_QUERIES):
        print(f"wrote {path.relative_to(DEPLOY.parent)}")
