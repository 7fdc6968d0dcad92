"""How commands append to the event store: one round trip per append, and concurrent saves together.

The library appends in a pipelined transaction (lock the table, NOTIFY, INSERT, sync, COMMIT): the
table lock is then held across two round trips to the client and whatever the client does between
them, so appends serialise at a rate set by the client, not by PostgreSQL. Its alternative, a plpgsql
insert function, appends in one round trip but does not lock the table, and without the lock a
transaction can commit a lower notification id after a higher one was read: a projection tailing
the log would skip that event for good (DESIGN.md section 9). This recorder's insert function takes
the same EXCLUSIVE lock inside the server, so appends keep committing in notification-id order while
the lock is held only for the INSERT and the COMMIT.

The lock still makes appends commit one at a time, each waiting for the one before to flush its
commit to disk: `GroupedSaves` lets the commands that arrive meanwhile share the next append.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
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
            curs.execute(self.sql_invoke_pg_function_insert_events, (rows,), prepare=True)
            return [row[self.pg_function_name_insert_events] for row in curs.fetchall()]


class GroupedSaves:
    """Saves the events of concurrent commands together: one append, one table lock, one commit.

    Appends hold the table lock through their COMMIT (and so through its WAL flush), so one at a time
    can commit; while one group commits, the saves that arrive queue up and go together as the next
    group. A lone save goes straight through. A group that fails (one of its commands lost an
    optimistic-concurrency race, say) is saved again one command at a time, so each caller gets its own
    outcome and no command's events depend on another's.
    """

    def __init__(self, save: Callable[..., list[Recording[Any]]], max_group: int = 64) -> None:
        self._save = save
        self._max_group = max_group
        self._lock = threading.Lock()
        self._queue: list[_PendingSave] = []
        self._leading = False

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
            self._save_next_group()
        return pending.outcome()

    def _save_next_group(self) -> None:
        with self._lock:
            group, self._queue = self._queue[: self._max_group], self._queue[self._max_group :]
        try:
            self._save_group(group)
        finally:
            with self._lock:
                # Hand the lead to the oldest waiting save, or put it down: exactly one thread leads.
                if self._queue:
                    self._queue[0].leads = True
                    self._queue[0].wake.set()
                else:
                    self._leading = False
            for pending in group:
                if pending.recordings is None and pending.error is None:  # the leader was interrupted
                    pending.error = RuntimeError("the save was interrupted before it was stored")
                pending.finished = True
                pending.wake.set()

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


@dataclass(eq=False)
class _PendingSave:
    events: list[Any]
    wake: threading.Event = field(default_factory=threading.Event)
    leads: bool = False
    finished: bool = False
    recordings: list[Recording[Any]] | None = None
    error: Exception | None = None

    def outcome(self) -> list[Recording[Any]]:
        if self.error is not None:
            raise self.error
        assert self.recordings is not None
        return self.recordings
