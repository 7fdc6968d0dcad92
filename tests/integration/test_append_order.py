"""The one-round-trip append keeps the table lock that makes notification ids commit in order."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent

from backbone.database import eventsourcing_env
from orders_core.application import OrdersApplication
from orders_core.event_store import LockingPostgresApplicationRecorder
from orders_core.outcomes import Accepted
from tests.orders import OWNER, initiate_command

INSERT_FUNCTION = "crm.es_insert_events_locked_uuid"


@pytest.fixture
def app(database: str) -> Iterator[OrdersApplication]:
    """The application as every process wires it."""
    application = OrdersApplication(env=eventsourcing_env(database, pool_size=4))
    yield application
    application.close()


def stored_event() -> StoredEvent:
    return StoredEvent(originator_id=uuid4(), originator_version=1, topic="bench:Event", state=b"{}")


def recorder_of(app: OrdersApplication) -> LockingPostgresApplicationRecorder:
    recorder = app.recorder
    assert isinstance(recorder, LockingPostgresApplicationRecorder)
    return recorder


def test_every_process_appends_with_the_locking_recorder(app: OrdersApplication) -> None:
    assert isinstance(app.recorder, LockingPostgresApplicationRecorder)


def test_an_append_waits_for_an_uncommitted_append_and_commits_after_it(
    app: OrdersApplication, database: str
) -> None:
    recorder = recorder_of(app)
    holder = psycopg.connect(database)  # a transaction that appended and has not committed yet
    try:
        held = holder.execute(
            f"SELECT * FROM {INSERT_FUNCTION}(ARRAY[(%s, 1, 't', ''::bytea)]::crm.stored_event_uuid[])",
            (uuid4(),),
        ).fetchone()
        assert held is not None
        first_id = held[0]
        appended: list[int] = []
        later = threading.Thread(
            target=lambda: appended.extend(recorder.insert_events([stored_event()]) or [])
        )
        later.start()
        time.sleep(0.5)
        assert later.is_alive() and not appended, "the second append did not wait for the table lock"
        holder.commit()
        later.join(timeout=10)
        assert appended and appended[0] > first_id
    finally:
        holder.close()


def test_the_insert_function_takes_the_exclusive_table_lock(app: OrdersApplication, database: str) -> None:
    recorder_of(app)
    with psycopg.connect(database) as conn:
        conn.execute(
            f"SELECT * FROM {INSERT_FUNCTION}(ARRAY[(%s, 1, 't', ''::bytea)]::crm.stored_event_uuid[])",
            (uuid4(),),
        )
        row = conn.execute(
            "SELECT mode FROM pg_locks WHERE pid = pg_backend_pid() AND granted"
            " AND relation = 'crm.orders_events'::regclass AND mode = 'ExclusiveLock'"
        ).fetchone()
        conn.rollback()
    assert row is not None


def test_a_reader_tailing_concurrent_appends_misses_none(app: OrdersApplication) -> None:
    recorder = recorder_of(app)
    seen: list[int] = []
    done = threading.Event()

    def tail() -> None:
        # Reads only forward, as a projection does: an id committed after a higher one would be missed.
        while True:
            finished = done.is_set()
            seen.extend(n.id for n in recorder.select_notifications(max(seen, default=0) + 1, 1000))
            if finished:
                return

    def append() -> None:
        for _ in range(100):
            recorder.insert_events([stored_event()])

    reader = threading.Thread(target=tail)
    writers = [threading.Thread(target=append) for _ in range(4)]
    for thread in (reader, *writers):
        thread.start()
    for writer in writers:
        writer.join()
    done.set()
    reader.join()
    assert seen == [n.id for n in recorder.select_notifications(1, 10_000)]


def test_order_numbers_stay_unique_across_instances_reserving_blocks(database: str) -> None:
    replicas = [OrdersApplication(env=eventsourcing_env(database, pool_size=2)) for _ in range(2)]
    try:
        results = [replicas[i % 2].initiate(initiate_command(), OWNER) for i in range(120)]  # > 2 blocks each
    finally:
        for replica in replicas:
            replica.close()
    numbers = [r.value.number for r in results if isinstance(r, Accepted)]
    assert len(numbers) == 120 and len(set(numbers)) == 120
