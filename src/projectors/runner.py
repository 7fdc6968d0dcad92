"""Runs one projection: follows the event store's notification log and applies it in batches.

Each batch writes its view rows and its tracking position in one transaction (eventsourcing's
PostgresTrackingRecorder refuses a position that does not advance), so a crash loses or doubles nothing.
The runner wakes on the store's LISTEN/NOTIFY channel, and reads the log by notification id: the store
serialises appends with a table lock, so ids commit in order and no late commit fills a gap behind us.
One runner per projection is active across processes (a PostgreSQL advisory lock); others wait as standbys.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg
import structlog
from eventsourcing.persistence import Notification, Tracking
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresTrackingRecorder
from psycopg import Cursor, sql
from psycopg.rows import DictRow

from orders_core.contracts import Change, read_stored_event
from projectors import metrics

log = structlog.get_logger("projector")


@dataclass(frozen=True)
class Lag:
    """Where a projection stands against the store's head."""

    position: int
    head: int
    events: int
    seconds: float
    """Age of the oldest event not yet applied (0 when caught up)."""


LogRow = tuple[int, str, int, str, bytes]
"""One stored event as a replay reads it: (position, aggregate id, version, topic, state)."""


class Loader(Protocol):
    """A projection's fold for replays into empty tables: all in memory, each row written once."""

    def load(self, cursor: Cursor[DictRow], schema: str, batches: Iterable[Sequence[LogRow]]) -> None:
        """Fold the log's rows (undecoded: the loader decodes only what it shows) into schema's tables."""


class Projection(Protocol):
    """A read model that folds changes into tables of one schema."""

    name: str

    def apply(self, cursor: Cursor[DictRow], schema: str, changes: Sequence[Change]) -> None:
        """Write what `changes` mean for the view, in the caller's transaction."""

    def forget(self) -> None:
        """Drop any cached view state (after a failed transaction, or a switch of schema)."""


def changes_of(notifications: Sequence[Notification]) -> list[Change]:
    """Decode the notifications projections understand; others (unknown topics) are skipped."""
    found = []
    for n in notifications:
        event = read_stored_event(n.topic, n.state)
        if event is not None:
            found.append(Change(n.id, str(n.originator_id), n.originator_version, event))
    return found


def lock_key(name: str) -> int:
    """A stable 63-bit advisory lock key for a projection name."""
    return int.from_bytes(hashlib.sha256(f"projection:{name}".encode()).digest()[:8], "big") >> 1


