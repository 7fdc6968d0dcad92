"""One order's journey reads as one trace: the HTTP request, the stored event, the AMQP message, the
pricing worker and the results consumer all carry the caller's trace id (in-memory span exporter)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import httpx
import pytest
import uvicorn
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from backbone.database import eventsourcing_env
from backbone.migrate import migrate
from backbone.observability import instrument_psycopg
from backbone.settings import Settings
from backbone.transport_memory import MemoryTransport
from backbone.wiring import Messaging, command_api
from orders_core.application import OrdersApplication
from orders_core.identity import mint_token
from orders_core.lifecycle import Role
from tests.conftest import JWT_SECRET, PostgresServer, free_port
from tests.meshes import cube_stl

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
CALLER = f"00-{TRACE_ID:032x}-00f067aa0ba902b7-01"


@dataclass
class Traced:
    base_url: str
    database_url: str
    spans: InMemorySpanExporter


@pytest.fixture(scope="module")
def traced(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    """The command API, relay, a pricing worker and the results consumer in this process, traced to memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    instrument_psycopg()
    url = postgres.create_database("traces")
    migrate(url)
    home: Path = tmp_path_factory.mktemp("traced-home")
    settings = Settings.from_env({"BACKBONE_HOME": str(home), "DATABASE_URL": url, "JWT_SECRET": JWT_SECRET})
    app = command_api(settings, url)
    messaging = Messaging(settings, url, MemoryTransport(), relay=True, workers=1, results=True)
    app.on_startup.append(messaging.start)
    app.on_shutdown.insert(0, messaging.stop)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield Traced(base, url, exporter)
    finally:
        server.should_exit = True
        thread.join(15)


def priced_order(traced: Traced) -> str:
    token = mint_token(JWT_SECRET, Role.CUSTOMER, "traced-customer")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=traced.base_url, headers=headers, timeout=30) as client:
        body = {"contact_name": "Ann", "item_title": "Ring", "material_code": "AU750"}
        order_id: str = client.post("/orders", json=body).json()["id"]
        client.put(f"/orders/{order_id}/model", content=cube_stl(), headers={"Content-Type": "model/stl"})
        submitted = client.post(f"/orders/{order_id}/submit", headers={"traceparent": CALLER})
        assert submitted.status_code == 200
        deadline = time.monotonic() + 20
        while client.get(f"/orders/{order_id}").json()["status"] == "SUBMITTED":
            assert time.monotonic() < deadline, "not priced"
            time.sleep(0.05)
    time.sleep(0.5)
    return order_id


def spans_of(traced: Traced) -> list[ReadableSpan]:
    return [s for s in traced.spans.get_finished_spans() if s.context and s.context.trace_id == TRACE_ID]


def test_the_submit_request_continues_the_callers_trace(traced: Traced) -> None:
    priced_order(traced)
    names = {s.name for s in spans_of(traced)}
    assert any("submit" in n for n in names), names


def test_relay_worker_and_results_consumer_join_the_same_trace(traced: Traced) -> None:
    priced_order(traced)
    names = {s.name for s in spans_of(traced)}
    assert {"publish order.submitted", "price model", "record pricing result"} <= names


def test_the_database_statements_of_the_journey_are_in_the_trace(traced: Traced) -> None:
    priced_order(traced)
    kinds = {s.kind for s in spans_of(traced)}
    assert trace.SpanKind.CLIENT in kinds  # psycopg's spans


def test_the_stored_events_remember_the_trace(traced: Traced) -> None:
    order_id = priced_order(traced)
    app = OrdersApplication(env=eventsourcing_env(traced.database_url, pool_size=1))
    try:
        metas = {type(e).__name__: e.meta for e in app.history(UUID(order_id))}
    finally:
        app.close()
    for event in ("OrderSubmitted", "PriceCalculated"):
        assert f"{TRACE_ID:032x}" in metas[event]["traceparent"], (event, metas[event])
