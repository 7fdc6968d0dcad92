"""Every projection (mes, shop, relay) under any batch boundaries: a differential test on real PostgreSQL.

Hypothesis generates a stream of commands over several orders and the catalog (every command of the
lifecycle by every kind of actor, refused ones included; repeated changes of the same catalog item), which
`OrdersApplication` appends to a fresh event store. The log is then applied to each projection under many
partitions into batches (one event per batch, everything in one batch, random cut points), one of them with
a batch that fails after writing its rows (rolled back) and is retried. Every partition must give the same
view as the replay (`load`, or one batch where a projection has no loader) and as the pure fold of the
events; the relay must publish every order event once (by message id), each order's in version order.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import Notification
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backbone.database import eventsourcing_env
from backbone.wiring import projection_runner, runner_for
from orders_core.application import OrdersApplication
from orders_core.contracts import LabourRate, LabourUnit, Material, Product, message_id_for, read_stored_event
from orders_core.lifecycle import BY_COMMAND
from orders_core.order import Order
from orders_core.outcomes import Accepted
from orders_core.relay import Outgoing, Relay
from projectors.order_rows import ORDER_COLUMNS, fold_order
from projectors.replay import prepare_schema
from projectors.runner import ProjectorRunner
from tests.conftest import PostgresServer
from tests.orders import EVERYONE, OWNER, PARTNER, SELLER, initiate_command, valid_command

ORDERS = 3
COMMANDS = sorted(set(BY_COMMAND) - {"InitiateOrder"})
"""Every command of the lifecycle table, by name."""


@pytest.fixture(scope="module")
def template(postgres: PostgresServer) -> str:
    """A migrated database that each example copies (CREATE DATABASE ... TEMPLATE: a file copy)."""
    url = postgres.create_database("partitions_template")
    from backbone.migrate import migrate

    migrate(url)
    return dbname(url)


def dbname(url: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(url)["dbname"])


def fresh_database(postgres: PostgresServer, template: str) -> str:
    name = f"partitions_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return postgres.url(name)


def drop_database(postgres: PostgresServer, url: str) -> None:
    name = dbname(url)
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


# --- the commands ---------------------------------------------------------------------------------------

order_steps = st.tuples(st.just("order"), st.integers(0, ORDERS - 1), st.integers(0, 2**16))
"""An order and a choice: most choices pick a command someone may give now (so orders move through the
lifecycle), the others any command by anyone (mostly refused)."""
catalog_steps = st.one_of(
    st.tuples(st.just("material"), st.sampled_from(["AG925", "AU750"]), st.integers(1, 9000)),
    st.tuples(st.just("labour"), st.sampled_from(["POLISH", "CASTING"]), st.integers(1, 9000)),
    st.tuples(st.just("product"), st.sampled_from(["BAND-1", "BAND-2"]), st.integers(1, 90000)),
    st.tuples(st.just("remove"), st.sampled_from(["BAND-1", "BAND-2"]), st.just(0)),
)
steps = st.lists(
    st.integers(0, 9).flatmap(lambda kind: order_steps if kind < 7 else catalog_steps),
    min_size=15,
    max_size=60,
)


def run_commands(app: OrdersApplication, commands: Sequence[tuple[Any, ...]]) -> None:
    """Create the orders, then run every command as it comes, refusals included."""
    orders: list[Order] = []
    for owner in (OWNER, PARTNER, OWNER)[:ORDERS]:
        created = app.initiate(initiate_command(owner), owner)
        assert isinstance(created, Accepted)
        orders.append(created.value)
    for step in commands:
        if step[0] == "order":
            _, index, choice = step
            current = app.order(orders[index].id)
            assert current is not None
            allowed = [(name, actor) for actor in EVERYONE for name in sorted(current.allowed_for(actor))]
            if choice % 4 and allowed:
                name, actor = allowed[choice % len(allowed)]
            else:
                name, actor = COMMANDS[choice % len(COMMANDS)], EVERYONE[(choice >> 4) % len(EVERYONE)]
            done = app.execute(current.id, valid_command(current, name), actor)
            if isinstance(done, Accepted):
                orders[index] = done.value
        else:
            app.change_catalog(catalog_change(step))


def catalog_change(step: tuple[Any, ...]) -> Any:
    kind, key, value = step
    if kind == "material":
        material = Material(code=key, name=f"{key} alloy", density_g_cm3=10.4, price_per_gram_minor=value)
        return lambda c: c.set_material(material, SELLER)
    if kind == "labour":
        rate = LabourRate(code=key, name=key.title(), unit=LabourUnit.PER_PIECE, amount_minor=value)
        return lambda c: c.set_labour_rate(rate, SELLER)
    if kind == "product":
        product = Product(sku=key, title="Band", material_code="AG925", price_minor=value)
        return lambda c: c.set_product(product, SELLER)
    return lambda c: c.remove_product(key, SELLER)


# --- partitions -------------------------------------------------------------------------------------------


def cut(notifications: Sequence[Notification], cuts: Sequence[int]) -> list[list[Notification]]:
    """`notifications` split before each index in `cuts`."""
    bounds = [0, *sorted(set(cuts)), len(notifications)]
    return [list(notifications[a:b]) for a, b in itertools.pairwise(bounds) if b > a]


class FailOnce:
    """Wraps a projection: the `at`-th batch it applies writes its rows, then fails as a lost connection
    would (a transient fault), so the runner's transaction rolls back and the batch is applied again."""

    def __init__(self, inner: Any, at: int) -> None:
        self.inner, self.name, self.at, self.calls = inner, inner.name, at, 0

    def apply(self, cursor: Any, schema: str, changes: Sequence[Any]) -> None:
        self.inner.apply(cursor, schema, changes)
        self.calls += 1
        if self.calls == self.at:
            raise psycopg.OperationalError("connection lost after the batch's rows were written")

    def forget(self) -> None:
        self.inner.forget()


