"""compose.yaml without Docker: the checks `docker compose config` makes, and the ones it cannot.

Structure (images, health checks, dependencies, ports, environment), one service per part with its
replicas in `deploy.replicas`, that every `backbone` subcommand it runs exists, that Prometheus and the
gateway find every replica by its service name in Docker's DNS. When a Compose binary is installed
(Debian's `docker-compose`, or the `docker compose` plugin), its own validation too.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from backbone.cli import _parser
from backbone.observability import resource_attributes
from backbone.settings import Settings
from backbone.wiring import drain_seconds
from tests.deploy.composefile import (
    COMPOSE,
    TEST_ENV,
    MissingVariable,
    Services,
    environment,
    exposed,
    load,
)
from tests.deploy.promql import DEPLOY, ROOT

BACKBONE = Path(sys.executable).with_name("backbone")
ONE_SHOT = {"migrate"}
MESSAGING = {"relay", "worker", "results", "audit"}
"""Subcommands that need AMQP_URL (the audit reads queue depths)."""
HTTP_PARTS = {"api", "read-api"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(TEST_ENV)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> Services:
    found: Services = compose["services"]
    return found


def backbone_services(services: Services) -> Services:
    """Services that run the backbone image (built from this repository's Dockerfile)."""
    return {name: s for name, s in services.items() if isinstance(s.get("build"), dict | str)}


def health_url(service: dict[str, Any]) -> tuple[int, str]:
    """Port and path of the URL a health check fetches."""
    test = " ".join(service["healthcheck"]["test"])
    match = re.search(r"http://(?:127\.0\.0\.1|localhost):(\d+)(/[^\s'\"]*)", test)
    assert match, f"no http URL in health check {test!r}"
    return int(match.group(1)), match.group(2)


def subcommand(service: dict[str, Any]) -> str:
    return str(service["command"][0])


def known_settings() -> set[str]:
    """Environment variables the backbone's source reads."""
    names: set[str] = set()
    for path in (ROOT / "src").rglob("*.py"):
        names |= set(re.findall(r'env(?:iron)?(?:\.get\(|\[)"([A-Z][A-Z0-9_]*)"', path.read_text()))
    return names


# ---------------------------------------------------------------- the services themselves


def test_every_service_has_an_image_or_a_build(services: Services) -> None:
    for name, service in services.items():
        assert service.get("image") or service.get("build"), name


def test_backbone_services_share_one_image_built_from_the_dockerfile(
    services: Services,
) -> None:
    parts = backbone_services(services)
    assert {s["image"] for s in parts.values()} == {"alexandrite/backbone:local"}
    for service in parts.values():
        assert service["build"]["context"] == "."
        assert (ROOT / service["build"].get("dockerfile", "Dockerfile")).is_file()


def test_every_long_running_service_has_a_health_check(services: Services) -> None:
    for name, service in services.items():
        if name in ONE_SHOT:
            assert "healthcheck" not in service
            assert service["restart"] == "no"
            continue
        check = service.get("healthcheck")
        assert check and check["test"] and not check.get("disable"), name
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, name
        assert service.get("restart") == "unless-stopped", name


def test_depends_on_names_existing_services_with_conditions(services: Services) -> None:
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}'s health, it has none"
            elif condition == "service_completed_successfully":
                assert target in ONE_SHOT, f"{name} waits for long-running {target} to complete"
            else:
                assert condition == "service_started", condition


def test_dependencies_have_no_cycle(services: Services) -> None:
    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, " -> ".join((*path, name))
        for target in services[name].get("depends_on", {}):
            visit(target, (*path, name))

    for name in services:
        visit(name, ())


def test_migrate_runs_once_before_every_part(services: Services) -> None:
    migrate = services["migrate"]
    assert migrate["command"] == ["migrate"]
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name, service in backbone_services(services).items():
        if name in ONE_SHOT:
            continue
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
        if subcommand(service) in MESSAGING:
            assert service["depends_on"]["rabbitmq"] == {"condition": "service_healthy"}, name


def replicas(service: dict[str, Any]) -> int:
    return int(service.get("deploy", {}).get("replicas", 1))