class ProjectionRunner:
    """Keeps one projection's view up to date with the event store."""

    def __init__(
        self,
        projection: Projection,
        source: PostgresApplicationRecorder,
        source_name: str,
        view: PostgresTrackingRecorder,
        dsn: str,
        batch_size: int = 1000,
    ) -> None:
        self.projection = projection
        self.source = source
        self.source_name = source_name
        self.view = view
        self.dsn = dsn
        self.batch_size = batch_size
        self.schema = view.datastore.schema
        self.on_batch: Callable[[int, int], None] | None = None
        """Called after each committed batch with (events in it, position reached): progress, metrics."""

    def position(self) -> int:
        """The last position this projection has applied."""
        return self.view.max_tracking_id(self.source_name) or 0

    def lag(self) -> Lag:
        """How far the view is behind the store, in events and in seconds."""
        position = self.position()
        head = self.source.max_notification_id() or 0
        seconds = 0.0
        if head > position:
            first = self.source.select_notifications(start=position, limit=1, inclusive_of_start=False)
            event = read_stored_event(first[0].topic, first[0].state) if first else None
            if event is not None:
                seconds = (datetime.now(UTC) - datetime.fromisoformat(event.timestamp)).total_seconds()
        return Lag(position, head, head - position, max(seconds, 0.0))

    def load(self, sort_memory: str = "256MB") -> int:
        """Replay into an empty schema: the loader folds the log and writes the view once; the position.

        Only for a projection with a `loader()` (others replay batch by batch through `catch_up`). The
        view and its tracking commit in one transaction, at the end. `sort_memory` is the work_mem of each
        process that sorts the log by aggregate for `_stream_log` (a million events, 420 MB, sort in memory
        in three parts); more events spill to disk, which costs time, not correctness.
        """
        make: Callable[[], Loader] | None = getattr(self.projection, "loader", None)
        if make is None:
            raise TypeError(f"projection {self.projection.name} has no loader; replay it with catch_up")
        start = self.position()
        if start:
            raise ValueError(f"schema {self.schema} is at position {start}: a load fills an empty one")
        table = sql.Identifier(self.source.datastore.schema, self.source.events_table_name)
        # One snapshot for the head and the rows: exactly the events up to the head are read.
        with psycopg.connect(self.dsn) as source:
            source.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            found = source.execute(
                sql.SQL("SELECT max(notification_id) FROM {} WHERE notification_id > %s").format(table),
                (start,),
            ).fetchone()
            head: int | None = found[0] if found else None
            if head is None:
                return start
            source.execute(sql.SQL("SET LOCAL work_mem = {}").format(sql.Literal(sort_memory)))
            # Sorting the whole log is worth parallel workers whatever the planner's default costs say: they
            # sort their parts side by side, and the first rows come in half the time.
            source.execute("SET LOCAL parallel_setup_cost = 0")
            source.execute("SET LOCAL parallel_tuple_cost = 0")

            def batches() -> Iterator[list[LogRow]]:
                read = 0
                for batch in self._stream_log(source, table, start):
                    read += len(batch)
                    yield batch
                    if self.on_batch is not None:  # progress in events read: the log is not read in order
                        self.on_batch(len(batch), min(start + read, head))

            with self.view.datastore.transaction(commit=True) as cursor:
                make().load(cursor, self.schema, batches())
                self.view._insert_tracking(cursor, Tracking(self.source_name, head))
        return head

    def _stream_log(
        self, conn: psycopg.Connection[tuple[Any, ...]], table: sql.Identifier, after: int
    ) -> Iterator[list[LogRow]]:
        """The stored events after `after`, undecoded, grouped by aggregate in version order, in batches.

        For replays only. Grouped, because a fold that meets each aggregate's events one after the other
        keeps its row in the CPU's cache; in log order it would touch a different row of a hundred thousand
        at every event, and spend most of its time waiting on memory (2-3x slower). PostgreSQL sorts in
        about a fifth of the time the fold then takes. Binary rows (the state arrives as bytes, not hex
        text), the id as text (a UUID object per row costs more than the server's cast), and libpq's chunked
        rows. The recorder's select_notifications would build a dict and a Notification per row.
        """
        query = sql.SQL(
            "SELECT notification_id, originator_id::text, originator_version, topic, state FROM {} AS e "
            "WHERE notification_id > %s ORDER BY e.originator_id, e.originator_version"
        ).format(table)
        with conn.cursor(binary=True) as cursor:
            rows = cursor.stream(query, (after,), size=self.batch_size)
            while batch := list(itertools.islice(rows, self.batch_size)):
                yield batch

    def catch_up(self, until: int | None = None) -> int:
        """Apply batches until the log (or `until`) is exhausted; returns the position reached."""
        position = self.position()
        while until is None or position < until:
            notifications = self.source.select_notifications(
                start=position, limit=self.batch_size, inclusive_of_start=False
            )
            if not notifications:
                break
            self._apply(notifications)
            position = notifications[-1].id
            if len(notifications) < self.batch_size:
                break
        return position

    def _apply(self, notifications: Sequence[Notification]) -> None:
        changes = changes_of(notifications)
        started = time.perf_counter()
        try:
            with self.view.datastore.transaction(commit=True) as cursor:
                self.projection.apply(cursor, self.schema, changes)
                self.view._insert_tracking(cursor, Tracking(self.source_name, notifications[-1].id))
        except BaseException:
            self.projection.forget()
            raise
        metrics.BATCH_SECONDS.labels(self.schema).observe(time.perf_counter() - started)
        metrics.EVENTS.labels(self.schema).inc(len(notifications))
        metrics.POSITION.labels(self.schema).set(notifications[-1].id)
        if self.on_batch is not None:
            self.on_batch(len(notifications), notifications[-1].id)

    def run(self, stop: threading.Event, standby_poll: float = 0.5) -> None:
        """Wait to become the active runner, then follow the log until `stop` is set."""
        while not stop.is_set():
            try:
                self._run_once(stop, standby_poll)
            except Exception as e:
                # A database or broker that went away, or a batch that cannot be applied: the batch was
                # rolled back, so say so and try again from the last committed position.
                log.warning("projection failed, retrying", projection=self.projection.name, error=repr(e))
                metrics.FAILURES.labels(self.schema).inc()
                metrics.ACTIVE.labels(self.schema).set(0)
                self.projection.forget()
                stop.wait(2.0)

    def _run_once(self, stop: threading.Event, standby_poll: float) -> None:
        # The lock connection names its process, so an operator (or a test) can see who is active.
        label = f"projection {self.projection.name} pid {os.getpid()}"
        with psycopg.connect(self.dsn, autocommit=True, application_name=label) as lock_conn:
            if not _try_lock(lock_conn, lock_key(self.projection.name)):
                stop.wait(standby_poll)
                return
            log.info("projection active", projection=self.projection.name, schema=self.schema)
            self.projection.forget()  # whoever ran before may have moved the view on
            metrics.ACTIVE.labels(self.schema).set(1)
            try:
                self._follow(stop, lock_conn)
            finally:
                metrics.ACTIVE.labels(self.schema).set(0)

    def _follow(self, stop: threading.Event, lock_conn: psycopg.Connection[tuple[object, ...]]) -> None:
        channel = self.source.channel_name
        with psycopg.connect(self.dsn, autocommit=True) as listen_conn:
            listen_conn.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(channel)))
            while not stop.is_set():
                self.catch_up()
                self._report_lag()
                # Wake on the store's NOTIFY; the timeout only bounds how long `stop` and a lost lock
                # connection go unnoticed, it is not how new events are found.
                for _ in listen_conn.notifies(timeout=1.0, stop_after=1):
                    pass
                lock_conn.execute("SELECT 1")

    def _report_lag(self) -> None:
        lag = self.lag()
        metrics.POSITION.labels(self.schema).set(lag.position)
        metrics.LAG_EVENTS.labels(self.schema).set(lag.events)
        metrics.LAG_SECONDS.labels(self.schema).set(lag.seconds)


def _try_lock(conn: psycopg.Connection[tuple[object, ...]], key: int) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    return bool(row and row[0])
