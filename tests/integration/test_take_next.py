"""Take-next on a real PostgreSQL: under 20 concurrent operators on two API processes every order is taken
exactly once, by the one who got it, earliest promised first, held orders and other materials left alone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date, timedelta

import pytest

from backbone.database import eventsourcing_env
from backbone.wiring import projection_runner, read_pool
from orders_core.actors import Actor
from orders_core.api.take_next import Dispatcher
from orders_core.application import OrdersApplication
from orders_core.commands import HoldOrder
from orders_core.lifecycle import Role
from orders_core.order import Order
from orders_core.outcomes import Accepted
from read_models.mes import ApprovedQueue
from tests.orders import OWNER, PRICING, SELLER, initiate_command, valid_command


@pytest.fixture
def app(database: str) -> Iterator[OrdersApplication]:
    application = OrdersApplication(env=eventsourcing_env(database, pool_size=12))
    yield application
    application.close()


def approved(app: OrdersApplication, material: str, promised: date) -> Order:
    result = app.initiate(initiate_command(material_code=material, promised_date=promised), OWNER)
    assert isinstance(result, Accepted)
    order = result.value
    for name, actor in (
        ("AttachModel", OWNER),
        ("SubmitOrder", OWNER),
        ("RecordQuote", PRICING),
        ("ApproveManufacturing", SELLER),
    ):
        done = app.execute(order.id, valid_command(order, name), actor)
        assert isinstance(done, Accepted), done
        order = done.value
    return order


def operator(i: int) -> Actor:
    return Actor(Role.OPERATOR, f"op-{i:02d}")


def test_twenty_operators_at_once_take_every_order_exactly_once(
    app: OrdersApplication, database: str
) -> None:
    today = date.today()
    orders = [approved(app, "AU750", today + timedelta(days=3 + i % 7)) for i in range(15)]
    held = orders[4]
    assert isinstance(app.execute(held.id, HoldOrder("awaiting material"), SELLER), Accepted)
    projection_runner("mes", database).catch_up()
    pools = [read_pool(database, size=2) for _ in range(2)]
    dispatchers = [Dispatcher(app, ApprovedQueue(pool)) for pool in pools]  # two API processes

    async def rush() -> list[Accepted[Order] | None]:
        return await asyncio.gather(*(dispatchers[i % 2].take_next(operator(i), {}) for i in range(20)))

    try:
        results = asyncio.run(rush())
    finally:
        for pool in pools:
            pool.close()
    got = {operator(i).subject: r.value.id for i, r in enumerate(results) if r is not None}
    assert len(got) == 14 and len(set(got.values())) == 14, got  # every order but the held one, once each
    assert set(got.values()) == {o.id for o in orders} - {held.id}
    for subject, order_id in got.items():
        stored = app.order(order_id)
        assert stored is not None and stored.operator_id == subject
        assert [type(e).__name__ for e in app.history(order_id)].count("ManufacturingStarted") == 1
    assert app.order(held.id).status.value == "MANUFACTURING_APPROVED"  # type: ignore[union-attr]


def test_an_operator_takes_the_earliest_promised_of_the_materials_they_declared(
    app: OrdersApplication, database: str
) -> None:
    today = date.today()
    late_gold = approved(app, "AU750", today + timedelta(days=2))
    silver = [approved(app, "AG925", today + timedelta(days=d)) for d in (9, 4, 6)]
    olga = operator(1)
    assert isinstance(app.declare_materials(olga.subject, ["AG925"], olga), Accepted)
    projection_runner("mes", database).catch_up()
    pool = read_pool(database, size=2)
    dispatcher = Dispatcher(app, ApprovedQueue(pool))
    try:
        taken = [asyncio.run(dispatcher.take_next(olga, {})) for _ in range(4)]
        platinum = operator(2)
        assert isinstance(app.declare_materials(platinum.subject, ["PT950"], platinum), Accepted)
        nothing = asyncio.run(dispatcher.take_next(platinum, {}))
        anyone = asyncio.run(dispatcher.take_next(operator(3), {}))  # no profile: every material
    finally:
        pool.close()
    ids = [t.value.id if t else None for t in taken]
    assert ids == [silver[1].id, silver[2].id, silver[0].id, None]  # 4, 6, 9 days; then none of hers
    assert nothing is None
    assert anyone is not None and anyone.value.id == late_gold.id