def test_the_topology(services: Services) -> None:
    def part(command: list[str]) -> str:
        return " ".join(command[:2] if command[0] in {"projector", "worker"} else command[:1])

    runs: Counter[str] = Counter()
    for service in backbone_services(services).values():
        runs[part(service["command"])] += replicas(service)
    assert runs == {
        "migrate": 1,
        "api": 2,
        "read-api": 2,
        "projector mes": 2,
        "projector shop": 2,
        "relay": 2,
        "webhooks": 2,
        "worker pricing": 3,
        "results": 1,
        "audit": 1,
    }
    # One service per part: replicas are deploy.replicas, never services of their own.
    commands = [tuple(s["command"][:2]) for s in backbone_services(services).values()]
    assert len(commands) == len(set(commands))
    for image, service in [("postgres:1", "postgres"), ("rabbitmq:3.", "rabbitmq")]:
        assert services[service]["image"].startswith(image)
    assert services["postgres"]["image"].split(":")[1].split(".")[0] in {"16", "17"}
    assert "management" in services["rabbitmq"]["image"]
    assert {"prometheus", "grafana", "jaeger", "postgres-exporter"} <= services.keys()


def test_every_long_running_part_scales_by_its_service_name(services: Services) -> None:
    """`docker compose up --scale NAME=N` and `docker stack deploy` need: no fixed container name, no
    published port, and (on a Swarm) a service name that resolves to every replica, not to one VIP."""
    for name, service in backbone_services(services).items():
        assert "container_name" not in service, name
        assert not service.get("ports"), f"{name}: a published port would clash between replicas"
        if name in ONE_SHOT:
            assert "replicas" not in service.get("deploy", {}), name
            continue
        deploy = service["deploy"]
        assert deploy["mode"] == "replicated" and deploy["endpoint_mode"] == "dnsrr", name
        assert replicas(service) >= 1, name


def test_projectors_the_relay_and_the_webhook_sender_run_an_active_copy_and_a_standby(
    services: Services,
) -> None:
    for name, service in backbone_services(services).items():
        if subcommand(service) in {"projector", "relay", "webhooks"}:
            assert replicas(service) == 2, f"{name}: the advisory lock picks one of two"


def test_a_stopping_worker_has_time_to_finish_its_quote(services: Services) -> None:
    drain = drain_seconds(Settings.from_env(TEST_ENV))
    for name, service in backbone_services(services).items():
        grace = service["stop_grace_period"]
        assert grace.endswith("s") and float(grace[:-1]) > drain, f"{name}: {grace} <= {drain} s"
        assert service["init"] is True, f"{name}: SIGTERM must reach the backbone process"


def test_every_backbone_subcommand_exists(services: Services) -> None:
    listed = subprocess.run(
        [BACKBONE, "--help"], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    commands = set(re.findall(r"^ {4}(\S+)", listed.stdout.split("commands:")[1], re.MULTILINE))
    parser = _parser()
    for name, service in backbone_services(services).items():
        command = [str(word) for word in service["command"]]
        assert command[0] in commands, f"{name}: `backbone {command[0]}` is not in `backbone --help`"
        try:
            parsed = parser.parse_args(command)  # choices and flags, exactly as the container would
        except SystemExit as e:
            pytest.fail(f"{name}: `backbone {' '.join(command)}` does not parse ({e})")
        assert parsed.command == command[0]


def test_the_dockerfile_runs_backbone_from_the_locked_environment() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "uv sync --frozen --no-dev" in dockerfile
    assert "COPY pyproject.toml uv.lock" in dockerfile
    assert 'ENTRYPOINT ["backbone"]' in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".backbone", ".git", ".env"} <= set(ignored)


# ---------------------------------------------------------------- environment and ports


def test_the_jwt_secret_must_be_given() -> None:
    with pytest.raises(MissingVariable, match="JWT_SECRET"):
        load({})


def test_backbone_environment_is_consistent(services: Services) -> None:
    postgres = environment(services["postgres"])
    rabbitmq = environment(services["rabbitmq"])
    settings = known_settings()
    for name, service in backbone_services(services).items():
        env = environment(service)
        unknown = {key for key in env if key not in settings and not key.startswith("OTEL_")}
        assert not unknown, f"{name} sets variables nothing reads: {unknown}"
        assert env["JWT_SECRET"] == TEST_ENV["JWT_SECRET"], name
        assert env["BLOB_STORE"] == "postgres", (
            f"{name}: parts on several hosts share blobs through PostgreSQL"
        )
        assert env["LOG_FORMAT"] == "json", name
        assert env["HOST"] == "0.0.0.0", f"{name} must listen beyond the container's loopback"

        database = urlsplit(env["DATABASE_URL"])
        assert database.scheme == "postgresql" and database.hostname in services, name
        assert database.port in exposed(services[database.hostname]), name
        assert database.username == postgres["POSTGRES_USER"], name
        assert unquote(database.password or "") == postgres["POSTGRES_PASSWORD"], name
        assert database.path.lstrip("/") == postgres["POSTGRES_DB"], name

        traces = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
        assert traces.hostname == "jaeger" and traces.port in exposed(services["jaeger"]), name
        assert traces.port == 4318 and env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
        assert env["OTEL_SERVICE_NAME"].startswith("backbone-"), name

        if subcommand(service) in MESSAGING:
            broker = urlsplit(env["AMQP_URL"])
            assert broker.scheme == "amqp" and broker.hostname in services, name
            assert broker.port in exposed(services[broker.hostname]), name
            assert broker.username == rabbitmq["RABBITMQ_DEFAULT_USER"], name
            assert unquote(broker.password or "") == rabbitmq["RABBITMQ_DEFAULT_PASS"], name
        else:
            assert "AMQP_URL" not in env, f"{name} has no use for the broker"


