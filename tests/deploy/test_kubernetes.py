"""deploy/kubernetes: every overlay renders offline, every object validates (core kinds against the pinned
Kubernetes version's schemas, custom resources against their operators'), and the deployment holds
together: probes, resources, migration, disruption budgets, autoscaling, database and broker, monitoring."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import yaml

from backbone.settings import Settings
from backbone.transport_amqp import queue_arguments
from backbone.wiring import drain_seconds
from orders_core.contracts import PRICING_REQUESTS
from tests.deploy.kube import (
    ALERTS,
    KUBERNETES_VERSION,
    OVERLAYS,
    Object,
    crd_validator_missing,
    kubectl_missing,
    name_of,
    problems,
    render,
)

pytestmark = pytest.mark.skipif(kubectl_missing() is not None, reason=kubectl_missing() or "")

PARTS = {
    "api": "backbone-api",
    "read-api": "backbone-read-api",
    "projector-mes": "backbone-projector",
    "projector-shop": "backbone-projector",
    "relay": "backbone-relay",
    "webhooks": "backbone-webhooks",
    "worker-pricing": "backbone-pricing",
    "results": "backbone-results",
    "audit": "backbone-audit",
}
"""Every long-running part, with the Prometheus job compose's prometheus.yml scrapes it as."""
HTTP_PARTS = {"api", "read-api"}
ONE_ACTIVE = {"projector-mes", "projector-shop", "relay", "webhooks"}
OPERATOR_SECRETS = {"backbone-rabbitmq-default-user"}
"""Made by the RabbitMQ cluster operator for the RabbitmqCluster."""
OUT_OF_BAND_SECRETS = {"backbone-postgres", "backbone-jwt"}
"""Created before `kubectl apply` in production (deploy/kubernetes/README.md); dev generates them."""


def of_kind(objects: tuple[Object, ...], kind: str) -> dict[str, Object]:
    return {name_of(obj): obj for obj in objects if obj["kind"] == kind}


def container(deployment: Object) -> Object:
    found: Object = deployment["spec"]["template"]["spec"]["containers"][0]
    return found


def env_of(spec: Object) -> dict[str, Object]:
    return {item["name"]: item for item in spec.get("env", [])}


def pod_labels(workload: Object) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def objects(overlay: str) -> tuple[Object, ...]:
    return render(overlay)


@pytest.fixture(scope="module")
def deployments(objects: tuple[Object, ...]) -> dict[str, Object]:
    return of_kind(objects, "Deployment")


def test_there_is_a_dev_and_a_production_overlay() -> None:
    assert set(OVERLAYS) == {"dev", "production"}


# ---------------------------------------------------------------- validation


@pytest.mark.skipif(crd_validator_missing() is not None, reason=crd_validator_missing() or "")
def test_every_object_validates(overlay: str, objects: tuple[Object, ...]) -> None:
    found = problems(list(objects))
    assert not found, f"overlays/{overlay} (Kubernetes {KUBERNETES_VERSION}):\n" + "\n".join(map(str, found))


@pytest.mark.skipif(crd_validator_missing() is not None, reason=crd_validator_missing() or "")
def test_a_manifest_that_does_not_validate_is_named_with_its_field() -> None:
    broken = [copy.deepcopy(obj) for obj in render("dev")]
    for obj in broken:
        if obj["kind"] == "Deployment" and name_of(obj) == "api":
            container(obj)["ports"][0]["containerPort"] = "http"
            container(obj)["readinessProbe"]["httpGet"]["paht"] = "/health/ready"
        elif obj["kind"] == "ScaledObject":
            obj["spec"]["minReplicaCount"] = "two"
        elif obj["kind"] == "Cluster":
            obj["spec"]["instances"] = "three"
        elif obj["kind"] == "PrometheusRule":
            obj["spec"]["groups"][0]["rules"][0]["for"] = "five minutes"
        elif obj["kind"] == "ServiceMonitor" and name_of(obj) == "relay":
            obj["spec"]["endpoints"][0]["interval"] = "often"
        elif obj["kind"] == "RabbitmqCluster":
            obj["spec"]["replica"] = 3
    found = {str(p).split(": ")[0] + ": " + str(p).split(": ")[1] for p in problems(broken)}
    assert found == {
        "Deployment/api: spec.template.spec.containers.0.ports.0.containerPort",
        "Deployment/api: spec.template.spec.containers.0.readinessProbe.httpGet",  # 'paht' was unexpected
        "ScaledObject/worker-pricing: spec.minReplicaCount",
        "Cluster/backbone-postgres: spec.instances",
        "PrometheusRule/backbone-alerts: spec.groups.0.rules.0.for",
        "ServiceMonitor/relay: spec.endpoints.0.interval",
        "RabbitmqCluster/backbone-rabbitmq: spec",  # 'replica' was unexpected
    }
    gone = [obj for obj in render("dev") if obj["kind"] == "PodDisruptionBudget"][:1]
    gone[0] = {**gone[0], "apiVersion": "policy/v1beta1"}  # removed in Kubernetes 1.25
    assert [str(p) for p in problems(gone)] == [
        f"PodDisruptionBudget/{name_of(gone[0])}: apiVersion: Kubernetes {KUBERNETES_VERSION} has no "
        "policy-v1beta1 PodDisruptionBudget"
    ]


