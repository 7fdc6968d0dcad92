"""`backbone audit`: proves that every order in the event store is shown right by every read model, got
its pricing answer exactly once, and that no message was left unconsumed; reports what it finds.

It reads the store with one streamed SELECT ordered by order, folds each order with the aggregate's own
rules (orders_core/audit.py), then compares. A live system is allowed to be busy: the audit pins the store
position it audits, compares only rows not moved past it, and waits up to `settle_s` for projections, the
relay, pricing and the queues to catch up before it calls anything a discrepancy.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TextIO
from uuid import UUID

import psycopg
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from prometheus_client import Gauge
from psycopg import sql

from backbone.database import eventsourcing_env
from orders_core.application import OrdersApplication
from orders_core.audit import (
    Discrepancy,
    OrderTruth,
    Problem,
    ViewRow,
    compare_pricing,
    compare_view,
    fold_order,
    group_by_order,
)
from orders_core.contracts import DEAD_QUEUE, ORDER_TOPIC, PRICING_REQUESTS, RESULTS_QUEUE, Transport
from orders_core.order import Order
from orders_core.webhook_messages import ENDPOINT_DISABLED
from projectors.health import PROJECTION_SCHEMAS
from projectors.parked import parked_aggregates

VIEWS = ("mes", "shop")
"""Read models that show every order, with their tracking in the schema of the same name."""
QUEUES = (PRICING_REQUESTS, RESULTS_QUEUE)

DISCREPANCIES = Gauge(
    "backbone_audit_discrepancies", "Discrepancies the last audit found, by problem", ["problem"]
)
AUDITED_ORDERS = Gauge("backbone_audit_orders", "Orders the last audit checked")
AUDIT_POSITION = Gauge("backbone_audit_position", "Event store position the last audit checked up to")
AUDIT_TIME = Gauge("backbone_audit_last_run_timestamp_seconds", "When the last audit finished (Unix time)")
for _problem in Problem:
    DISCREPANCIES.labels(_problem.value)


@dataclass
class AuditReport:
    """What one audit checked and found."""

    position: int
    orders: int
    submissions_waiting: int
    broker: str
    """How the queues were checked: `rabbitmq`, or why they were not."""
    discrepancies: list[Discrepancy] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.discrepancies

    def counts(self) -> Counter[Problem]:
        """Discrepancies by problem."""
        return Counter(d.problem for d in self.discrepancies)


def audit(
    dsn: str,
    broker: Callable[[], Transport] | None = None,
    *,
    grace_s: float = 300.0,
    settle_s: float = 10.0,
) -> AuditReport:
    """Audit the system on `dsn` (and the broker that `broker` connects to, if given); sets the metrics."""
    orders = OrdersApplication(env=eventsourcing_env(dsn, pool_size=1))
    try:
        deadline = time.monotonic() + settle_s
        while True:
            report = _audit_once(dsn, orders, broker, grace_s)
            if report.ok or time.monotonic() >= deadline:
                break
            time.sleep(1.0)  # lag, queued work and unanswered submissions may still settle
    finally:
        orders.close()
    _set_metrics(report)
    return report


def _audit_once(
    dsn: str, orders: OrdersApplication, broker: Callable[[], Transport] | None, grace_s: float
) -> AuditReport:
    with psycopg.connect(dsn, autocommit=True) as conn:
        head = orders.position()
        truths: dict[str, OrderTruth] = {}
        found: list[Discrepancy] = []
        for events in group_by_order(_order_events(conn, orders, head, found)):
            folded = fold_order(events)
            if isinstance(folded, Discrepancy):
                found.append(folded)
            else:
                truths[folded.order_id] = folded
        held = {view: _parked(conn, view) for view in PROJECTION_SCHEMAS}
        for view in VIEWS:
            position = _tracking(conn, view)
            if position < head:
                found.append(Discrepancy(Problem.VIEW_BEHIND, view, None, f"at {position}, store at {head}"))
            # A parked order is reported as parked, with why, not again as a stale row.
            flowing = {order_id: t for order_id, t in truths.items() if order_id not in held[view]}
            rows = (row for row in _view_rows(conn, view) if row.order_id not in held[view])
            found.extend(compare_view(view, flowing, rows, head, position))
        for parked in held.values():
            found.extend(parked.values())
        relayed = _tracking(conn, "relay")
        if relayed < head:
            found.append(Discrepancy(Problem.RELAY_BEHIND, "relay", None, f"at {relayed}, store at {head}"))
        found.extend(_webhooks(conn, head, grace_s))
    found.extend(compare_pricing(truths.values(), datetime.now(UTC), grace_s))
    queues = "in-process broker: checked by its effects only (AMQP_URL unset)"
    if broker is not None:
        # A transport of its own each time: one is bound to the event loop it connected on.
        depths = asyncio.run(_depths(broker()))
        queues = "rabbitmq: " + ", ".join(f"{q} {n}" for q, n in depths.items())
        for queue, depth in depths.items():
            if depth and queue == DEAD_QUEUE:
                found.append(Discrepancy(Problem.DEAD_LETTERS, queue, None, f"{depth} message(s)"))
            elif depth:
                found.append(Discrepancy(Problem.UNCONSUMED, queue, None, f"{depth} message(s) waiting"))
    waiting = sum(1 for t in truths.values() if t.waiting_since is not None)
    return AuditReport(head, len(truths), waiting, queues, found)


def _webhooks(conn: psycopg.Connection[tuple[object, ...]], head: int, grace_s: float) -> list[Discrepancy]:
    """The webhook outbox behind the store, and every message that never got through: given up, or
    pending for longer than `grace_s`. A system that never ran the sender (no position) has no outbox.
    Messages not sent because their endpoint is disabled or deleted are the partner's choice, not lost."""
    found: list[Discrepancy] = []
    started = conn.execute(
        "SELECT notification_id FROM webhooks.tracking WHERE application_name = %s", (OrdersApplication.name,)
    ).fetchone()
    if started is None:
        return found
    position = int(str(started[0]))
    if position < head:
        behind = f"at {position}, store at {head}"
        found.append(Discrepancy(Problem.WEBHOOKS_BEHIND, "webhooks", None, behind))
    rows = conn.execute(
        "SELECT order_id::text, message_id, endpoint_id::text, event_type, status, attempts, last_error "
        "FROM webhooks.messages WHERE (status = 'failed' AND last_error IS DISTINCT FROM %s) "
        "OR (status = 'pending' AND occurred_at < now() - make_interval(secs => %s)) ORDER BY occurred_at",
        (ENDPOINT_DISABLED, grace_s),
    ).fetchall()
    for order_id, message_id, endpoint_id, event_type, status, attempts, error in rows:
        state = "given up" if status == "failed" else "still waiting"
        detail = f"{message_id} ({event_type}) to endpoint {endpoint_id}: {state} after {attempts} attempt(s)"
        found.append(
            Discrepancy(Problem.UNDELIVERED_WEBHOOK, "webhooks", str(order_id), f"{detail}: {error}"[:500])
        )
    return found


