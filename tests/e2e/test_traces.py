"""One order's journey reads as one trace: the HTTP request, the stored event, the AMQP message, the
pricing worker and the results consumer all carry the caller's trace id (in-memory span exporter).

The provider samples as a deployment would (parent-based, half of the new traces): what is not sampled
leaves no span anywhere, yet its events still carry its trace id."""

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
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from backbone.database import eventsourcing_env
from backbone.head_sampling import HeadSampledTracing, PresetTraceIds
from backbone.migrate import migrate
from backbone.observability import instrument_psycopg
from backbone.settings import Settings
from backbone.transport_memory import MemoryTransport
from backbone.wiring import Messaging, command_api, read_api
from http_edge.identity import mint_token
from orders_core.application import OrdersApplication
from orders_core.lifecycle import Role
from tests.conftest import JWT_SECRET, PostgresServer, free_port
from tests.meshes import cube_stl

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
CALLER = f"00-{TRACE_ID:032x}-00f067aa0ba902b7-01"
UNSAMPLED_TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
UNSAMPLED_CALLER = f"00-{UNSAMPLED_TRACE_ID:032x}-b7ad6b7169203331-00"
SAMPLER = ParentBased(TraceIdRatioBased(0.5))


@dataclass
class Traced:
    base_url: str
    database_url: str
    spans: InMemorySpanExporter


@pytest.fixture(scope="module")
def traced(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    """The command API, relay, a pricing worker and the results consumer in this process, traced to memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=SAMPLER, id_generator=PresetTraceIds())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    instrument_psycopg()
    url = postgres.create_database("traces")
    migrate(url)
    home: Path = tmp_path_factory.mktemp("traced-home")
    settings = Settings.from_env({"BACKBONE_HOME": str(home), "DATABASE_URL": url, "JWT_SECRET": JWT_SECRET})
    app = command_api(settings, url)
    # Sampling decided before the official instrumentation runs (and so only sampled requests pay for it).
    assert isinstance(app.asgi_handler, HeadSampledTracing)
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


def test_the_read_api_decides_sampling_first_too(traced: Traced) -> None:
    settings = Settings.from_env({"DATABASE_URL": traced.database_url, "JWT_SECRET": JWT_SECRET})
    app = read_api(settings, traced.database_url)
    try:
        assert isinstance(app.asgi_handler, HeadSampledTracing)
    finally:
        app.state.pool.close()


def priced_order(traced: Traced, caller: str = CALLER) -> str:
    with customer(traced) as client:
        order_id: str = client.post("/orders", json=ORDER).json()["order_id"]
        client.put(f"/orders/{order_id}/model", content=cube_stl(), headers={"Content-Type": "model/stl"})
        submitted = client.post(f"/orders/{order_id}/submit", headers={"traceparent": caller})
        assert submitted.status_code == 200
        deadline = time.monotonic() + 20
        while client.get(f"/orders/{order_id}").json()["status"] == "SUBMITTED":
            assert time.monotonic() < deadline, "not priced"
            time.sleep(0.05)
    time.sleep(0.5)
    return order_id


ORDER = {"contact_name": "Ann", "item_title": "Ring", "material_code": "AU750"}


def customer(traced: Traced) -> httpx.Client:
    token = mint_token(JWT_SECRET, Role.CUSTOMER, "traced-customer")
    return httpx.Client(base_url=traced.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def spans_of(traced: Traced, trace_id: int = TRACE_ID) -> list[ReadableSpan]:
    return [s for s in traced.spans.get_finished_spans() if s.context and s.context.trace_id == trace_id]


def stored_meta(traced: Traced, order_id: str) -> dict[str, dict[str, str]]:
    app = OrdersApplication(env=eventsourcing_env(traced.database_url, pool_size=1))
    try:
        return {type(e).__name__: e.meta for e in app.history(UUID(order_id))}
    finally:
        app.close()


def test_the_submit_request_continues_the_callers_trace(traced: Traced) -> None:
    priced_order(traced)
    servers = [s for s in spans_of(traced) if s.kind == trace.SpanKind.SERVER]
    # Named by the route, not the raw path (a new name for every order)
    assert {s.name for s in servers} == {"POST /orders/{order_id}/submit"}, servers


def test_relay_worker_and_results_consumer_join_the_same_trace(traced: Traced) -> None:
    priced_order(traced)
    names = {s.name for s in spans_of(traced)}
    assert {"publish order.submitted", "price model", "record pricing result"} <= names


def test_the_database_statements_of_the_journey_are_in_the_trace(traced: Traced) -> None:
    priced_order(traced)
    kinds = {s.kind for s in spans_of(traced)}
    assert trace.SpanKind.CLIENT in kinds  # psycopg's spans


def test_the_stored_events_remember_the_trace(traced: Traced) -> None:
    metas = stored_meta(traced, priced_order(traced))
    for event in ("OrderSubmitted", "PriceCalculated"):
        assert f"{TRACE_ID:032x}" in metas[event]["traceparent"], (event, metas[event])


def test_an_unsampled_journey_leaves_no_span_but_keeps_its_trace_id(traced: Traced) -> None:
    order_id = priced_order(traced, UNSAMPLED_CALLER)
    assert spans_of(traced, UNSAMPLED_TRACE_ID) == []
    metas = stored_meta(traced, order_id)
    for event in ("OrderSubmitted", "PriceCalculated"):
        assert metas[event]["traceparent"].startswith(f"00-{UNSAMPLED_TRACE_ID:032x}-"), metas[event]
        assert int(metas[event]["traceparent"][-2:], 16) & 1 == 0, metas[event]


def test_new_traces_are_sampled_by_the_providers_sampler_before_the_request_runs(traced: Traced) -> None:
    """Without a caller, each request's trace id is drawn once: the sampler's decision on it is the one
    taken, its span (with the database statements under it) is recorded exactly when sampled, and the
    events remember the same trace id and flag either way."""
    with customer(traced) as client:
        order_ids = [client.post("/orders", json=ORDER).json()["order_id"] for _ in range(40)]
    time.sleep(0.3)
    decided = {True: 0, False: 0}
    for order_id in order_ids:
        traceparent = stored_meta(traced, order_id)["OrderInitiated"]["traceparent"]
        trace_id, flags = int(traceparent.split("-")[1], 16), traceparent.split("-")[3]
        sampled = SAMPLER.should_sample(None, trace_id, "POST /orders").decision.is_sampled()  # type: ignore[no-untyped-call]
        assert int(flags, 16) & 1 == sampled, traceparent
        spans = spans_of(traced, trace_id)
        if sampled:
            kinds = {s.kind for s in spans}
            assert {trace.SpanKind.SERVER, trace.SpanKind.CLIENT} <= kinds, spans
            assert len([s for s in spans if s.parent is None]) == 1, spans  # one trace, one root
        else:
            assert spans == []
        decided[sampled] += 1
    assert decided[True] and decided[False], decided  # 40 draws at 0.5: both kinds, but by chance 2**-39
