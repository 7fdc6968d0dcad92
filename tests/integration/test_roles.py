"""Database roles per part (migrations/0006_roles.sql) on a real PostgreSQL: every part's role is refused the
statements it has no business running, and can still do its own work, before and after a replay."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, cast

import psycopg
import pytest
from psycopg import errors

from backbone.database import database_dsn, eventsourcing_env, part_dsn, role_of, with_role
from backbone.migrate import migrate
from backbone.settings import DATABASE_PARTS, Settings
from backbone.wiring import projection_runner, runner_for
from orders_core.application import OrdersApplication
from orders_core.blobs import PostgresBlobStore
from orders_core.outcomes import Accepted
from orders_core.relay import BlockingPublisher, Outgoing, Relay
from projectors.replay import replay
from tests.orders import OWNER, initiate_command

EVENTS = "crm.orders_events"
SHA = "ab" * 32

FORBIDDEN: dict[str, list[str]] = {
    "read": [
        "INSERT INTO mes.tracking VALUES ('intruder', 1)",
        "UPDATE mes.orders SET status = 'CLOSED'",
        "DELETE FROM mes.orders",
        "DELETE FROM mes.status_stays",
        "UPDATE mes.tracking SET notification_id = 0",
        "TRUNCATE mes.status_stays",
        "INSERT INTO shop.tracking VALUES ('intruder', 1)",
        "UPDATE shop.orders SET status = 'CLOSED'",
        "DELETE FROM shop.orders",
        "DELETE FROM shop.materials",
        "UPDATE shop.catalog SET currency = 'USD'",
        f"SELECT * FROM {EVENTS}",
        "SELECT nextval('crm.order_numbers')",
        "SELECT * FROM relay.tracking",
        "SELECT sha256 FROM blobs.models",
        "CREATE TABLE mes.intruder (id int)",
        "DROP TABLE shop.orders",
        "SELECT backbone.grant_privileges()",
        "SELECT * FROM webhooks.messages",
        f"INSERT INTO blobs.previews (sha256, size_bytes, content) VALUES ('{'cd' * 32}', 1, 'x')",
        "DELETE FROM blobs.previews",
        "SELECT content FROM blobs.models",
    ],
    "projector": [
        f"INSERT INTO {EVENTS} (originator_id, originator_version, topic, state) "
        "VALUES (gen_random_uuid(), 1, 'x', '')",
        f"UPDATE {EVENTS} SET topic = 'x'",
        f"DELETE FROM {EVENTS}",
        f"TRUNCATE {EVENTS}",
        f"LOCK TABLE {EVENTS} IN EXCLUSIVE MODE",
        "SELECT crm.es_insert_events_locked_uuid(ARRAY[]::crm.stored_event_uuid[])",
        "SELECT nextval('crm.order_numbers')",
        "SELECT * FROM relay.tracking",
        "UPDATE relay.tracking SET notification_id = 0",
        "SELECT content FROM blobs.models",
        "DROP TABLE mes.orders",
        "ALTER TABLE shop.orders ADD COLUMN intruder int",
        "CREATE TABLE mes.intruder (id int)",
    ],
    "relay": [
        f"INSERT INTO {EVENTS} (originator_id, originator_version, topic, state) "
        "VALUES (gen_random_uuid(), 1, 'x', '')",
        f"UPDATE {EVENTS} SET topic = 'x'",
        f"DELETE FROM {EVENTS}",
        "SELECT crm.es_insert_events_locked_uuid(ARRAY[]::crm.stored_event_uuid[])",
        "SELECT * FROM mes.orders",
        "SELECT * FROM shop.orders",
        "UPDATE mes.tracking SET notification_id = 0",
        "SELECT content FROM blobs.models",
        "DELETE FROM relay.tracking",
    ],
    "webhooks": [
        f"INSERT INTO {EVENTS} (originator_id, originator_version, topic, state) "
        "VALUES (gen_random_uuid(), 1, 'x', '')",
        f"UPDATE {EVENTS} SET topic = 'x'",
        "SELECT crm.es_insert_events_locked_uuid(ARRAY[]::crm.stored_event_uuid[])",
        "SELECT * FROM mes.orders",
        "SELECT * FROM shop.orders",
        "SELECT * FROM relay.tracking",
        "SELECT content FROM blobs.models",
        "DROP TABLE webhooks.messages",
        "CREATE TABLE webhooks.intruder (id int)",
    ],
    "pricing": [
        f"SELECT * FROM {EVENTS}",
        "SELECT * FROM mes.orders",
        "SELECT * FROM shop.orders",
        "SELECT * FROM shop.materials",
        "SELECT * FROM relay.tracking",
        "SELECT * FROM webhooks.messages",
        f"INSERT INTO blobs.models (sha256, size_bytes, content) VALUES ('{'cd' * 32}', 1, 'x')",
        "UPDATE blobs.models SET content = 'x'",
        "DELETE FROM blobs.models",
        "UPDATE blobs.previews SET content = 'x'",
        "DELETE FROM blobs.previews",
    ],
    "crm": [
        "SELECT * FROM mes.orders",
        "SELECT * FROM shop.orders",
        "UPDATE mes.tracking SET notification_id = 0",
        "INSERT INTO shop.orders SELECT * FROM shop.orders",
        "SELECT * FROM relay.tracking",
        f"DELETE FROM {EVENTS}",
        f"TRUNCATE {EVENTS}",
        "SELECT content FROM blobs.models",
        "DELETE FROM blobs.models",
        "DELETE FROM webhooks.messages",
        "UPDATE webhooks.messages SET body = 'x'",
        "INSERT INTO webhooks.orders VALUES (gen_random_uuid(), 'intruder')",
        "DELETE FROM webhooks.attempts",
        "UPDATE webhooks.tracking SET notification_id = 0",
        "SELECT backbone.grant_privileges()",
    ],
}
"""What each part's role must be refused: another part's data, writes it has no business making, DDL."""

refused: list[tuple[str, str]] = []
"""(part, statement) of every forbidden statement tried and refused in this module."""


@pytest.fixture(scope="module", autouse=True)
def report_refusals(request: pytest.FixtureRequest) -> Iterator[None]:
    """Say, after the module, how many forbidden statements were tried and refused."""
    yield
    line = f"\ndatabase roles: {len(refused)} forbidden statements tried and refused"
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():  # shown without -s, like pytest's own summary
        print(line)


def as_part(database: str, part: str) -> str:
    """The DSN `part` connects with when it has no DATABASE_URL_<PART> of its own."""
    return part_dsn(Settings.from_env({"DATABASE_URL": database, "JWT_SECRET": "x"}), database, part)


def assert_refused(dsn: str, part: str, statements: Sequence[str]) -> None:
    with psycopg.connect(dsn) as conn:
        for statement in statements:
            with pytest.raises(errors.InsufficientPrivilege), conn.transaction():
                conn.execute(statement)
            refused.append((part, statement))


def rows(dsn: str, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


def place_orders(database: str, count: int) -> None:
    """Orders placed through the command API's application, connected as the crm role."""
    app = OrdersApplication(env=eventsourcing_env(as_part(database, "crm"), pool_size=2))
    try:
        for _ in range(count):
            assert isinstance(app.initiate(initiate_command(), OWNER), Accepted)
    finally:
        app.close()


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_each_role_is_refused_what_is_not_its_business(database: str, part: str) -> None:
    place_orders(database, 1)
    assert_refused(as_part(database, part), part, FORBIDDEN[part])


