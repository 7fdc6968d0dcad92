"""compose.yaml and deploy/kubernetes run the same parts with the same commands and environment, so the two
cannot drift apart: a part, a flag or a setting added to one and not the other fails here. What differs is
named below, with why."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy.composefile import TEST_ENV, environment, load
from tests.deploy.kube import (
    ALERTS,
    EXPORTER_QUERIES,
    PROMETHEUS_RULE,
    QUERIES,
    exporter_queries_text,
    kubectl_missing,
    prometheus_rule_text,
    render,
)
from tests.deploy.test_compose import backbone_services, health_url, known_settings
from tests.deploy.test_kubernetes import container, of_kind

pytestmark = pytest.mark.skipif(kubectl_missing() is not None, reason=kubectl_missing() or "")

WHERE_THEY_ARE = {"DATABASE_URL", "DATABASE_URL_READ", "AMQP_URL", "OTEL_EXPORTER_OTLP_ENDPOINT"}
"""Addresses: compose's service names and .env passwords, the operators' Services and Secrets."""
FROM_SECRETS = {"JWT_SECRET"}
"""A value in compose's .env, a Secret on Kubernetes."""
KUBERNETES_ONLY = {"read-api": {"DATABASE_URL_READ"}}
"""CloudNativePG's streaming replicas: compose runs one PostgreSQL server."""


def compose_parts() -> dict[str, dict[str, Any]]:
    return backbone_services(load(TEST_ENV)["services"])


def kubernetes_parts(overlay: str) -> dict[str, dict[str, Any]]:
    objects = render(overlay)
    parts = {name: d for name, d in of_kind(objects, "Deployment").items() if name != "postgres-exporter"}
    return {**parts, **of_kind(objects, "Job")}


def kubernetes_env(overlay: str, workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every variable the part's container gets: its ConfigMaps' data, then its own env (which wins)."""
    config_maps = of_kind(render(overlay), "ConfigMap")
    spec = container(workload)
    env: dict[str, dict[str, Any]] = {}
    for source in spec.get("envFrom", []):
        data = config_maps[source["configMapRef"]["name"]]["data"]
        env.update({name: {"name": name, "value": value} for name, value in data.items()})
    env.update({item["name"]: item for item in spec.get("env", [])})
    return env


def helpers(env: dict[str, dict[str, Any]]) -> set[str]:
    """Variables only there to be interpolated into others ($(NAME)), which no backbone code reads."""
    used = {
        name for item in env.values() for name in re.findall(r"\$\(([A-Z0-9_]+)\)", item.get("value", ""))
    }
    return used - known_settings()


@pytest.fixture(scope="module", params=["dev", "production"])
def overlay(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def test_the_same_parts_with_the_same_commands(overlay: str) -> None:
    compose, kubernetes = compose_parts(), kubernetes_parts(overlay)
    assert set(compose) == set(kubernetes)
    for name, service in compose.items():
        assert container(kubernetes[name])["args"] == [str(w) for w in service["command"]], name


def test_the_same_replicas_or_autoscaled_around_them(overlay: str) -> None:
    objects = render(overlay)
    scaled = {
        a["spec"]["scaleTargetRef"]["name"]: a["spec"]
        for a in of_kind(objects, "HorizontalPodAutoscaler").values()
    }
    keda = {s["spec"]["scaleTargetRef"]["name"]: s["spec"] for s in of_kind(objects, "ScaledObject").values()}
    kubernetes = kubernetes_parts(overlay)
    for name, service in compose_parts().items():
        if service["command"] == ["migrate"]:
            continue
        replicas = service["deploy"]["replicas"]
        if name in scaled:
            assert scaled[name]["minReplicas"] <= replicas <= scaled[name]["maxReplicas"], name
        elif name in keda:
            assert keda[name]["minReplicaCount"] <= replicas <= keda[name]["maxReplicaCount"], name
        else:
            assert kubernetes[name]["spec"]["replicas"] == replicas, name


def test_the_same_environment(overlay: str) -> None:
    kubernetes = kubernetes_parts(overlay)
    for name, service in compose_parts().items():
        compose_env = environment(service)
        env = kubernetes_env(overlay, kubernetes[name])
        names = set(env) - helpers(env) - KUBERNETES_ONLY.get(name, set())
        assert names == set(compose_env), (
            f"{name}: only in compose {sorted(set(compose_env) - names)}, "
            f"only on Kubernetes {sorted(names - set(compose_env))}"
        )
        for key, value in compose_env.items():
            item = env[key]
            if key in FROM_SECRETS:
                assert "secretKeyRef" in item.get("valueFrom", {}), f"{name}: {key} must come from a Secret"
            elif key in WHERE_THEY_ARE:
                there = urlsplit(item["value"])
                here = urlsplit(value)
                assert (there.scheme, there.port, there.path) == (here.scheme, here.port, here.path), (
                    name,
                    key,
                )
            else:
                assert item.get("value") == value, (
                    f"{name}: {key} is {item.get('value')!r} here, {value!r} in compose"
                )


def test_the_same_health_checks(overlay: str) -> None:
    kubernetes = kubernetes_parts(overlay)
    for name, service in compose_parts().items():
        if service["command"] == ["migrate"]:
            continue
        port, path = health_url(service)
        spec = container(kubernetes[name])
        probe = spec["readinessProbe"]["httpGet"]
        ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
        assert (ports[probe["port"]], probe["path"]) == (port, path), name


def test_the_same_grace_before_a_kill(overlay: str) -> None:
    kubernetes = kubernetes_parts(overlay)
    for name, service in compose_parts().items():
        if service["command"] == ["migrate"]:
            continue
        compose_grace = float(service["stop_grace_period"].rstrip("s"))
        grace = kubernetes[name]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace >= compose_grace, name


def test_the_generated_files_are_up_to_date() -> None:
    assert PROMETHEUS_RULE.read_text() == prometheus_rule_text(), (
        f"{ALERTS} changed: python -m tests.deploy.kube"
    )
    assert EXPORTER_QUERIES.read_text() == exporter_queries_text(), (
        f"{QUERIES} changed: python -m tests.deploy.kube"
    )
    rendered = yaml.safe_load(EXPORTER_QUERIES.read_text())["data"]["queries.yaml"]
    assert rendered == QUERIES.read_text()
