"""How commands append to the event store: one round trip per append, and concurrent saves together.

The library appends in a pipelined transaction (lock the table, NOTIFY, INSERT, sync, COMMIT): the
table lock is then held across two round trips to the client and whatever the client does between
them, so appends serialise at a rate set by the client, not by PostgreSQL. Its alternative, a plpgsql
insert function, appends in one round trip but does not lock the table, and without the lock a
transaction can commit a lower notification id after a higher one was read: a projection tailing
the log would skip that event for good (docs/architecture.md, "The event log, in order"). This
recorder's insert function takes the same EXCLUSIVE lock inside the server, so appends keep committing
in notification-id order while the lock is held only for the INSERT and the COMMIT.

The lock still makes appends commit one at a time, each waiting for the one before to flush its
commit to disk: `GroupedSaves` lets the commands that arrive meanwhile share the next append.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError, Recording, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg.sql import SQL, Identifier

TOPIC = "orders_core.event_store:LockingPostgresApplicationRecorder"
"""The recorder's topic, for the library's APPLICATION_RECORDER_TOPIC setting."""


class LockingPostgresApplicationRecorder(PostgresApplicationRecorder):
    """Appends events through a plpgsql function that locks the events table, in one round trip.

    The function has a name of its own (`es_insert_events_locked_<id type>`), so it is never confused
    with the library's lock-free one: a store whose tables were created before this recorder existed
    makes appends fail loudly ("function does not exist") until `backbone migrate` creates it, instead
    of appending without the lock. Appends always go through the function, whatever
    POSTGRES_ENABLE_DB_FUNCTIONS says.
    """

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.pg_function_name_insert_events = f"es_insert_events_locked_{self.datastore.originator_id_type}"
        schema, table = Identifier(self.datastore.schema), Identifier(self.events_table_name)
        function = Identifier(self.pg_function_name_insert_events)
        self.sql_invoke_pg_function_insert_events = SQL("SELECT * FROM {schema}.{function}((%s))").format(
            schema=schema, function=function
        )
        # The lock is taken before the NOTIFY and the INSERT, as the library's own append does, and is
        # released by the COMMIT that ends the caller's statement: ids are drawn and committed under it.
        self.sql_create_pg_function_insert_events = SQL(
            "CREATE OR REPLACE FUNCTION {schema}.{function}(events {schema}.{event}[]) "
            "RETURNS SETOF bigint "
            "LANGUAGE plpgsql "
            "AS $BODY$ "
            "BEGIN "
            "    SET LOCAL lock_timeout = '{lock_timeout}s'; "
            "    LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE; "
            "    NOTIFY {channel}; "
            "    RETURN QUERY "
            "    INSERT INTO {schema}.{table} AS t (originator_id, originator_version, topic, state) "
            "    SELECT originator_id, originator_version, topic, state FROM unnest(events) "
            "    RETURNING notification_id; "
            "END; "
            "$BODY$"
        ).format(
            schema=schema,
            function=function,
            event=Identifier(self.stored_event_type_name),
            lock_timeout=self.datastore.lock_timeout,
            table=table,
            channel=Identifier(self.channel_name),
        )
        self.sql_create_statements[self.create_insert_function_statement_index] = (
            self.sql_create_pg_function_insert_events
        )
        self._insert_query: bytes | None = None

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)  # as the library's own append
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """Append `stored_events` in one transaction; returns their notification ids, in order."""
        if not stored_events:
            return []
        rows = [
            self.construct_pg_stored_event(e.originator_id, e.originator_version, e.topic, e.state)
            for e in stored_events
        ]
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            if self._insert_query is None:  # composed once: psycopg would compose it again on every append
                self._insert_query = self.sql_invoke_pg_function_insert_events.as_bytes(conn)
            curs.execute(self._insert_query, (rows,), prepare=True)
            return [row[self.pg_function_name_insert_events] for row in curs.fetchall()]


class GroupedSaves:
    """Saves the events of concurrent commands together: one append, one table lock, one commit.

    Appends hold the table lock through their COMMIT (and so through its WAL flush), so one at a time
    can commit; while one group commits, the saves that arrive queue up and go together as the next
    group. A lone save goes straight through. A group that fails (one of its commands lost an
    optimistic-concurrency race, say) is saved again one command at a time, so each caller gets its own
    outcome and no command's events depend on another's.

    Callers on a thread (`save`) take turns leading a group on their own thread. Callers on an event loop
    (`save_async`) never block it: their groups are led by one saver thread, which wakes each loop once
    per group, so a command costs its loop no thread of its own.
    """

    def __init__(self, save: Callable[..., list[Recording[Any]]], max_group: int = 64) -> None:
        self._save = save
        self._max_group = max_group
        self._lock = threading.Lock()
        self._queue: list[_PendingSave] = []
        self._leading = False
        self._saver: ThreadPoolExecutor | None = None

    def save(self, events: Sequence[Any]) -> list[Recording[Any]]:
        """Store `events` (of one command) atomically; returns their recordings, in order."""
        pending = _PendingSave(list(events))
        with self._lock:
            self._queue.append(pending)
            if not self._leading:
                self._leading = pending.leads = True
        if not pending.leads:
            pending.wake.wait()  # set when the group with this save is done, or when this save is to lead
        if pending.leads and not pending.finished:
            self._save_next_group(on_saver=False)
        return pending.outcome()

    async def save_async(self, events: Sequence[Any]) -> list[Recording[Any]]:
        """As `save`, awaited on an event loop: the append runs on the saver thread."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        pending = _PendingSave(list(events), loop=loop, done=done)
        with self._lock:
            self._queue.append(pending)
            if not self._leading:
                try:
                    self._saver_thread().submit(self._lead_groups)
                except RuntimeError:  # closed: refused here rather than left waiting for a saver
                    self._queue.remove(pending)
                    raise
                self._leading = True
        await done
        return pending.outcome()

    def close(self) -> None:
        """Let the saver thread finish what it was given, and stop it."""
        if self._saver is not None:
            self._saver.shutdown(wait=True)

    def _saver_thread(self) -> ThreadPoolExecutor:
        if self._saver is None:
            self._saver = ThreadPoolExecutor(1, thread_name_prefix="grouped-saves")
        return self._saver

    def _lead_groups(self) -> None:
        while self._save_next_group(on_saver=True):
            pass

    def _save_next_group(self, on_saver: bool) -> bool:
        """Save the oldest saves queued as one group; True if this (the saver) thread leads the next too."""
        with self._lock:
            group, self._queue = self._queue[: self._max_group], self._queue[self._max_group :]
        keep_leading = False
        try:
            # Under the context of the group's first command, as if its own thread saved it: a trace shows
            # the append's statements in that command's request.
            group[0].context.run(self._save_group, group)
        finally:
            with self._lock:
                # Hand the lead to the oldest waiting save, or put it down: exactly one thread leads. A save
                # awaited on a loop is led by the saver thread, a blocking save by its own thread.
                if not self._queue:
                    self._leading = False
                elif self._queue[0].done is None:
                    self._queue[0].leads = True
                    self._queue[0].wake.set()
                elif on_saver:
                    keep_leading = True
                else:
                    self._saver_thread().submit(self._lead_groups)
            settled: dict[asyncio.AbstractEventLoop, list[_PendingSave]] = {}
            for pending in group:
                if pending.recordings is None and pending.error is None:  # the leader was interrupted
                    pending.error = RuntimeError("the save was interrupted before it was stored")
                pending.finished = True
                if pending.loop is None:
                    pending.wake.set()
                else:
                    settled.setdefault(pending.loop, []).append(pending)
            for loop, awaited in settled.items():
                with contextlib.suppress(RuntimeError):  # that loop has closed: nobody is waiting any more
                    loop.call_soon_threadsafe(_settle, awaited)
        return keep_leading

    def _save_group(self, group: list[_PendingSave]) -> None:
        if len(group) > 1 and self._saved_together(group):
            return
        for pending in group:
            try:
                pending.recordings = self._save(*pending.events)
            except Exception as e:  # raised again in the caller's thread
                pending.error = e

    def _saved_together(self, group: list[_PendingSave]) -> bool:
        try:
            recordings = self._save(*(e for pending in group for e in pending.events))
        except Exception:
            return False  # nothing of the group was stored: each save is tried alone for its own outcome
        start = 0
        for pending in group:
            pending.recordings = recordings[start : start + len(pending.events)]
            start += len(pending.events)
        return True


def _settle(saves: list[_PendingSave]) -> None:
    """On the loop that awaits them: wake the callers of `saves`, which are stored or failed."""
    for pending in saves:
        if pending.done is not None and not pending.done.done():  # a cancelled caller is not waiting
            pending.done.set_result(None)


@dataclass(eq=False)
class _PendingSave:
    events: list[Any]
    wake: threading.Event = field(default_factory=threading.Event)
    loop: asyncio.AbstractEventLoop | None = None
    """The loop of a caller of `save_async`, which awaits `done` there instead of waiting on `wake`."""
    done: asyncio.Future[None] | None = None
    context: contextvars.Context = field(default_factory=contextvars.copy_context)
    leads: bool = False
    finished: bool = False
    recordings: list[Recording[Any]] | None = None
    error: Exception | None = None

    def outcome(self) -> list[Recording[Any]]:
        if self.error is not None:
            raise self.error
        assert self.recordings is not None
        return self.recordings