def test_every_part_connects_as_its_role(database: str) -> None:
    for part in DATABASE_PARTS:
        assert rows(as_part(database, part), "SELECT current_user")[0][0] == role_of(part)
    # The library's own pools get the role too (the DSN's options travel through eventsourcing_env).
    app = OrdersApplication(env=eventsourcing_env(as_part(database, "crm"), pool_size=1))
    try:
        with app.recorder.datastore.cursor() as cursor:  # type: ignore[attr-defined]
            cursor.execute("SELECT current_user AS name")
            assert cursor.fetchone()["name"] == "backbone_crm"
    finally:
        app.close()


def test_a_part_of_its_own_dsn_uses_it_as_given(database: str) -> None:
    own = with_role(database, "backbone_read")
    settings = Settings.from_env({"DATABASE_URL": database, "DATABASE_URL_READ": own, "JWT_SECRET": "x"})
    assert settings.part_database_urls == {"read": own}
    assert part_dsn(settings, database_dsn(settings), "read") == own
    assert "backbone_projector" in part_dsn(settings, database_dsn(settings), "projector")


def test_the_crm_role_appends_numbers_and_stores_models(database: str, tmp_path: Any) -> None:
    place_orders(database, 3)
    assert rows(database, f"SELECT count(*) FROM {EVENTS}")[0][0] >= 3
    blobs = PostgresBlobStore(as_part(database, "crm"), tmp_path)
    pending = blobs.begin(1000)
    pending.write(b"solid cube")
    pending.finish()
    sha = pending.commit()
    # The pricing role reads what the command API stored, and nothing else.
    pricing = PostgresBlobStore(as_part(database, "pricing"), tmp_path)
    assert pricing.read(sha) == b"solid cube"
    # It stores previews beside the models, which the read API serves (and sees no model).
    preview = pricing.put_preview(b"glTF preview")
    assert PostgresBlobStore(as_part(database, "read"), tmp_path).read_preview(preview) == b"glTF preview"