# ---------------------------------------------------------------- the parts


def test_every_part_is_a_deployment_of_the_one_image(deployments: dict[str, Object]) -> None:
    assert set(deployments) == {*PARTS, "postgres-exporter"}
    images = {container(deployments[name])["image"] for name in PARTS}
    assert len(images) == 1 and images.pop().split(":")[0].endswith("alexandrite/backbone")


def test_readiness_and_liveness_are_kept_apart(deployments: dict[str, Object]) -> None:
    for name in PARTS:
        spec = container(deployments[name])
        ready, live = spec["readinessProbe"], spec["livenessProbe"]
        assert "startupProbe" in spec, name
        if name in HTTP_PARTS:
            assert (ready["httpGet"]["path"], live["httpGet"]["path"]) == ("/health/ready", "/health/live")
            assert ready["httpGet"]["port"] == live["httpGet"]["port"] == "http"
        else:
            # Only /metrics answers: liveness waits much longer before it restarts anything.
            assert ready["httpGet"] == live["httpGet"] == {"path": "/metrics", "port": "metrics"}, name
            patience = live["periodSeconds"] * live["failureThreshold"]
            assert patience >= 4 * ready["periodSeconds"] * ready["failureThreshold"], name


def test_every_container_has_requests_and_limits(objects: tuple[Object, ...]) -> None:
    def quantity(value: str | int) -> float:
        text = str(value)
        units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
        for unit, factor in units.items():
            if text.endswith(unit):
                return float(text[: -len(unit)]) * factor
        return float(text)

    for obj in objects:
        if obj["kind"] not in {"Deployment", "Job"}:
            continue
        pod = obj["spec"]["template"]["spec"]
        for spec in [*pod.get("initContainers", []), *pod["containers"]]:
            resources = spec["resources"]
            for what in ("cpu", "memory"):
                request, limit = resources["requests"][what], resources["limits"][what]
                assert quantity(request) <= quantity(limit), f"{name_of(obj)}/{spec['name']} {what}"


def test_measured_figures_are_cited_beside_the_values() -> None:
    from tests.deploy.kube import BASE

    for name in ("api", "read-api", "worker-pricing"):
        text = (BASE / f"{name}.yaml").read_text()
        assert re.search(r"bench/\w+\.py", text) and "Measured" in text, name
    assert "bench/" in (BASE / "worker-pricing.yaml").read_text().split("kind: ScaledObject")[1]
    assert "bench" in (BASE / "api.yaml").read_text().split("kind: HorizontalPodAutoscaler")[0][-600:]


