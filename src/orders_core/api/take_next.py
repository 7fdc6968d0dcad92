"""`POST /orders/take-next` and the operators' profiles: an operator takes the most urgent order they work.

The queue is read from the MES view (earliest promised first, not on hold, of the materials the operator
works: `OperatorProfile.works`), through `Queue`, which the wiring provides; the write side decides.
Each candidate is tried with StartManufacturing in turn, so an order is taken exactly once whatever the
view says: a candidate another operator took first is refused (it was taken) and the next is tried.
Within one API process, concurrent callers skip the candidates another caller is trying at that moment
and those this process took in the last seconds (the view may still list them), so 20 operators pressing
"Take next" at once each go straight to an order of their own.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Protocol
from uuid import UUID

from litestar import Request, Response, Router, get, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import ServiceUnavailableException
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody, Parameter

from http_edge.position import POSITION
from orders_core.actors import Actor
from orders_core.api.orders import (
    ErrorAnswer,
    OrderResponse,
    accepted,
    provide_orders,
    refused,
    request_meta,
    send_error_answer,
)
from orders_core.api.schemas import OperatorProfileView, OrderView, ProfileRequest, WorkCentresRequest
from orders_core.application import OrdersApplication
from orders_core.commands import StartManufacturing
from orders_core.lifecycle import Role
from orders_core.operators import OperatorProfile, reading_refusal
from orders_core.order import Order
from orders_core.outcomes import Accepted, Refusal, Refused

PAGE = 20
"""Candidates read from the view at a time: as many as operators may press at once."""
PAGES = 5
"""Reads of the view (each leaving out the candidates refused before) before the view is called behind
rather than the queue empty."""
RECENT_SECONDS = 10.0
"""How long at most an order this process took is left out although the view may still list it: until
the view has applied the taking (its position), or this long."""


class Queue(Protocol):
    """The approved orders not on hold, earliest promised first: the ids of the first few."""

    def page(
        self, materials: tuple[str, ...] | None, exclude: frozenset[UUID], limit: int
    ) -> tuple[list[UUID], int]:
        """Ids of the first `limit` orders of `materials` (None: every material), `exclude` left out, and
        the view's position: the page reflects every event up to it."""
        ...


class Dispatcher:
    """Takes the next order for an operator; one per process."""

    def __init__(self, orders: OrdersApplication, queue: Queue) -> None:
        self.orders = orders
        self.queue = queue
        self._trying: set[UUID] = set()
        self._taken: dict[UUID, tuple[float, int]] = {}
        """Orders this process took: when, and the position of the taking."""

    async def take_next(self, actor: Actor, meta: dict[str, str]) -> Accepted[Order] | None:
        """The order `actor` took, the most urgent they may; None when nothing waits for them."""
        materials = await asyncio.to_thread(self.orders.works, actor.subject)
        if materials == ():
            return None  # they work no material the catalog has now
        passed: set[UUID] = set()  # candidates refused to this caller: taken elsewhere, held, moved on
        for _ in range(PAGES):
            # Left out in the view's query, not skipped after it: a burst of presses takes the first orders
            # faster than the view drops them, and re-reading them page after page cost a burst 3x the time
            # of taking orders by id (bench/take_next.py).
            exclude = frozenset(passed | self._trying | self._taken.keys())
            ids, seen = await asyncio.to_thread(self.queue.page, materials, exclude, PAGE)
            # Takings the view has applied no longer need leaving out: kept for 10 s, the list grew to
            # 1,400 ids at 140 takes/s, and sending it cost a burst more than the read itself.
            now = time.monotonic()
            self._taken = {
                i: (t, p) for i, (t, p) in self._taken.items() if p > seen and now - t < RECENT_SECONDS
            }
            if not ids:
                return None
            for order_id in ids:
                result = await self._try(order_id, actor, meta)
                if result is not None:
                    return result
                passed.add(order_id)
        raise ServiceUnavailableException("the queue's view is behind the orders: try again in a moment")

    async def _try(self, order_id: UUID, actor: Actor, meta: dict[str, str]) -> Accepted[Order] | None:
        if order_id in self._trying or order_id in self._taken:
            return None  # another caller of this process got to it since the page was read
        self._trying.add(order_id)  # the event loop runs one handler step at a time: no lock needed
        try:
            result = await self.orders.execute_async(order_id, StartManufacturing(), actor, meta)
        finally:
            self._trying.discard(order_id)
        if isinstance(result, Accepted):
            self._taken[order_id] = (time.monotonic(), result.position)
            return result
        if result.code is Refused.FORBIDDEN:  # not theirs to take at all: say so rather than try the rest
            raise refused(result)
        return None  # taken by someone else, held, or moved on since the view saw it


