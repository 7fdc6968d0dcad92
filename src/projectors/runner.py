"""Runs one projection: follows the event store's notification log and applies it in batches.

Each batch writes its view rows and its tracking position in one transaction (eventsourcing's
PostgresTrackingRecorder refuses a position that does not advance), so a crash loses or doubles nothing.
The runner wakes on the store's LISTEN/NOTIFY channel, and reads the log by notification id: the store
serialises appends with a table lock, so ids commit in order and no late commit fills a gap behind us.
One runner per projection is active across processes (a PostgreSQL advisory lock); others wait as standbys.

A batch that fails is one of two things. A transient fault (the database away, a serialisation failure:
projectors/faults.py) is retried with backoff, the runner staying active and saying it is failing. Any other
failure is narrowed down by halves to the event that cannot be applied, which is parked with every later
event of its aggregate (the `parked` table of the view's schema) while all other aggregates flow on; the
aggregate's history is applied in order or not at all. `retry` applies them once a fix is deployed.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
import structlog
from eventsourcing.persistence import Notification, Tracking
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresTrackingRecorder
from psycopg import Cursor, sql
from psycopg.rows import DictRow

from orders_core.contracts import BY_EVENT, UNPROJECTED_TOPICS, Change, read_stored_event
from projectors import metrics
from projectors.faults import NotYetPoison, is_transient
from projectors.health import projection_health

log = structlog.get_logger("projector")


LogRow = tuple[int, str, int, str, bytes]
"""One stored event as a replay reads it: (position, aggregate id, version, topic, state)."""


class Loader(Protocol):
    """A projection's fold for replays into empty tables: all in memory, each row written once."""

    def load(self, cursor: Cursor[DictRow], schema: str, batches: Iterable[Sequence[LogRow]]) -> None:
        """Fold the log's rows (undecoded: the loader decodes only what it shows) into schema's tables."""


class Projector(Protocol):
    """What folds changes of the event log into a view: tables of one schema, or the broker for the relay.

    (Not eventsourcing's `Projection`, which processes domain events with its own runner: this one is
    given decoded stored events in batches, inside the runner's transaction.)"""

    name: str

    def apply(self, cursor: Cursor[DictRow], schema: str, changes: Sequence[Change]) -> None:
        """Write what `changes` mean for the view, in the caller's transaction."""

    def forget(self) -> None:
        """Drop any cached view state (after a failed transaction, or a switch of schema)."""


def changes_of(notifications: Sequence[Notification]) -> tuple[list[Change], int]:
    """Decode the notifications projections understand; others (unknown topics) are skipped by design.

    Returns the changes and how many were skipped. An event of a known topic that cannot be decoded
    raises: that is an event the projection cannot apply, and the runner parks it.
    """
    found, unprojected = [], 0
    for n in notifications:
        if n.topic.startswith(UNPROJECTED_TOPICS):  # known, and for no view: neither decoded nor skipped
            unprojected += 1
            continue
        event = read_stored_event(n.topic, n.state)
        # An order event of a kind this code does not know yet (written by a newer version of the CRM).
        if event is not None and (event.aggregate != "order" or event.name in BY_EVENT):
            found.append(Change(n.id, str(n.originator_id), n.originator_version, event))
    return found, len(notifications) - len(found) - unprojected


def event_type(topic: str) -> str:
    """The event's class name from its stored topic (`module:Aggregate.Event`)."""
    return topic.rpartition(".")[2] or topic


PROBE_EVENTS = 20
"""Events after a suspected poison event applied (and rolled back) to show the view itself is sound."""


class ViewTrackingRecorder(PostgresTrackingRecorder):
    """eventsourcing's tracking recorder, with the position written inside the caller's transaction public:
    a view's rows and its position commit together (the library keeps that method private)."""

    def insert_tracking_in(self, cursor: Cursor[DictRow], tracking: Tracking) -> None:
        """Record `tracking` in the transaction of `cursor`; refuses a position that does not advance."""
        self._insert_tracking(cursor, tracking)


def lock_key(name: str) -> int:
    """A stable 63-bit advisory lock key for a projection name."""
    return int.from_bytes(hashlib.sha256(f"projection:{name}".encode()).digest()[:8], "big") >> 1


def batch_lock_key(schema: str) -> int:
    """The transaction lock that a batch and a retry of parked events of the view in `schema` take."""
    return lock_key(f"batch:{schema}")