def test_the_projector_writes_views_the_read_role_reads(database: str) -> None:
    place_orders(database, 4)
    projector, reads = as_part(database, "projector"), as_part(database, "read")
    for name in ("mes", "shop"):
        position = projection_runner(name, projector).catch_up()
        assert position > 0
        assert rows(reads, f"SELECT count(*) FROM {name}.orders")[0][0] == 4
        assert (
            rows(reads, f"SELECT notification_id FROM {name}.tracking WHERE application_name = 'orders'")[0][
                0
            ]
            == position
        )


def test_the_relay_reads_the_store_and_tracks_in_its_schema(database: str) -> None:
    place_orders(database, 2)
    relay_dsn = as_part(database, "relay")
    published: list[Outgoing] = []
    orders = OrdersApplication(env=eventsourcing_env(relay_dsn, pool_size=1))
    try:
        publish = cast(BlockingPublisher, published.extend)
        position = runner_for(Relay(orders, publish), relay_dsn, "relay").catch_up()
    finally:
        orders.close()
    assert len(published) == 2
    tracked = rows(relay_dsn, "SELECT notification_id FROM relay.tracking WHERE application_name = 'orders'")
    assert tracked[0][0] == position


@pytest.mark.parametrize("name", ["mes", "shop"])
def test_a_replay_swaps_in_tables_with_the_same_grants(database: str, name: str) -> None:
    place_orders(database, 3)
    projector, reads = as_part(database, "projector"), as_part(database, "read")
    projection_runner(name, projector).catch_up()
    # As the CLI runs it: as the owner, who creates and renames the schemas.
    replay(database, name, lambda schema: projection_runner(name, database, schema), lambda n, p: None)
    assert rows(reads, f"SELECT count(*) FROM {name}.orders")[0][0] == 3
    place_orders(database, 2)
    projection_runner(name, projector).catch_up()
    assert rows(reads, f"SELECT count(*) FROM {name}.orders")[0][0] == 5
    # Still refused after the swap, and tables a later migration adds get the default privileges.
    assert_refused(
        reads, "read", [f"DELETE FROM {name}.orders", f"UPDATE {name}.tracking SET notification_id = 0"]
    )
    with psycopg.connect(database) as conn:
        conn.execute(f"CREATE TABLE {name}.added_later (id int)")
    with psycopg.connect(projector) as conn:
        conn.execute(f"INSERT INTO {name}.added_later VALUES (1)")
    assert rows(reads, f"SELECT id FROM {name}.added_later") == [(1,)]
    assert_refused(reads, "read", [f"DELETE FROM {name}.added_later"])


def test_migrating_again_keeps_roles_and_grants(database: str) -> None:
    assert migrate(database) == []
    assert_refused(as_part(database, "read"), "read", [f"SELECT * FROM {EVENTS}"])
    place_orders(database, 1)
    projection_runner("mes", as_part(database, "projector")).catch_up()