def _parked(conn: psycopg.Connection[tuple[object, ...]], view: str) -> dict[str, Discrepancy]:
    """A discrepancy for each aggregate parked in `view`, by aggregate id."""
    return {
        p.aggregate_id: Discrepancy(
            Problem.PARKED,
            view,
            p.aggregate_id,
            f"since {p.since:%Y-%m-%d %H:%M:%S}, {p.events} event(s) from {p.event_type} "
            f"at {p.first_position}: {p.error}",
        )
        for p in parked_aggregates(conn, view)
    }


def _order_events(
    conn: psycopg.Connection[tuple[object, ...]],
    orders: OrdersApplication,
    head: int,
    found: list[Discrepancy],
) -> Iterator[tuple[UUID, int, Order.Event]]:
    """Every order event up to `head`, by order and version, as the aggregate's own events; one the
    aggregate cannot read is added to `found` (as a broken history) and left out."""
    recorder = orders.recorder
    assert isinstance(recorder, PostgresApplicationRecorder)
    query = sql.SQL(
        "SELECT originator_id, originator_version, topic, state, notification_id FROM {} "
        "WHERE notification_id <= %s AND topic LIKE %s ORDER BY originator_id, originator_version"
    ).format(sql.Identifier(recorder.datastore.schema, recorder.events_table_name))
    with conn.transaction(), conn.cursor(name="audit") as cursor:
        cursor.itersize = 2000
        cursor.execute(query, (head, ORDER_TOPIC + ".%"))
        for originator_id, version, topic, state, position in cursor:
            assert isinstance(originator_id, UUID) and isinstance(version, int)
            assert isinstance(topic, str) and isinstance(position, int)
            stored = StoredEvent(originator_id, version, topic, bytes(state))  # type: ignore[call-overload]
            try:
                event = orders.mapper.to_domain_event(stored)
            except Exception as e:  # stored by another version of the CRM, or damaged
                detail = f"event v{version} at {position} ({topic.rpartition('.')[2]}) cannot be read: {e!r}"
                found.append(Discrepancy(Problem.BROKEN_HISTORY, "store", str(originator_id), detail[:500]))
                continue
            assert isinstance(event, Order.Event)
            yield originator_id, position, event