@post(
    "/take-next",
    status_code=200,
    summary="TakeNextOrder",
    operation_id="TakeNextOrder",
    responses={
        200: ResponseSpec(OrderView, description="The order taken, now the caller's"),
        204: ResponseSpec(None, description="No approved order the caller works waits"),
    },
)
async def take_next(actor: NamedDependency[Actor], request: Request[Any, Any, State]) -> OrderResponse:
    """Take the most urgent approved order the calling operator works (earliest promised first, not on
    hold, of the materials and work centres in their profile): 200 with the order, now theirs; 204 when
    none waits for them."""
    if actor.role is not Role.OPERATOR:
        raise refused(Refusal(Refused.FORBIDDEN, f"a {actor.role} may not take orders"))
    dispatcher: Dispatcher | None = request.app.state.get("dispatcher")
    if dispatcher is None:
        raise ServiceUnavailableException("this API has no view of the queue")
    result = await dispatcher.take_next(actor, request_meta(request))
    if result is None:
        return Response(None, status_code=204)  # type: ignore[arg-type]  # documented above
    return accepted(result, actor)


orders_next_router = Router(
    path="/orders",
    route_handlers=[take_next],
    tags=["orders"],
    exception_handlers={ErrorAnswer: send_error_answer},
)


OperatorId = Annotated[str, Parameter(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.@:+-]+$")]
"""ASCII word characters spelled out: JSON Schema's `\\w` is ASCII, Python's any letter (a fuzzer sent Å)."""


def _profile_view(
    orders: OrdersApplication, operator_id: str, profile: OperatorProfile | None
) -> OperatorProfileView:
    works = profile.works(orders.catalog().materials.values()) if profile else None
    return OperatorProfileView(
        operator_id=operator_id,
        materials=list(profile.materials) if profile else [],
        work_centres=list(profile.work_centres) if profile else [],
        works=None if works is None else list(works),
        version=profile.version if profile else 0,
    )


# Reading and declaring are two paths: Litestar 2.25 answers OPTIONS on a path of a GET and a PUT with
# `Allow: GET, OPTIONS` only, which a stock fuzzer (schemathesis, ST205) rightly calls a mismatch.
@get("/{operator_id:str}", sync_to_thread=True, operation_id="ReadOperatorProfile")
def read_profile(
    operator_id: FromPath[OperatorId], actor: NamedDependency[Actor], state: State
) -> OperatorProfileView:
    """What an operator works: the materials and work centres they declared, and the material codes these
    come to by today's catalog (`works`, null: every material). Staff read any, an operator their own."""
    refusal = reading_refusal(actor, operator_id)
    if refusal is not None:
        raise refused(refusal)
    orders = provide_orders(state)
    return _profile_view(orders, operator_id, orders.operator_profile(operator_id))


@put("/{operator_id:str}/materials", sync_to_thread=True, operation_id="DeclareOperatorMaterials")
def declare_materials(
    operator_id: FromPath[OperatorId],
    data: JSONBody[ProfileRequest],
    actor: NamedDependency[Actor],
    state: State,
) -> Response[OperatorProfileView]:
    """Declare the materials an operator works by code: the operator, or an admin. Their queue in the
    console and take-next offer only orders of these and of their work centres' materials (declaring
    neither: every material)."""
    orders = provide_orders(state)
    return _declared(orders, operator_id, orders.declare_materials(operator_id, data.materials, actor))


@put("/{operator_id:str}/work-centres", sync_to_thread=True, operation_id="DeclareOperatorWorkCentres")
def declare_work_centres(
    operator_id: FromPath[OperatorId],
    data: JSONBody[WorkCentresRequest],
    actor: NamedDependency[Actor],
    state: State,
) -> Response[OperatorProfileView]:
    """Declare the work centres an operator works (the catalog names each material's): the operator, or
    an admin. They then work every material made there, as the catalog says at the time."""
    orders = provide_orders(state)
    centres = data.work_centres
    return _declared(orders, operator_id, orders.declare_work_centres(operator_id, centres, actor))


def _declared(
    orders: OrdersApplication, operator_id: str, result: Accepted[OperatorProfile] | Refusal
) -> Response[OperatorProfileView]:
    if isinstance(result, Refusal):
        raise refused(result)
    view = _profile_view(orders, operator_id, result.value)
    return Response(view, headers={POSITION: str(result.position)})


operators_router = Router(
    path="/operators",
    route_handlers=[read_profile, declare_materials, declare_work_centres],
    tags=["operators"],
    exception_handlers={ErrorAnswer: send_error_answer},
)
