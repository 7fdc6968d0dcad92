"""/metrics after a scripted run: the counters an on-call person needs, in a format promtool accepts."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from backbone.migrate import migrate
from tests.conftest import (
    JWT_SECRET,
    PostgresServer,
    RunningApi,
    free_port,
    start_process,
    stop_process,
    wait_for_health,
)
from tests.meshes import cube_stl, open_box_stl


@pytest.fixture(scope="module")
def scraped(system: RunningApi) -> Iterator[str]:
    """The metrics text after orders were created, priced, rejected and looked at."""
    with system.client("customer", "metrics-customer") as customer:
        for model in (cube_stl(), open_box_stl()):
            order_id = customer.post(
                "/orders", json={"contact_name": "Ann", "item_title": "Ring", "material_code": "AU750"}
            ).json()["order_id"]
            customer.put(f"/orders/{order_id}/model", content=model, headers={"Content-Type": "model/stl"})
            customer.post(f"/orders/{order_id}/submit")
        customer.post(f"/orders/{order_id}/approve")  # refused: a customer may not approve
        deadline = time.monotonic() + 20
        while (
            customer.get(f"/orders/{order_id}").json()["status"] == "SUBMITTED"
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
    time.sleep(1.5)  # the projections' lag gauges are refreshed as they wake
    yield httpx.get(f"{system.base_url}/metrics").text


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_http_requests_are_counted_by_route_template(scraped: str) -> None:
    paths = {dict(k).get("path") for k in samples(scraped, "backbone_http_requests_total")}
    assert "/orders/{order_id}/submit" in paths


def test_projections_report_their_position_and_lag(scraped: str) -> None:
    positions = samples(scraped, "backbone_projection_position")
    assert {dict(k)["projection"] for k in positions} >= {"mes", "shop", "relay"}
    assert all(v > 0 for v in positions.values())
    lag = samples(scraped, "backbone_projection_lag_events")
    assert lag and all(v >= 0 for v in lag.values())


def test_pricing_outcomes_and_durations_are_counted(scraped: str) -> None:
    outcomes = {dict(k)["outcome"]: v for k, v in samples(scraped, "backbone_pricing_results_total").items()}
    assert outcomes.get("quoted", 0) >= 1 and outcomes.get("rejected", 0) >= 1
    assert samples(scraped, "backbone_pricing_duration_seconds_count")
    previews = {dict(k)["outcome"]: v for k, v in samples(scraped, "backbone_pricing_previews_total").items()}
    assert previews.get("made", 0) >= 1  # the quoted cube's; the open box was rejected before measuring


def test_orders_per_status_come_from_the_mes_view(scraped: str) -> None:
    per_status = {dict(k)["status"]: v for k, v in samples(scraped, "backbone_orders").items()}
    assert per_status["PRICE_CALCULATED"] >= 1 and per_status["REJECTED"] >= 1
    assert samples(scraped, "backbone_orders_stuck") and samples(scraped, "backbone_orders_overdue")


def test_queue_depths_are_reported(scraped: str) -> None:
    queues = {dict(k)["queue"] for k in samples(scraped, "backbone_queue_depth")}
    assert queues >= {"pricing.requests", "pricing.results", "dead.letters"}


def test_time_in_status_is_observed_when_orders_move_on(scraped: str) -> None:
    statuses = {dict(k)["status"] for k in samples(scraped, "backbone_order_status_seconds_count")}
    assert {"INITIATED", "FILE_UPLOADED", "SUBMITTED"} <= statuses


def test_the_exposition_passes_promtool(scraped: str) -> None:
    checked = subprocess.run(["promtool", "check", "metrics"], input=scraped.encode(), capture_output=True)
    assert checked.returncode == 0, checked.stderr.decode() + checked.stdout.decode()


def test_commands_are_counted_by_name_and_outcome(scraped: str) -> None:
    counted = {
        (dict(k)["command"], dict(k)["outcome"]): v
        for k, v in samples(scraped, "backbone_commands_total").items()
    }
    assert counted[("InitiateOrder", "accepted")] >= 2
    assert counted[("ApproveManufacturing", "forbidden")] >= 1
    assert counted[("RecordQuote", "accepted")] >= 1 and counted[("RejectModel", "accepted")] >= 1
    assert samples(scraped, "backbone_append_duration_seconds_count")


def test_api_workers_report_their_requests_together(postgres: PostgresServer, tmp_path: Path) -> None:
    url = postgres.create_database("metrics_workers")
    migrate(url)
    port = free_port()
    env = {"DATABASE_URL": url, "BACKBONE_HOME": str(tmp_path), "JWT_SECRET": JWT_SECRET}
    process = start_process(["api", "--workers", "2"], env, port)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(base, process, seconds=60)
        for _ in range(40):  # fresh connections, so both workers answer some
            assert httpx.get(f"{base}/schema/openapi.json").status_code == 200
        text = httpx.get(f"{base}/metrics").text
    finally:
        stop_process(process)
    served = sum(
        v
        for k, v in samples(text, "backbone_http_requests_total").items()
        if dict(k)["path"] == "/schema/openapi.json"
    )
    assert served == 40