class ProjectorRunner:
    """Keeps one projection's view up to date with the event store."""

    def __init__(
        self,
        projection: Projector,
        source: PostgresApplicationRecorder,
        source_name: str,
        view: ViewTrackingRecorder,
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
        self.batch_lock = batch_lock_key(self.schema)
        self._failing = False
        self._success_written = 0.0
        self._reported = 0.0

    def close(self) -> None:
        """Close the connection pools of the source and the view."""
        self.source.datastore.close()
        self.view.datastore.close()

    def position(self) -> int:
        """The last position this projection has applied."""
        return self.view.max_tracking_id(self.source_name) or 0

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

            try:
                with self.view.datastore.transaction(commit=True) as cursor:
                    make().load(cursor, self.schema, batches())
                    self._track(cursor, head)
            except Exception as error:
                if is_transient(error):
                    raise
                # An event the fold cannot apply: nothing of the load was kept. Batch by batch, the runner
                # parks that event's aggregate and applies everything else.
                log.warning("load failed, replaying batch by batch", schema=self.schema, error=repr(error))
                self.projection.forget()
                return self.catch_up()
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
        """Apply batches until the log (or `until`) is exhausted; returns the position reached.

        A fault of the database raises (the caller retries the batch); an event that cannot be applied is
        parked with its aggregate, and the rest of the log goes on.
        """
        position = self.position()
        while until is None or position < until:
            notifications = self.source.select_notifications(
                start=position, limit=self.batch_size, inclusive_of_start=False
            )
            if not notifications:
                break
            self.apply_batch(notifications)
            position = notifications[-1].id
            if len(notifications) < self.batch_size:
                break
        return position

    def apply_batch(self, notifications: Sequence[Notification]) -> None:
        """Apply `notifications` (the next ones after the position) and move the position past them.

        If the batch fails for a reason other than a transient fault, it is narrowed down: each half is
        applied on its own, down to single events. A single event that fails while the events after it
        apply is poison: it is parked with its aggregate (see `_park`).
        """
        try:
            self._commit(notifications)
        except Exception as error:
            self.projection.forget()
            if is_transient(error):
                raise
            if len(notifications) > 1:
                half = len(notifications) // 2
                self.apply_batch(notifications[:half])
                self.apply_batch(notifications[half:])
                return
            suspect = notifications[0]
            self._confirm_poison(suspect, error)
            self._park(suspect, error)

    def _commit(self, notifications: Sequence[Notification]) -> None:
        """One transaction: the view's rows for the batch, the parked events of parked aggregates, the
        position. Serialised with `retry` by a transaction lock, so neither misses what the other parks or
        unparks."""
        started = time.perf_counter()
        with self.view.datastore.transaction(commit=True) as cursor:
            parked = self._lock_batch(cursor)
            held = [n for n in notifications if str(n.originator_id) in parked]
            changes, unknown = changes_of([n for n in notifications if str(n.originator_id) not in parked])
            self.projection.apply(cursor, self.schema, changes)
            for n in held:
                self._insert_parked(cursor, n, f"waits behind the parked events of {n.originator_id}")
            self._track(cursor, notifications[-1].id)
        if unknown:
            metrics.SKIPPED.labels(self.schema).inc(unknown)
        if held:
            metrics.PARKED_EVENTS.labels(self.schema).inc(len(held))
        metrics.BATCH_SECONDS.labels(self.schema).observe(time.perf_counter() - started)
        metrics.EVENTS.labels(self.schema).inc(len(notifications))
        metrics.POSITION.labels(self.schema).set(notifications[-1].id)
        if self.on_batch is not None:
            self.on_batch(len(notifications), notifications[-1].id)

    def _track(self, cursor: Cursor[DictRow], position: int) -> None:
        self.view.insert_tracking_in(cursor, Tracking(self.source_name, position))

    def _confirm_poison(self, suspect: Notification, error: Exception) -> None:
        """Raise `NotYetPoison` unless an event after `suspect`, of another aggregate, applies.

        A batch that fails event by event is a fault of the projection or its tables (a bad deployment),
        not of one event: parking would park every aggregate. So the events that follow are tried, each in
        a savepoint of a transaction that is rolled back, until one applies: then the view is sound and
        `suspect` is poison (another poison event among them does not count against it). With none that
        applies yet, the runner waits and retries, saying why in its health.
        """
        after = self.source.select_notifications(
            start=suspect.id, limit=PROBE_EVENTS, inclusive_of_start=False
        )
        failures: list[Exception] = []
        try:
            with self.view.datastore.transaction(commit=False) as cursor:
                parked = self._parked_aggregates(cursor) | {str(suspect.originator_id)}
                for n in after:
                    changes, _ = changes_of([n]) if str(n.originator_id) not in parked else ([], 0)
                    if not changes:
                        continue
                    try:
                        with cursor.connection.transaction():  # a savepoint
                            self.projection.apply(cursor, self.schema, changes)
                        return
                    except Exception as probe_error:
                        if is_transient(probe_error):
                            raise
                        failures.append(probe_error)
        finally:  # whatever the probes left cached was rolled back
            self.projection.forget()
        found = f", and neither can the {len(failures)} after it ({failures[0]!r})" if failures else ""
        raise NotYetPoison(
            f"event {suspect.id} of {suspect.originator_id} cannot be applied ({error!r}){found}: it is "
            "parked once a later event of another aggregate applies, which shows the view itself is sound"
        ) from error

    def _park(self, poison: Notification, error: Exception) -> None:
        """Park `poison`, which cannot be applied, and move the position past it, in one transaction.

        Its aggregate's later events are parked as they come (`_commit`), so the aggregate's history is
        applied in order or not at all; its rows in the view say since when and why they are stale.
        """
        reason = f"{event_type(poison.topic)} at position {poison.id} cannot be applied: {error!r}"[:2000]
        with self.view.datastore.transaction(commit=True) as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (self.batch_lock,))
            self._insert_parked(cursor, poison, reason)
            mark = getattr(self.projection, "mark_parked", None)
            if mark is not None:
                mark(cursor, self.schema, str(poison.originator_id), reason)
            self._track(cursor, poison.id)
        self.projection.forget()
        metrics.PARKED_EVENTS.labels(self.schema).inc()
        metrics.POSITION.labels(self.schema).set(poison.id)
        log.error(
            "event parked",
            projection=self.projection.name,
            aggregate_id=str(poison.originator_id),
            position=poison.id,
            event_type=event_type(poison.topic),
            error=repr(error),
        )
        if self.on_batch is not None:
            self.on_batch(1, poison.id)

    def _insert_parked(self, cursor: Cursor[DictRow], n: Notification, error: str) -> None:
        cursor.execute(
            sql.SQL(
                "INSERT INTO {} (aggregate_id, position, version, event_type, error) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
            ).format(sql.Identifier(self.schema, "parked")),
            (n.originator_id, n.id, n.originator_version, event_type(n.topic), error),
        )

    def _lock_batch(self, cursor: Cursor[DictRow]) -> set[str]:
        """Take the batch lock (see `_commit`) and read the parked aggregates, in one round trip."""
        query = sql.SQL(
            "SELECT pg_advisory_xact_lock(%s), array(SELECT DISTINCT aggregate_id::text FROM {}) AS ids"
        ).format(sql.Identifier(self.schema, "parked"))
        row = cursor.execute(query, (self.batch_lock,), prepare=True).fetchone()
        return set(row["ids"]) if row else set()

    def _parked_aggregates(self, cursor: Cursor[DictRow]) -> set[str]:
        query = sql.SQL("SELECT DISTINCT aggregate_id::text AS id FROM {}").format(
            sql.Identifier(self.schema, "parked")
        )
        return {row["id"] for row in cursor.execute(query)}

    def retry(self, aggregate_id: str) -> str | None:
        """Apply an aggregate's parked events again, in order; unpark it if they apply.

        Returns None on success, else why they still cannot be applied (recorded on the first parked event,
        which stays parked with the others). Runs beside the active runner: the transaction lock of
        `_commit` keeps the two apart.
        """
        try:
            with self.view.datastore.transaction(commit=True) as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (self.batch_lock,))
                table = sql.Identifier(self.schema, "parked")
                positions = [
                    row["position"]
                    for row in cursor.execute(
                        sql.SQL("SELECT position FROM {} WHERE aggregate_id = %s ORDER BY position").format(
                            table
                        ),
                        (aggregate_id,),
                    )
                ]
                notifications = [self._notification_at(p) for p in positions]
                changes, _ = changes_of(notifications)
                self.projection.forget()
                self.projection.apply(cursor, self.schema, changes)
                mark = getattr(self.projection, "mark_parked", None)
                if mark is not None:
                    mark(cursor, self.schema, aggregate_id, None)
                cursor.execute(
                    sql.SQL("DELETE FROM {} WHERE aggregate_id = %s").format(table), (aggregate_id,)
                )
        except Exception as error:
            self.projection.forget()
            if is_transient(error):
                raise
            reason = f"still cannot be applied: {error!r}"[:2000]
            with self.view.datastore.transaction(commit=True) as cursor:
                cursor.execute(
                    sql.SQL(
                        "UPDATE {0} SET retried_at = now(), retry_requested_at = NULL, error = CASE "
                        "WHEN position = (SELECT min(position) FROM {0} WHERE aggregate_id = %(id)s) "
                        "THEN %(error)s ELSE error END WHERE aggregate_id = %(id)s"
                    ).format(sql.Identifier(self.schema, "parked")),
                    {"id": aggregate_id, "error": reason},
                )
            log.warning(
                "retry of parked events failed",
                projection=self.projection.name,
                aggregate_id=aggregate_id,
                error=repr(error),
            )
            return reason
        self.projection.forget()
        log.info("aggregate unparked", projection=self.projection.name, aggregate_id=aggregate_id)
        return None

    def retry_requested(self) -> None:
        """Retry every aggregate that `projections retry` marked (projectors/parked.py)."""
        query = sql.SQL(
            "SELECT DISTINCT aggregate_id::text AS id FROM {} WHERE retry_requested_at IS NOT NULL"
        )
        with self.view.datastore.transaction(commit=False) as cursor:
            marked = [
                row["id"] for row in cursor.execute(query.format(sql.Identifier(self.schema, "parked")))
            ]
        for aggregate_id in marked:
            self.retry(aggregate_id)

    def _notification_at(self, position: int) -> Notification:
        found = self.source.select_notifications(start=position, limit=1, inclusive_of_start=True)
        if not found or found[0].id != position:
            raise LookupError(f"the event store has no event at position {position}")
        notification: Notification = found[0]
        return notification

    def run(self, stop: threading.Event, standby_poll: float = 0.5) -> None:
        """Wait to become the active runner, then follow the log until `stop` is set."""
        while not stop.is_set():
            try:
                self._run_once(stop, standby_poll)
            except LockLost as e:
                log.error("projection stepped down", projection=self.projection.name, error=str(e))
                metrics.ACTIVE.labels(self.schema).set(0)
                self.projection.forget()
                stop.wait(2.0)
            except Exception as e:
                # The database went away (the lock and listening connections with it): say so, and try
                # again from the last committed position, as active runner or standby.
                log.warning(
                    "projection lost its connection, retrying", projection=self.projection.name, error=repr(e)
                )
                metrics.ACTIVE.labels(self.schema).set(0)
                self.projection.forget()
                stop.wait(2.0)

    def _run_once(self, stop: threading.Event, standby_poll: float) -> None:
        # The lock connection names its process, so an operator (or a test) can see who is active.
        label = f"projection {self.projection.name} pid {os.getpid()}"
        with psycopg.connect(self.dsn, autocommit=True, application_name=label) as lock_conn:
            lock = _try_lock(lock_conn, lock_key(self.projection.name))
            if lock is None:
                self._report()
                stop.wait(standby_poll)
                return
            log.info("projection active", projection=self.projection.name, schema=self.schema)
            self.projection.forget()  # whoever ran before may have moved the view on
            metrics.ACTIVE.labels(self.schema).set(1)
            try:
                self._follow(stop, lock, f"{socket.gethostname()} pid {os.getpid()}")
            finally:
                metrics.ACTIVE.labels(self.schema).set(0)

    def _follow(self, stop: threading.Event, lock: SessionLock, me: str) -> None:
        channel = self.source.channel_name
        backoff = Backoff()
        with psycopg.connect(self.dsn, autocommit=True) as listen_conn:
            listen_conn.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(channel)))
            while not stop.is_set():
                try:
                    self.catch_up()
                    self.retry_requested()
                except Exception as e:
                    # Rolled back: the position is where the last committed batch left it. Stay active
                    # (the standby would meet the same fault) and say so where people look.
                    log.warning("projection failed, retrying", projection=self.projection.name, error=repr(e))
                    metrics.FAILURES.labels(self.schema).inc()
                    self.projection.forget()
                    self._record_failure(me, e)
                    self._report()
                    stop.wait(backoff.next())
                    lock.check()
                    continue
                backoff.reset()
                self._record_success(me)
                self._report()
                # Wake on the store's NOTIFY; the timeout only bounds how long `stop` and a lost lock
                # connection go unnoticed, it is not how new events are found.
                for _ in listen_conn.notifies(timeout=1.0, stop_after=1):
                    pass
                lock.check()

    def _record_success(self, me: str) -> None:
        """Note a clean catch-up in runner_state: at once after failures, else at most once a second."""
        now = time.monotonic()
        if not self._failing and now - self._success_written < 1.0:
            return
        self._write_state(
            "INSERT INTO {} AS s (id, runner, last_success_at, failing_since) VALUES (1, %s, now(), NULL) "
            "ON CONFLICT (id) DO UPDATE SET runner = EXCLUDED.runner, last_success_at = now(), "
            "failing_since = NULL",
            (me,),
        )
        self._failing, self._success_written = False, now
        metrics.LAST_SUCCESS.labels(self.schema).set(time.time())

    def _record_failure(self, me: str, error: Exception) -> None:
        self._failing = True
        with contextlib.suppress(Exception):  # the database may be the fault: then nobody can read it anyway
            self._write_state(
                "INSERT INTO {} AS s (id, runner, failing_since, last_error, last_error_at) "
                "VALUES (1, %s, now(), %s, now()) ON CONFLICT (id) DO UPDATE SET runner = EXCLUDED.runner, "
                "failing_since = coalesce(s.failing_since, now()), last_error = EXCLUDED.last_error, "
                "last_error_at = now()",
                (me, repr(error)[:2000]),
            )

    def _write_state(self, statement: str, params: tuple[Any, ...]) -> None:
        with self.view.datastore.transaction(commit=True) as cursor:
            cursor.execute(sql.SQL(statement).format(sql.Identifier(self.schema, "runner_state")), params)

    def _report(self, every: float = 1.0) -> None:
        """Lag, parked aggregates and the last success as metrics, measured against the store's head
        whether or not the last batch succeeded; at most once every `every` seconds (a busy runner
        catches up hundreds of times a second, and the figures need no more than the scrape interval)."""
        now = time.monotonic()
        if now - self._reported < every:
            return
        self._reported = now
        try:
            with self.view.datastore.get_connection() as conn:
                health = projection_health(conn, self.schema)
        except Exception as e:  # the database is away: the failure itself is logged where it happens
            log.debug("projection health unavailable", projection=self.projection.name, error=repr(e))
            return
        metrics.POSITION.labels(self.schema).set(health.position)
        metrics.LAG_EVENTS.labels(self.schema).set(health.lag_events)
        metrics.LAG_SECONDS.labels(self.schema).set(health.lag_seconds)
        metrics.PARKED.labels(self.schema).set(health.parked_aggregates)
        if health.last_success_at is not None:
            metrics.LAST_SUCCESS.labels(self.schema).set(health.last_success_at.timestamp())