def _tracking(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> int:
    row = conn.execute(
        f'SELECT notification_id FROM "{schema}".tracking WHERE application_name = %s',  # noqa: S608
        (OrdersApplication.name,),
    ).fetchone()
    return int(row[0]) if row and isinstance(row[0], int) else 0


def _view_rows(conn: psycopg.Connection[tuple[object, ...]], view: str) -> Iterator[ViewRow]:
    query = f'SELECT order_id::text, status, version, position FROM "{view}".orders'  # noqa: S608
    with conn.transaction(), conn.cursor(name=f"audit_{view}") as cursor:
        cursor.itersize = 5000
        cursor.execute(query)
        for order_id, status, version, position in cursor:
            yield ViewRow(str(order_id), str(status), int(str(version)), int(str(position)))


async def _depths(transport: Transport) -> dict[str, int]:
    await transport.connect()
    try:
        return {queue: await transport.depth(queue) for queue in (*QUEUES, DEAD_QUEUE)}
    finally:
        await transport.close()


def _set_metrics(report: AuditReport) -> None:
    counts = report.counts()
    for problem in Problem:
        DISCREPANCIES.labels(problem.value).set(counts.get(problem, 0))
    AUDITED_ORDERS.set(report.orders)
    AUDIT_POSITION.set(report.position)
    AUDIT_TIME.set(time.time())


def print_report(report: AuditReport, out: TextIO, limit: int = 50) -> None:
    """The report as a table: a summary line, counts by problem, then the first `limit` discrepancies."""
    print(
        f"audited {report.orders:,} orders up to position {report.position:,}; "
        f"{report.submissions_waiting} submission(s) waiting for pricing; {report.broker}",
        file=out,
    )
    if report.ok:
        print("no discrepancies", file=out)
        return
    print(f"{len(report.discrepancies)} discrepancies:", file=out)
    for problem, count in sorted(report.counts().items()):
        print(f"  {problem.value:<22} {count:>8}", file=out)
    print(f"\n{'problem':<22} {'where':<16} {'order':<36}  detail", file=out)
    for d in report.discrepancies[:limit]:
        print(f"{d.problem.value:<22} {d.where:<16} {d.order_id or '-':<36}  {d.detail}", file=out)
    if len(report.discrepancies) > limit:
        print(f"... and {len(report.discrepancies) - limit} more", file=out)