def apply_partition(runner: ProjectorRunner, batches: list[list[Notification]]) -> None:
    """Apply each batch; one that fails transiently is applied again, as the runner's loop would."""
    for batch in batches:
        for _ in range(3):
            try:
                runner.apply_batch(batch)
                break
            except Exception as e:
                assert "connection lost" in str(e), e
        else:
            pytest.fail("a batch failed three times")
    assert runner.position() == batches[-1][-1].id


# --- what the views hold ------------------------------------------------------------------------------------

VIEW_TABLES = {
    "mes": {
        "orders": "order_id",
        "status_stays": "order_id, entered_at, status",
        "status_counts": "status",
        "manufacturing_estimates": "material_code",
        "manufacturing_completions": "order_id",
        "manufacturing_completion_counts": "material_code",
    },
    "shop": {
        "orders": "order_id",
        "catalog": "id",
        "materials": "code",
        "labour_rates": "code",
        "products": "sku",
    },
}


def snapshot(url: str, name: str, schema: str) -> dict[str, list[Any]]:
    """Every row of every view table of projection `name`, as held in `schema`."""
    with psycopg.connect(url) as conn:
        return {
            table: [
                r[0] for r in conn.execute(f"SELECT to_jsonb(t) FROM {schema}.{table} AS t ORDER BY {order}")
            ]
            for table, order in VIEW_TABLES[name].items()
        }


def normal(value: Any) -> Any:
    """ISO times as datetimes, recursively: PostgreSQL and Python print the same instant differently."""
    if isinstance(value, dict):
        return {k: normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normal(v) for v in value]
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and "T" in value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def folded(notifications: Sequence[Notification]) -> dict[str, dict[str, Any]]:
    """The pure fold of the order events: each order's row."""
    rows: dict[str, dict[str, Any]] = {}
    for n in notifications:
        event = read_stored_event(n.topic, n.state)
        if event is None or event.aggregate != "order":
            continue
        order_id = str(n.originator_id)
        before = rows.get(order_id)
        if before is not None:
            before = {**before, "status_times": dict(before["status_times"])}
        rows[order_id] = fold_order(before, event, order_id, n.originator_version, n.id)
    return rows


def assert_mes_is_the_fold(view: dict[str, list[Any]], notifications: Sequence[Notification]) -> None:
    rows = folded(notifications)
    shown = {r["order_id"]: r for r in view["orders"]}
    assert set(shown) == set(rows)
    for order_id, row in rows.items():
        assert normal({c: shown[order_id][c] for c in ORDER_COLUMNS}) == normal(row), order_id
    counts = Counter(row["status"] for row in rows.values())
    assert {r["status"]: r["orders"] for r in view["status_counts"]} == dict(counts)
    stays = defaultdict(list)
    for stay in view["status_stays"]:
        stays[stay["order_id"]].append(stay)
    for order_id, row in rows.items():
        mine = sorted(stays[order_id], key=lambda s: normal(s["entered_at"]))
        assert [s["status"] for s in mine][-1] == row["status"]
        assert mine[-1]["left_at"] is None
        assert all(normal(a["left_at"]) == normal(b["entered_at"]) for a, b in itertools.pairwise(mine))