def test_instances_are_told_apart_in_traces(services: Services) -> None:
    # Replicas share one environment: none names its instance, the tracer takes the host name instead.
    for name, service in backbone_services(services).items():
        assert "service.instance.id" not in environment(service).get("OTEL_RESOURCE_ATTRIBUTES", ""), name
    assert resource_attributes("backbone-api", {})["service.instance.id"] == socket.gethostname()
    named = resource_attributes("backbone-api", {"OTEL_RESOURCE_ATTRIBUTES": "service.instance.id=api-7"})
    assert "service.instance.id" not in named  # OTEL_RESOURCE_ATTRIBUTES says it, and wins


def test_each_part_listens_where_its_health_check_and_prometheus_look(
    services: Services,
) -> None:
    for name, service in backbone_services(services).items():
        env = environment(service)
        if name in ONE_SHOT:
            continue
        port, path = health_url(service)
        if subcommand(service) in HTTP_PARTS:
            assert "METRICS_PORT" not in env, f"{name} serves /metrics on its HTTP port"
            assert (int(env["PORT"]), path) == (port, "/health/ready"), name
        else:
            assert "PORT" not in env, name
            assert (int(env["METRICS_PORT"]), path) == (port, "/metrics"), name
        assert port in exposed(service), f"{name} does not expose {port}"


def test_published_ports_do_not_clash(services: Services) -> None:
    published = [
        str(mapping).rsplit(":", 2)[-2]
        for service in services.values()
        for mapping in service.get("ports", [])
    ]
    assert len(published) == len(set(published)), published


def test_mounted_files_exist_and_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes", {}))
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"


def mount_of(service: dict[str, Any], host_path: str) -> str:
    """Where `host_path` (relative to the repository) appears inside the container."""
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.rstrip("/") == "./" + host_path:
            return target
    raise AssertionError(f"{host_path} is not mounted")


def test_prometheus_and_grafana_read_the_files_in_deploy(services: Services) -> None:
    prometheus = services["prometheus"]
    config_dir = mount_of(prometheus, "deploy/prometheus")
    assert f"--config.file={config_dir}/prometheus.yml" in prometheus["command"]

    grafana = services["grafana"]
    assert mount_of(grafana, "deploy/grafana/provisioning") == "/etc/grafana/provisioning"
    dashboards = mount_of(grafana, "deploy/grafana/dashboards")
    providers = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/dashboards.yml").read_text())
    assert [p["options"]["path"] for p in providers["providers"]] == [dashboards]
    home = environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(dashboards + "/") and (DEPLOY / "grafana/dashboards" / Path(home).name).is_file()

    exporter = services["postgres-exporter"]
    queries = environment(exporter)["PG_EXPORTER_EXTEND_QUERY_PATH"]
    assert mount_of(exporter, "deploy/postgres-exporter/queries.yaml") == queries

    assert mount_of(services["gateway"], "deploy/nginx/nginx.conf") == "/etc/nginx/nginx.conf"
    assert (
        mount_of(services["rabbitmq"], "deploy/rabbitmq/enabled_plugins") == "/etc/rabbitmq/enabled_plugins"
    )


def test_rabbitmq_enables_its_prometheus_plugin() -> None:
    plugins = (DEPLOY / "rabbitmq/enabled_plugins").read_text()
    assert re.fullmatch(r"\[([a-z_]+,)*[a-z_]+\]\.\s*", plugins), "an Erlang list term, ending in a dot"
    assert "rabbitmq_prometheus" in plugins and "rabbitmq_management" in plugins


# ---------------------------------------------------------------- who talks to whom


def scrape_targets() -> dict[str, list[tuple[str, int]]]:
    """Per job, the (name, port) pairs it scrapes: static targets and DNS service discovery names."""
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    targets: dict[str, list[tuple[str, int]]] = {}
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                targets.setdefault(job["job_name"], []).append((host, int(port)))
        for discovery in job.get("dns_sd_configs", []):
            assert discovery["type"] == "A", "compose's DNS has A records, no SRV"
            for name in discovery["names"]:
                targets.setdefault(job["job_name"], []).append((name, int(discovery["port"])))
    return targets


