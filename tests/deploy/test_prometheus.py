"""Prometheus configuration and alert rules: promtool accepts them and the rules' unit tests pass."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.deploy.promql import PROMETHEUS_DIR, backbone_metric_names, run_promtool, unknown_metrics

ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_check_config() -> None:
    checked = run_promtool("check", "config", CONFIG)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_promtool_check_rules() -> None:
    checked = run_promtool("check", "rules", ALERTS)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_promtool_test_rules() -> None:
    checked = run_promtool("test", "rules", ALERTS_TEST)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_config_loads_the_alert_rules() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    assert config["rule_files"] == [ALERTS.name]
    assert yaml.safe_load(ALERTS_TEST.read_text())["rule_files"] == [ALERTS.name]


def test_the_required_alerts_exist() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert {
        "BackboneProjectionLagEvents",
        "BackboneProjectionLagSeconds",
        "BackboneRelayLag",
        "BackboneDeadLetters",
        "BackboneOrdersStuck",
        "BackboneManufacturingApprovedWaitLong",
        "BackboneApiErrorRate",
        "BackboneProjectionNoActiveRunner",
        "BackbonePricingSlow",
        "WebhookSenderDown",
        "WebhookDeliveryStuck",
        "WebhookOutboxBehind",
        "WebhookEndpointDisabled",
        "WebhookFailureRate",
        "WebhookAuditUndelivered",
    } <= names


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_says_how_bad_and_what_to_do(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    assert len(rule["annotations"]["summary"]) > 10
    assert len(rule["annotations"]["description"]) > 40
    assert "for" in rule, "every alert waits a while before it fires"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_uses_metrics_that_exist(rule: dict[str, Any]) -> None:
    assert not unknown_metrics(rule["expr"], backbone_metric_names())


def test_every_alert_has_unit_tests_that_fire_it_and_that_do_not() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(ALERTS_TEST.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fired == set(), "alerts never seen firing in alerts_test.yml"
    assert names - quiet == set(), "alerts never seen staying quiet in alerts_test.yml"
