"""Runs one projection: follows the event store's notification log and applies it in batches.

Each batch writes its view rows and its tracking position in one transaction (eventsourcing's
PostgresTrackingRecorder refuses a position that does not advance), so a crash loses or doubles nothing.
The runner wakes on the store's LISTEN/NOTIFY channel, and reads the log by notification id: the store
serialises appends with a table lock, so ids commit in order and no late commit fills a gap behind us.
One runner per projection is active across processes (a PostgreSQL advisory lock); others wait as standbys.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

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


class Loader(Protocol):
    """A projection's fold for replays into empty tables: all in memory, written once."""

    def add(self, changes: Sequence[Change]) -> None:
        """Fold a batch of the log."""

    def write(self, cursor: Cursor[DictRow], schema: str) -> None:
        """Write the whole view into the schema's empty tables."""


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

    def load(self) -> int:
        """Replay into an empty schema: fold the whole log in memory, write the view once; the position.

        Only for a projection with a `loader()` (others replay batch by batch through `catch_up`). The
        view and its tracking still commit in one transaction, at the end.
        """
        make: Callable[[], Loader] | None = getattr(self.projection, "loader", None)
        if make is None:
            raise TypeError(f"projection {self.projection.name} has no loader; replay it with catch_up")
        loader = make()
        start = position = self.position()
        for batch in self._stream_log(position):
            loader.add(batch)
            position = batch[-1].position
            if self.on_batch is not None:
                self.on_batch(len(batch), position)
        if position > start:
            with self.view.datastore.transaction(commit=True) as cursor:
                loader.write(cursor, self.schema)
                self.view._insert_tracking(cursor, Tracking(self.source_name, position))
        return position

    def _stream_log(self, after: int) -> Iterator[list[Change]]:
        """The log after `after` in batches, read with one streamed SELECT and tuple rows.

        For replays only: the recorder's select_notifications builds a dict and a Notification per row,
        which costs more than the fold itself over a million events.
        """
        query = sql.SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM {} "
            "WHERE notification_id > %s ORDER BY notification_id"
        ).format(sql.Identifier(self.source.datastore.schema, self.source.events_table_name))
        with psycopg.connect(self.dsn) as conn, conn.cursor(name="replay") as cursor:
            cursor.itersize = self.batch_size
            cursor.execute(query, (after,))
            while rows := cursor.fetchmany(self.batch_size):
                batch = []
                for position, aggregate_id, version, topic, state in rows:
                    event = read_stored_event(topic, bytes(state))
                    if event is not None:
                        batch.append(Change(position, str(aggregate_id), version, event))
                if batch:
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
