"""The event store proved by the eventsourcing library's own contract tests, on real PostgreSQL.

eventsourcing ships reusable base test cases (`eventsourcing.tests.persistence`) that every recorder of
its own passes. Here they run against this project's recorders: the application recorder that appends
under a table lock in one round trip (`LockingPostgresApplicationRecorder`), and the tracking recorder the
projections write their position with (`ViewTrackingRecorder`). Each test gets tables of its own in a
fresh schema, as the base cases expect an empty store.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.tests.persistence import (
    ApplicationRecorderTestCase,
    NonInterleavingNotificationIDsBaseCase,
    TrackingRecorderTestCase,
)
from eventsourcing.utils import Environment

from backbone.database import PartPostgresFactory, eventsourcing_env
from orders_core.event_store import LockingPostgresApplicationRecorder
from projectors.runner import ViewTrackingRecorder
from tests.conftest import PostgresServer


class FreshSchemas:
    """Makes a datastore on a schema of its own for each recorder, and closes them all afterwards."""

    dsn: str
    datastores: list[PostgresDatastore]

    @pytest.fixture(autouse=True)
    def _fresh_schemas(self, postgres: PostgresServer) -> Iterator[None]:
        self.dsn = postgres.url()
        self.datastores = []
        yield
        for datastore in self.datastores:
            datastore.close()

    def factory(self) -> PartPostgresFactory:
        schema = f"contract_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        env = {**eventsourcing_env(self.dsn, pool_size=12, create_table=True), "POSTGRES_SCHEMA": schema}
        factory = PartPostgresFactory(Environment("contract", env))
        self.datastores.append(factory.datastore)
        return factory


class TestLockingApplicationRecorder(FreshSchemas, ApplicationRecorderTestCase[Any]):
    def create_recorder(self) -> LockingPostgresApplicationRecorder:
        recorder = self.factory().application_recorder()
        assert isinstance(recorder, LockingPostgresApplicationRecorder)
        return recorder


class TestLockingRecorderNeverInterleavesNotificationIds(
    FreshSchemas, NonInterleavingNotificationIDsBaseCase
):
    def create_recorder(self) -> LockingPostgresApplicationRecorder:
        recorder = self.factory().application_recorder()
        assert isinstance(recorder, LockingPostgresApplicationRecorder)
        return recorder


class TestViewTrackingRecorder(FreshSchemas, TrackingRecorderTestCase):
    def create_recorder(self) -> ViewTrackingRecorder:
        recorder = ViewTrackingRecorder(self.factory().datastore, tracking_table_name="tracking")
        recorder.create_table()
        return recorder