def assert_shop_is_the_fold(view: dict[str, list[Any]], app: OrdersApplication, orders: set[str]) -> None:
    assert {r["order_id"] for r in view["orders"]} == orders
    for row in view["orders"]:
        order = app.order(uuid.UUID(row["order_id"]))
        assert order is not None
        assert (row["status"], row["version"]) == (order.status.value, order.version)
    catalog = app.catalog()
    assert {m["code"]: m["price_per_gram_minor"] for m in view["materials"]} == {
        code: m.price_per_gram_minor for code, m in catalog.materials.items()
    }
    assert {r["code"]: r["amount_minor"] for r in view["labour_rates"]} == {
        code: r.amount_minor for code, r in catalog.labour_rates.items()
    }
    assert {p["sku"]: p["price_minor"] for p in view["products"]} == {
        sku: p.price_minor for sku, p in catalog.products.items()
    }
    assert view["catalog"][0]["version"] == catalog.version


# --- the test ---------------------------------------------------------------------------------------------


@contextmanager
def closing(runner: ProjectorRunner) -> Iterator[ProjectorRunner]:
    try:
        yield runner
    finally:
        runner.close()


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(commands=steps, data=st.data())
def test_every_partition_of_the_log_gives_the_view_of_the_replay_and_of_the_fold(
    postgres: PostgresServer, template: str, commands: Any, data: st.DataObject
) -> None:
    url = fresh_database(postgres, template)
    app = OrdersApplication(env=eventsourcing_env(url, pool_size=2))
    try:
        run_commands(app, commands)
        notifications = app.recorder.select_notifications(start=0, limit=100_000, inclusive_of_start=False)
        n = len(notifications)
        random_cuts = data.draw(st.lists(st.integers(1, max(n - 1, 1)), max_size=n // 2), label="cuts")
        failing_batch = data.draw(st.integers(1, len(cut(notifications, random_cuts))), label="failing batch")
        partitions = {
            "one event per batch": (cut(notifications, range(1, n)), None),
            "one batch": ([list(notifications)], None),
            "random cuts, one batch rolled back": (cut(notifications, random_cuts), failing_batch),
        }
        orders = {str(n.originator_id) for n in notifications if "order:Order" in n.topic}
        for name in ("mes", "shop"):
            replayed = replayed_view(url, name)
            for label, (batches, failing) in partitions.items():
                schema = prepare_schema(url, name)
                with closing(projection_runner(name, url, schema)) as runner:
                    if failing is not None:
                        runner.projection = FailOnce(runner.projection, failing)
                    apply_partition(runner, batches)
                view = snapshot(url, name, schema)
                assert view == replayed, f"{name}, {label}: the view differs from the replay"
            if name == "mes":
                assert_mes_is_the_fold(replayed, notifications)
            else:
                assert_shop_is_the_fold(replayed, app, orders)
        for label, (batches, failing) in partitions.items():
            published = relayed(app, url, batches, failing)
            assert_relayed_once_in_order(published, notifications, label)
    finally:
        app.close()
        drop_database(postgres, url)


def replayed_view(url: str, name: str) -> dict[str, list[Any]]:
    """The view as a replay builds it: the loader where the projection has one, else one catch-up."""
    schema = prepare_schema(url, name)
    with closing(projection_runner(name, url, schema, batch_size=100_000)) as runner:
        if hasattr(runner.projection, "loader"):
            runner.load()
        else:
            runner.catch_up()
    return snapshot(url, name, schema)


def relayed(
    app: OrdersApplication, url: str, batches: list[list[Notification]], failing: int | None
) -> list[Outgoing]:
    """What the relay publishes for the log cut into `batches` (a rolled-back batch publishes twice)."""
    published: list[Outgoing] = []
    relay = Relay(app, published.extend)  # type: ignore[arg-type]
    schema = prepare_schema(url, "relay")
    with closing(runner_for(relay, url, schema)) as runner:
        if failing is not None:
            runner.projection = FailOnce(relay, failing)
        apply_partition(runner, batches)
    return published


def assert_relayed_once_in_order(
    published: list[Outgoing], notifications: Sequence[Notification], label: str
) -> None:
    expected = [
        message_id_for(str(n.originator_id), n.originator_version)
        for n in notifications
        if "order:Order" in n.topic
    ]
    bodies: dict[str, bytes] = {}
    for message in published:
        assert bodies.setdefault(message.message_id, message.body) == message.body, label
    first_seen = list(dict.fromkeys(m.message_id for m in published))
    assert sorted(first_seen) == sorted(expected), label
    by_order: dict[str, list[str]] = defaultdict(list)
    for message_id in first_seen:
        by_order[message_id.rsplit(":", 1)[0]].append(message_id)
    for ids in by_order.values():
        assert ids == sorted(ids, key=lambda i: int(i.rsplit(":v", 1)[1])), label
