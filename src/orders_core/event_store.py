"""The event store's recorder: the library's PostgreSQL recorder, appending in one round trip.

The library appends in a pipelined transaction (lock the table, NOTIFY, INSERT, sync, COMMIT): the
table lock is then held across two round trips to the client and whatever the client does between
them, so appends serialise at a rate set by the client, not by PostgreSQL. Its alternative, a plpgsql
insert function, appends in one round trip but does not lock the table, and without the lock a
transaction can commit a lower notification id after a higher one was read: a projection tailing
the log would skip that event for good (DESIGN.md section 9). This recorder's insert function takes
the same EXCLUSIVE lock inside the server, so appends keep committing in notification-id order while
the lock is held only for the INSERT and the COMMIT.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
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
