"""The application on a real PostgreSQL event store: durability, concurrency, idempotency."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg

from orders_core.application import OrdersApplication
from orders_core.commands import (
    ApproveManufacturing,
    AttachModel,
    RecordQuote,
    StartManufacturing,
    SubmitOrder,
)
from orders_core.order import Order
from orders_core.outcomes import Accepted, Refusal, Refused
from tests.orders import (
    OPERATOR,
    OTHER_OPERATOR,
    OWNER,
    PRICING,
    SELLER,
    accepted,
    initiate_command,
    model_file,
    quote_for,
)


def approved(app: OrdersApplication) -> Order:
    order = accepted(app.initiate(initiate_command(), OWNER))
    model = model_file()
    accepted(app.execute(order.id, AttachModel(model), OWNER))
    accepted(app.execute(order.id, SubmitOrder(), OWNER))
    accepted(app.execute(order.id, RecordQuote(quote_for(model.sha256)), PRICING))
    return accepted(app.execute(order.id, ApproveManufacturing(), SELLER))


def test_another_instance_sees_every_event(replicas: tuple[OrdersApplication, OrdersApplication]) -> None:
    first, second = replicas
    order = approved(first)
    seen = second.order(order.id)
    assert seen is not None and seen.status == order.status and seen.version == 5


def test_positions_grow_with_every_append(replicas: tuple[OrdersApplication, OrdersApplication]) -> None:
    first, _ = replicas
    one = first.initiate(initiate_command(), OWNER)
    two = first.initiate(initiate_command(), OWNER)
    assert isinstance(one, Accepted) and isinstance(two, Accepted)
    assert two.position > one.position == first.position() - 1


def test_order_numbers_are_unique(replicas: tuple[OrdersApplication, OrdersApplication]) -> None:
    first, second = replicas
    with ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(lambda i: (first, second)[i % 2].initiate(initiate_command(), OWNER), range(40))
        )
    numbers = [accepted(r).number for r in results]
    assert len(set(numbers)) == 40 and all(n.startswith("A-") for n in numbers)


def test_two_replicas_taking_at_once_have_one_winner(
    replicas: tuple[OrdersApplication, OrdersApplication],
) -> None:
    first, second = replicas
    order = approved(first)
    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(first.execute, order.id, StartManufacturing(), OPERATOR)
        b = pool.submit(second.execute, order.id, StartManufacturing(), OTHER_OPERATOR)
        outcomes = [a.result(), b.result()]
    winners = [o for o in outcomes if isinstance(o, Accepted)]
    losers = [o for o in outcomes if isinstance(o, Refusal)]
    assert len(winners) == 1 and len(losers) == 1
    assert losers[0].code is Refused.NOT_ALLOWED
    assert losers[0].details["taken_by"] == winners[0].value.operator_id
    assert [type(e).__name__ for e in first.history(order.id)].count("ManufacturingStarted") == 1


def test_a_refused_command_appends_nothing(replicas: tuple[OrdersApplication, OrdersApplication]) -> None:
    first, _ = replicas
    order = accepted(first.initiate(initiate_command(), OWNER))
    before = first.position()
    refusal = first.execute(order.id, ApproveManufacturing(), SELLER)
    assert isinstance(refusal, Refusal)
    assert first.position() == before


def test_idempotency_keys_hold_across_replicas(replicas: tuple[OrdersApplication, OrdersApplication]) -> None:
    first, second = replicas
    command = initiate_command(idempotency_key="k-1")
    one = first.initiate(command, OWNER)
    two = second.initiate(command, OWNER)
    assert isinstance(one, Accepted) and isinstance(two, Accepted) and two.replayed
    assert one.value.id == two.value.id


def test_events_are_stored_in_schema_crm(database: str, replicas: tuple[OrdersApplication, ...]) -> None:
    replicas[0].initiate(initiate_command(), OWNER)
    with psycopg.connect(database) as conn:
        row = conn.execute("SELECT count(*) FROM crm.orders_events").fetchone()
    assert row is not None and row[0] >= 2  # the catalog and the order
