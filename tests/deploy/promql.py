"""What the deployment's PromQL may refer to, and tools to check expressions with promtool."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import backbone.audit
import orders_core.metrics
import pricing.metrics
import projectors.metrics
import webhook_sender.metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"

# Importing the metric modules registers their families; these are the names they expose.
_MODULES = (orders_core.metrics, pricing.metrics, projectors.metrics, backbone.audit, webhook_sender.metrics)

SCRAPE_TIME = {"backbone_orders", "backbone_orders_stuck", "backbone_orders_overdue"}
"""Gauges the read API computes when scraped (read_models/metrics.py), so not in the registry up front."""
HTTP = {
    # Litestar's PrometheusConfig(prefix="backbone_http"), created on the first request.
    "backbone_http_requests_total",
    "backbone_http_requests_in_progress",
    *(f"backbone_http_request_duration_seconds{suffix}" for suffix in ("_bucket", "_sum", "_count")),
}
OTHER = {"up"}
"""Prometheus's own per-target series."""
EXTERNAL_PREFIXES = ("rabbitmq_", "pg_")
"""RabbitMQ's rabbitmq_prometheus plugin and postgres_exporter."""


def backbone_metric_names() -> set[str]:
    """Every series name the backbone's processes expose."""
    assert _MODULES  # imported for their registrations
    names = {name for name in REGISTRY._names_to_collectors if name.startswith("backbone_")}
    return names | SCRAPE_TIME | HTTP


PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
    "inf", "nan",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (functions, keywords, labels and durations left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    found = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in PROMQL_KEYWORDS:
            continue
        found.add(name)
    return found


def unknown_metrics(expr: str, known: set[str]) -> set[str]:
    """Names in `expr` that nothing in the deployment exposes."""
    return {
        name
        for name in metric_names(expr)
        if name not in known and name not in OTHER and not name.startswith(EXTERNAL_PREFIXES)
    }


def promtool() -> str:
    """The promtool binary (Debian's `prometheus` package)."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: install Debian's `prometheus` package (./backbone test does)")
    return path


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run promtool; the result carries its output for assertion messages."""
    return subprocess.run([promtool(), *map(str, args)], capture_output=True, text=True, timeout=120)


def check_expressions(expressions: Iterable[str], workdir: Path) -> subprocess.CompletedProcess[str]:
    """Validate PromQL syntax: each expression as a recording rule, then `promtool check rules`."""
    rules = [{"record": f"deploy:check_{i}", "expr": expr} for i, expr in enumerate(expressions)]
    path = workdir / "expressions.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "expressions", "rules": rules}]}))
    return run_promtool("check", "rules", path)


def exporter_queries() -> dict[str, dict[str, Any]]:
    """postgres_exporter's custom queries (deploy/postgres-exporter/queries.yaml)."""
    path = DEPLOY / "postgres-exporter/queries.yaml"
    queries: dict[str, dict[str, Any]] = yaml.safe_load(path.read_text())
    return queries


def exporter_custom_metrics() -> set[str]:
    """Series names the custom queries produce: <query>_<column> for every GAUGE or COUNTER column."""
    return {
        f"{query}_{column}"
        for query, spec in exporter_queries().items()
        for metric in spec["metrics"]
        for column, usage in metric.items()
        if usage["usage"] in {"GAUGE", "COUNTER"}
    }


def unknown_custom_metrics(expr: str) -> set[str]:
    """Names in `expr` that look like a custom query's metric (pg_<query>_...) but are not one of them."""
    prefixes = tuple(f"{query}_" for query in exporter_queries())
    custom = exporter_custom_metrics()
    return {name for name in metric_names(expr) if name.startswith(prefixes) and name not in custom}
