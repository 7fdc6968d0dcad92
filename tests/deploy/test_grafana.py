"""The provisioned Grafana: datasources that point at compose services, a dashboard whose every query is
valid PromQL over metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy.composefile import TEST_ENV, exposed, load
from tests.deploy.promql import (
    DEPLOY,
    backbone_metric_names,
    check_expressions,
    unknown_custom_metrics,
    unknown_metrics,
)

GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards/backbone.json"
GRAFANA_RANGES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    found = []
    for panel in dashboard()["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # panels of collapsed rows
    return found


def expressions() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel.get("targets", [])]


def as_promql(expr: str) -> str:
    """The expression Grafana sends, with its built-in range variables filled in."""
    for variable, value in GRAFANA_RANGES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def datasources() -> list[dict[str, Any]]:
    config = yaml.safe_load((GRAFANA / "provisioning/datasources/datasources.yml").read_text())
    found: list[dict[str, Any]] = config["datasources"]
    return found


def test_the_dashboard_is_provisioned_with_a_stable_uid() -> None:
    board = dashboard()
    assert board["uid"] == "alexandrite-backbone" and board["title"]
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids))
    for panel in panels():
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]


def test_datasources_point_at_compose_services() -> None:
    services = load(TEST_ENV)["services"]
    by_type = {source["type"]: source for source in datasources()}
    assert set(by_type) == {"prometheus", "jaeger"}
    assert [s["uid"] for s in datasources() if s.get("isDefault")] == ["prometheus"]
    for source in datasources():
        url = urlsplit(source["url"])
        assert url.hostname in services and url.port in exposed(services[url.hostname]), source["name"]


def test_every_panel_queries_a_provisioned_datasource() -> None:
    uids = {source["uid"] for source in datasources()}
    for panel in panels():
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] in uids, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_every_expression_is_valid_promql(tmp_path: Path) -> None:
    checked = check_expressions([as_promql(expr) for expr in expressions()], tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("expr", expressions())
def test_every_expression_uses_metrics_that_exist(expr: str) -> None:
    assert not unknown_metrics(as_promql(expr), backbone_metric_names())
    assert not unknown_custom_metrics(as_promql(expr))


def test_the_dashboard_shows_what_on_call_needs() -> None:
    text = "\n".join(re.sub(r"\s+", " ", expr) for expr in expressions())
    approved = 'backbone_order_status_seconds_bucket{status="MANUFACTURING_APPROVED"}'
    wanted = [
        "max by (status) (backbone_orders)",
        f"histogram_quantile(0.5, sum by (le) (rate({approved}",
        f"histogram_quantile(0.9, sum by (le) (rate({approved}",
        'backbone_orders{status="MANUFACTURING_APPROVED"}',
        "histogram_quantile(0.5, sum by (le, mesh_size) (rate(backbone_pricing_duration_seconds_bucket",
        "histogram_quantile(0.95, sum by (le, mesh_size) (rate(backbone_pricing_duration_seconds_bucket",
        "backbone_projection_lag_events",
        "backbone_projection_lag_seconds",
        "sum by (outcome) (rate(backbone_commands_total",
        "histogram_quantile(0.99, sum by (le, job, method, path) (rate(backbone_http_request_duration",
        "backbone_queue_depth",
        "backbone_dead_letters_total",
        "rabbitmq_queue_",
        "pg_stat_database_xact_commit",
        "pg_locks_count",
        "pg_table_total_size_bytes",
        "sum by (outcome) (rate(backbone_webhook_deliveries_total",
        "sum by (result) (rate(backbone_webhook_attempts_total",
        "max by (endpoint_id, partner_id) (backbone_webhook_oldest_undelivered_seconds",
    ]
    missing = [w for w in wanted if w not in text]
    assert not missing