def test_every_part_waits_for_the_migrate_job(
    objects: tuple[Object, ...], deployments: dict[str, Object]
) -> None:
    job = of_kind(objects, "Job")["migrate"]
    assert container(job)["args"] == ["migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in {"OnFailure", "Never"}
    for name in PARTS:
        pod = deployments[name]["spec"]["template"]["spec"]
        waits = [c for c in pod.get("initContainers", []) if c["args"][:2] == ["migrate", "--wait"]]
        assert waits, f"{name} does not wait for the migration"
        assert waits[0]["image"] == container(deployments[name])["image"]
        assert env_of(waits[0])["DATABASE_URL"] == env_of(container(deployments[name]))["DATABASE_URL"]


def test_a_disruption_budget_for_every_part(
    objects: tuple[Object, ...], deployments: dict[str, Object]
) -> None:
    budgets = of_kind(objects, "PodDisruptionBudget")
    for name in PARTS:
        deployment = deployments[name]
        matching = [
            b
            for b in budgets.values()
            if selects(b["spec"]["selector"]["matchLabels"], pod_labels(deployment))
        ]
        assert len(matching) == 1, name
        spec = matching[0]["spec"]
        if deployment["spec"]["replicas"] == 1:
            assert spec.get("maxUnavailable") == 1, f"{name}: a budget must not block every node drain"
        else:
            assert spec.get("minAvailable", 1) >= 1 or spec.get("maxUnavailable") == 1, name


def test_services_reach_their_parts_on_named_ports(
    objects: tuple[Object, ...], deployments: dict[str, Object]
) -> None:
    for name, service in of_kind(objects, "Service").items():
        targets = [d for d in deployments.values() if selects(service["spec"]["selector"], pod_labels(d))]
        assert len(targets) == 1, f"Service {name} selects {len(targets)} Deployments"
        ports = {p["name"] for p in container(targets[0])["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, f"Service {name}: no container port {port['targetPort']}"


def test_the_ingress_reaches_both_apis(objects: tuple[Object, ...]) -> None:
    services = of_kind(objects, "Service")
    backends = set()
    for ingress in of_kind(objects, "Ingress").values():
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert backend["name"] in services and backend["port"]["name"] == "http"
                backends.add(backend["name"])
    assert backends == HTTP_PARTS


# ---------------------------------------------------------------- scaling


def test_the_apis_scale_on_cpu_and_the_single_active_parts_never_scale(
    objects: tuple[Object, ...], deployments: dict[str, Object]
) -> None:
    autoscalers = of_kind(objects, "HorizontalPodAutoscaler")
    assert {a["spec"]["scaleTargetRef"]["name"] for a in autoscalers.values()} == HTTP_PARTS
    for autoscaler in autoscalers.values():
        assert autoscaler["spec"]["minReplicas"] >= 2
        assert [m["resource"]["name"] for m in autoscaler["spec"]["metrics"]] == ["cpu"]
        assert autoscaler["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300
    scaled = {s["spec"]["scaleTargetRef"]["name"] for s in of_kind(objects, "ScaledObject").values()}
    assert scaled == {"worker-pricing"}
    for name in ONE_ACTIVE:
        assert deployments[name]["spec"]["replicas"] == 2, f"{name}: one active, one standby"


def test_pricing_workers_scale_on_the_pricing_queue_and_drain_before_they_go(
    objects: tuple[Object, ...], deployments: dict[str, Object]
) -> None:
    scaled = of_kind(objects, "ScaledObject")["worker-pricing"]
    spec = scaled["spec"]
    assert 2 <= spec["minReplicaCount"] < spec["maxReplicaCount"]
    [trigger] = spec["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == PRICING_REQUESTS
    assert trigger["metadata"]["mode"] == "QueueLength" and int(trigger["metadata"]["value"]) > 0
    broker = urlsplit(trigger["metadata"]["host"])
    cluster = next(iter(of_kind(objects, "RabbitmqCluster")))
    # KEDA's operator runs in a namespace of its own: the broker's name must carry the namespace.
    assert broker.hostname == f"{cluster}.{scaled['metadata']['namespace']}.svc" and broker.port == 5672
    authentication = of_kind(objects, "TriggerAuthentication")[trigger["authenticationRef"]["name"]]
    assert {ref["parameter"] for ref in authentication["spec"]["secretTargetRef"]} == {"username", "password"}
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert behavior["stabilizationWindowSeconds"] >= 300 and behavior["policies"][0]["value"] == 1
    # A scale-in is a SIGTERM: the worker finishes its quote within the grace period.
    pod = deployments["worker-pricing"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > drain_seconds(Settings.from_env({"JWT_SECRET": "x" * 40}))


# ---------------------------------------------------------------- database, broker, secrets


def references(value: str) -> list[str]:
    return re.findall(r"\$\(([A-Z_][A-Z0-9_]*)\)", value)


def workloads(objects: tuple[Object, ...]) -> Iterator[tuple[str, Object]]:
    for obj in objects:
        if obj["kind"] in {"Deployment", "Job"}:
            pod = obj["spec"]["template"]["spec"]
            for spec in [*pod.get("initContainers", []), *pod["containers"]]:
                yield f"{name_of(obj)}/{spec['name']}", spec


def test_interpolated_variables_are_defined_before_their_use(objects: tuple[Object, ...]) -> None:
    for where, spec in workloads(objects):
        defined: set[str] = set()
        for item in spec.get("env", []):
            for name in references(item.get("value", "")):
                assert name in defined, f"{where}: {item['name']} uses $({name}) before it is defined"
            defined.add(item["name"])


def test_every_secret_a_part_needs_is_there_or_documented(overlay: str, objects: tuple[Object, ...]) -> None:
    rendered = set(of_kind(objects, "Secret"))
    needed: set[str] = set()
    for _, spec in workloads(objects):
        for item in spec.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                needed.add(ref["name"])
    for authentication in of_kind(objects, "TriggerAuthentication").values():
        needed |= {ref["name"] for ref in authentication["spec"]["secretTargetRef"]}
    cluster = of_kind(objects, "Cluster")["backbone-postgres"]
    needed.add(cluster["spec"]["bootstrap"]["initdb"]["secret"]["name"])
    expected_outside = OPERATOR_SECRETS | (OUT_OF_BAND_SECRETS if overlay == "production" else set())
    assert needed - rendered == expected_outside
    readme = (ALERTS.parents[1] / "kubernetes/README.md").read_text()
    for name in OUT_OF_BAND_SECRETS:
        assert name in readme, f"deploy/kubernetes/README.md does not say how to create {name}"
    if "backbone-postgres" in rendered:
        assert of_kind(objects, "Secret")["backbone-postgres"]["type"] == "kubernetes.io/basic-auth"


def test_postgresql_is_a_primary_with_two_replicas_and_the_read_api_reads_the_replicas(
    objects: tuple[Object, ...], deployments: dict[str, Object]
) -> None:
    clusters = of_kind(objects, "Cluster")
    assert list(clusters) == ["backbone-postgres"]
    assert clusters["backbone-postgres"]["spec"]["instances"] == 3  # one primary, two streaming replicas
    for name in PARTS:
        env = env_of(container(deployments[name]))
        assert urlsplit(env["DATABASE_URL"]["value"]).hostname == "backbone-postgres-rw", name
        if name == "read-api":
            assert urlsplit(env["DATABASE_URL_READ"]["value"]).hostname == "backbone-postgres-ro"
        else:
            assert "DATABASE_URL_READ" not in env, name


def test_rabbitmq_is_three_nodes_with_quorum_queues(
    objects: tuple[Object, ...], deployments: dict[str, Object]
) -> None:
    clusters = of_kind(objects, "RabbitmqCluster")
    assert list(clusters) == ["backbone-rabbitmq"]
    assert clusters["backbone-rabbitmq"]["spec"]["replicas"] == 3
    assert queue_arguments(PRICING_REQUESTS)["x-queue-type"] == "quorum"  # replicated over the three
    for name, deployment in deployments.items():
        env = env_of(container(deployment))
        if "AMQP_URL" in env:
            assert urlsplit(env["AMQP_URL"]["value"]).hostname == "backbone-rabbitmq", name


# ---------------------------------------------------------------- monitoring


def test_every_part_is_scraped_under_its_compose_job(objects: tuple[Object, ...]) -> None:
    services = of_kind(objects, "Service")
    monitors = of_kind(objects, "ServiceMonitor")
    for name, job in PARTS.items():
        monitor = monitors[name]
        assert selects(monitor["spec"]["selector"]["matchLabels"], services[name]["metadata"]["labels"])
        [endpoint] = monitor["spec"]["endpoints"]
        assert endpoint["port"] in {p["name"] for p in services[name]["spec"]["ports"]}
        assert endpoint["path"] == "/metrics"
        relabel = {r["targetLabel"]: r["replacement"] for r in endpoint["relabelings"]}
        assert relabel == {"job": job, "part": name}
    jobs = {
        r["replacement"]
        for m in monitors.values()
        for e in m["spec"]["endpoints"]
        for r in e["relabelings"]
        if r["targetLabel"] == "job"
    }
    compose_jobs = {
        job["job_name"]
        for job in yaml.safe_load((ALERTS.parent / "prometheus.yml").read_text())["scrape_configs"]
        if job["job_name"] not in {"prometheus", "jaeger"}
    }
    assert jobs == compose_jobs


def test_the_prometheus_rule_carries_the_alert_rules_of_deploy_prometheus(
    objects: tuple[Object, ...],
) -> None:
    [rule] = of_kind(objects, "PrometheusRule").values()
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"], (
        "deploy/kubernetes/base/prometheus-rule.yaml is out of date: python -m tests.deploy.kube"
    )


def test_everything_lands_in_one_namespace(objects: tuple[Object, ...]) -> None:
    namespaces = {obj["metadata"].get("namespace") for obj in objects if obj["kind"] != "Namespace"}
    assert namespaces == {name_of(next(obj for obj in objects if obj["kind"] == "Namespace"))}