def test_prometheus_scrapes_existing_services_on_their_ports(services: Services) -> None:
    for job, targets in scrape_targets().items():
        for host, port in targets:
            service = "prometheus" if host == "localhost" and job == "prometheus" else host
            assert service in services, f"job {job} scrapes unknown service {host}"
            assert port in exposed(services[service]), f"job {job}: {host} does not listen on {port}"


def test_prometheus_finds_every_replica_of_every_part(services: Services) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    discovered = {
        (name, int(d["port"]))
        for job in config["scrape_configs"]
        for d in job.get("dns_sd_configs", [])
        for name in d["names"]
    }
    for name, service in backbone_services(services).items():
        if name in ONE_SHOT:
            continue
        assert (name, health_url(service)[0]) in discovered, f"{name}'s replicas are not discovered"
    for job in config["scrape_configs"]:
        if job["job_name"].startswith("backbone-"):
            assert "static_configs" not in job, f"{job['job_name']}: a fixed list misses scaled replicas"
            assert {"source_labels": ["__meta_dns_name"], "target_label": "part"} in job["relabel_configs"]
    scraped = {target for targets in scrape_targets().values() for target in targets}
    assert ("rabbitmq", 15692) in scraped and ("postgres-exporter", 9187) in scraped


def test_the_gateway_balances_over_every_api_replica(services: Services) -> None:
    conf = (DEPLOY / "nginx/nginx.conf").read_text()
    upstreams = dict(re.findall(r"upstream\s+(\w+)\s*\{([^}]*)\}", conf))
    servers: dict[str, set[tuple[str, int]]] = {}
    for name, body in upstreams.items():
        zone = re.search(r"^\s*zone\s+\w+\s+\d+k;", body, re.MULTILINE)
        assert zone, f"upstream {name}: `resolve` needs a shared memory zone"
        members = re.findall(r"server\s+([\w.-]+):(\d+)([^;]*);", body)
        for host, _, options in members:
            assert "resolve" in options.split(), f"upstream {name}: {host} is resolved only at start"
        servers[name] = {(host, int(port)) for host, port, _ in members}
        for host, port in servers[name]:
            assert host in services and port in exposed(services[host]), f"upstream {name}: {host}:{port}"
    by_command: dict[str, set[tuple[str, int]]] = {}
    for name, service in backbone_services(services).items():
        if subcommand(service) in HTTP_PARTS:
            by_command.setdefault(subcommand(service), set()).add((name, int(environment(service)["PORT"])))
    assert sorted(servers.values(), key=sorted) == sorted(by_command.values(), key=sorted)
    # Docker's embedded DNS, asked again every few seconds; no proxy_pass names a host directly.
    resolver = re.search(r"^\s*resolver\s+127\.0\.0\.11\s+valid=(\d+)s", conf, re.MULTILINE)
    assert resolver and int(resolver.group(1)) <= 10
    assert set(re.findall(r"proxy_pass\s+http://(\w+);", conf)) == set(upstreams)
    # `server ... resolve` in an upstream is open-source nginx's since 1.27.3.
    version = services["gateway"]["image"].split(":")[1].split("-")[0]
    assert tuple(int(part) for part in version.split(".")) >= (1, 27, 3) or version.startswith("1.28")
    listens = {int(port) for port in re.findall(r"listen\s+(\d+)", conf)}
    assert listens == exposed(services["gateway"])
    assert {int(str(p).rsplit(":", 1)[-1]) for p in services["gateway"]["ports"]} == listens
    assert health_url(services["gateway"])[0] in listens
    assert set(services["gateway"]["depends_on"]) == {n for members in servers.values() for n, _ in members}


# ---------------------------------------------------------------- Compose's own validation


def compose_command() -> list[str] | None:
    """`docker compose` (the v2 plugin) or Debian's `docker-compose`, whichever works without an engine."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_validates_the_file() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("no Compose binary: Debian's docker-compose package adds `docker-compose config`")
    env = {**os.environ, **TEST_ENV}
    checked = subprocess.run(
        [*command, "-f", COMPOSE, "config", "--quiet"], capture_output=True, text=True, env=env, timeout=120
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rendered = subprocess.run(
        [*command, "-f", COMPOSE, "config"], capture_output=True, text=True, env=env, timeout=120
    )
    assert rendered.returncode == 0, rendered.stderr
    assert set(yaml.safe_load(rendered.stdout)["services"]) == set(load(TEST_ENV)["services"])