class Backoff:
    """Waits between retries of a failing batch: 0.5 s doubling to 5 s, with jitter, reset on success.

    Short at most: a retry costs one batch's attempt, and the usual fault (the broker or the database
    restarting) is over in seconds; a longer wait would only keep the view behind after it is back."""

    def __init__(self, first: float = 0.5, most: float = 5.0) -> None:
        self.first, self.most, self.wait = first, most, first

    def next(self) -> float:
        wait = self.wait * random.uniform(0.8, 1.2)  # spreads the retries of several runners
        self.wait = min(self.wait * 2, self.most)
        return wait

    def reset(self) -> None:
        self.wait = self.first


class LockLost(RuntimeError):
    """The session that took the projection's lock no longer holds it: another runner may be active."""


@dataclass(frozen=True)
class SessionLock:
    """A projection's advisory lock, taken by the server session `pid` behind `conn`."""

    conn: psycopg.Connection[tuple[object, ...]]
    key: int
    pid: int

    def check(self) -> None:
        """Raise LockLost unless the session that took the lock still serves `conn` and holds it.

        Checked between batches, not merely pinged: behind a pooler in transaction mode (PgBouncer's
        pool_mode=transaction) each statement may run on another server session, the lock stays on the
        one that took it, and another runner whose statement lands there takes it again (advisory locks
        are re-entrant per session): two active runners. The runner steps down instead (docs/scaling.md).
        """
        row = self.conn.execute(
            "SELECT pg_backend_pid(), EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
            "AND granted AND pid = pg_backend_pid() AND classid::bigint = %s AND objid::bigint = %s "
            "AND objsubid = 1)",
            (self.key >> 32, self.key & 0xFFFFFFFF),
        ).fetchone()
        if row is None or row[0] != self.pid or not row[1]:
            raise LockLost(
                f"the database session that took the lock (pid {self.pid}) no longer serves this runner "
                f"or holds the lock (now pid {row[0] if row else None}): projectors and the relay need a "
                "session of their own, PostgreSQL directly or a session-mode pool, never a pooler in "
                "transaction mode"
            )


def _try_lock(conn: psycopg.Connection[tuple[object, ...]], key: int) -> SessionLock | None:
    row = conn.execute("SELECT pg_try_advisory_lock(%s), pg_backend_pid()", (key,)).fetchone()
    return SessionLock(conn, key, int(str(row[1]))) if row and row[0] else None
