"""Order endpoints: create, attach a model, one POST per lifecycle command, read, history."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import anyio.to_thread
from litestar import Request, Response, Router, get, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import ClientException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Link, OpenAPIResponse, Operation
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from opentelemetry import propagate

from http_edge.errors import error_body
from http_edge.position import POSITION, documented_position
from orders_core.actors import Actor
from orders_core.api.errors import refusal_response
from orders_core.api.schemas import (
    CancelRequest,
    Channel,
    HistoryEntry,
    HoldRequest,
    NewOrder,
    OrderView,
    ShipRequest,
    history_entry,
    order_view,
)
from orders_core.application import OrdersApplication
from orders_core.blobs import BlobStore, TooLarge
from orders_core.commands import (
    ORDER_COMMANDS,
    AttachModel,
    CancelOrder,
    Command,
    HoldOrder,
    InitiateOrder,
    ShipOrder,
)
from orders_core.contracts import ModelFile
from orders_core.lifecycle import INITIATE, TRANSITIONS, Role, Transition
from orders_core.model_files import Unacceptable, claimed_format, identify, safe_filename
from orders_core.order import Order
from orders_core.outcomes import Accepted, Refusal, Refused

CORRELATION = "X-Correlation-ID"

OrderResponse = Response[OrderView]
IDEMPOTENCY_KEY_HELP = (
    "Up to 200 characters, chosen by the caller, unique per order it means to create. Kept for the"
    " idempotency window (IDEMPOTENCY_WINDOW_HOURS, 24 hours by default; the API description gives this"
    " deployment's):"
    " a retry with the same key and body within it returns the first order with 200, the same key with"
    " another body is a 422; once the first order is older than the window, the key starts a new order."
)


def request_meta(request: Request[Any, Any, Any]) -> dict[str, str]:
    """What a command's events remember of the request that caused them."""
    given = request.headers.get(CORRELATION, "")
    correlation = given if 0 < len(given) <= 128 and given.isprintable() else uuid.uuid4().hex
    meta = {"correlation_id": correlation}
    propagate.inject(meta)  # the request's span: the relay, the worker and the results consumer continue it
    return meta


class ErrorAnswer(Exception):
    """An error answer, raised: a handler's return type is then its success body alone, which is what the
    OpenAPI document shows (Litestar cannot describe a union of responses). The routers send it as it is."""

    def __init__(self, response: Response[dict[str, Any]]) -> None:
        super().__init__(response.status_code)
        self.response = response


def refused(refusal: Refusal) -> ErrorAnswer:
    """A refused command as the error answer to raise."""
    return ErrorAnswer(refusal_response(refusal))


def send_error_answer(request: Request[Any, Any, Any], exc: ErrorAnswer) -> Response[dict[str, Any]]:
    """The routers' exception handler for `ErrorAnswer`."""
    return exc.response


def accepted(result: Accepted[Order] | Refusal, actor: Actor, status_code: int = 200) -> OrderResponse:
    """The HTTP answer to a command's outcome."""
    if isinstance(result, Refusal):
        raise refused(result)
    view = order_view(result.value, actor, datetime.now(UTC))
    return Response(view, status_code=status_code, headers={POSITION: str(result.position)})


@dataclass
class InitiateOrderOperation(Operation):
    """`POST /orders` in the OpenAPI document: its answers link to every operation on the order it answers.

    A client generated from the document, or a fuzzer's stateful phase (schemathesis follows links), learns
    from the links that the order's `order_id` is what those operations take in their path.
    """

    def __post_init__(self) -> None:
        for status in ("201", "200"):  # a new order, or the first one again for a retried Idempotency-Key
            answer = (self.responses or {}).get(status)
            if isinstance(answer, OpenAPIResponse):
                answer.links = {
                    target: Link(operation_id=target, parameters={"order_id": "$response.body#/order_id"})
                    for target in on_one_order()
                }


def provide_orders(state: State) -> OrdersApplication:
    """Litestar dependency: the application the process was wired with.

    The order endpoints call it themselves rather than declare `orders`: Litestar resolves two
    independent dependencies (`actor` and `orders`) in an anyio task group, which costs more per request
    than the rest of the framework's dispatch; with `actor` alone it is awaited directly.
    """
    orders: OrdersApplication = state.orders
    return orders


@post(
    "/",
    status_code=201,
    summary=INITIATE.command,
    operation_id=INITIATE.command,
    operation_class=InitiateOrderOperation,
    responses={
        201: ResponseSpec(OrderView, description="The new order"),
        200: ResponseSpec(OrderView, description="The first order again: a retry of its Idempotency-Key"),
    },
)
async def create_order(
    data: JSONBody[NewOrder],
    actor: NamedDependency[Actor],
    request: Request[Any, Any, State],
    idempotency_key: Annotated[
        str | None,
        HeaderParameter(
            name="Idempotency-Key", min_length=1, max_length=200, description=IDEMPOTENCY_KEY_HELP
        ),
    ] = None,
) -> OrderResponse:
    """Start an order. A retry with the same Idempotency-Key within the idempotency window (24 hours unless
    configured otherwise) returns the first order (200), never a second."""
    if actor.owns_orders:
        if data.owner_id not in (None, actor.subject):
            raise refused(Refusal(Refused.FORBIDDEN, "you can create orders only for yourself"))
        owner, channel = actor.subject, ("partner" if actor.role is Role.PARTNER else "shop")
        if data.channel not in (None, channel):
            raise refused(Refusal(Refused.INVALID, f"a {actor.role}'s orders use channel {channel}"))
    else:
        if data.owner_id is None:
            raise ClientException("owner_id is required when staff create an order for someone")
        owner, channel = data.owner_id, (data.channel or Channel.SHOP).value
    command = InitiateOrder(
        channel=channel,
        owner_id=owner,
        contact_name=data.contact_name.strip(),
        item_title=data.item_title.strip(),
        material_code=data.material_code.strip().upper(),
        quantity=data.quantity,
        promised_date=data.promised_date,
        idempotency_key=idempotency_key,
    )
    result = await provide_orders(request.app.state).initiate_async(command, actor, request_meta(request))
    if isinstance(result, Accepted) and result.replayed:
        return accepted(result, actor, 200)
    return accepted(result, actor, 201)


@get("/{order_id:uuid}", sync_to_thread=True, operation_id="ReadOrder")
def read_order(order_id: FromPath[UUID], actor: NamedDependency[Actor], state: State) -> OrderResponse:
    """The order as the write side holds it now."""
    orders = provide_orders(state)
    order = _visible_order(orders, order_id, actor)
    if isinstance(order, Refusal):
        raise refused(order)
    return Response(order_view(order, actor, datetime.now(UTC)), headers={POSITION: str(orders.position())})


@get("/{order_id:uuid}/history", sync_to_thread=True, operation_id="ReadHistory")
def read_history(
    order_id: FromPath[UUID], actor: NamedDependency[Actor], state: State
) -> Response[list[HistoryEntry]]:
    """Every event of the order, oldest first."""
    orders = provide_orders(state)
    order = _visible_order(orders, order_id, actor)
    if isinstance(order, Refusal):
        raise refused(order)
    history = [history_entry(e) for e in orders.history(order_id)]
    return Response(history, headers={POSITION: str(orders.position())})


def _visible_order(orders: OrdersApplication, order_id: UUID, actor: Actor) -> Order | Refusal:
    order = orders.order(order_id)
    if order is None:
        return Refusal(Refused.NOT_FOUND, f"no order {order_id}")
    if actor.owns_orders and actor.subject != order.owner_id:
        return Refusal(Refused.FORBIDDEN, "this order belongs to someone else")
    return order


@put("/{order_id:uuid}/model", request_max_body_size=None, summary="AttachModel", operation_id="AttachModel")
async def attach_model(
    order_id: FromPath[UUID],
    actor: NamedDependency[Actor],
    request: Request[Any, Any, State],
    filename: Annotated[str | None, QueryParameter(max_length=255)] = None,
) -> OrderResponse:
    """Upload the model as the raw body; Content-Type (model/stl, ...) or ?filename= names the format."""
    orders = provide_orders(request.app.state)
    order = await anyio.to_thread.run_sync(_visible_order, orders, order_id, actor)
    if isinstance(order, Refusal):
        raise refused(order)
    refusal = order.refusal_for("AttachModel", actor)
    if refusal is not None:
        raise refused(refusal)
    fmt = claimed_format(request.headers.get("content-type"), filename)
    if isinstance(fmt, Unacceptable):
        raise _unacceptable(fmt)
    state = request.app.state
    stored = await _receive_model(request, state.blobs, state.max_upload_bytes, fmt, state.max_unzipped_bytes)
    if isinstance(stored, Unacceptable):
        raise _unacceptable(stored)
    model = ModelFile(
        sha256=stored[0],
        filename=safe_filename(filename, fmt),
        format=fmt,
        size_bytes=stored[1],
        triangle_count=stored[2],
    )
    result = await orders.execute_async(order_id, AttachModel(model), actor, request_meta(request))
    return accepted(result, actor)


async def _receive_model(
    request: Request[Any, Any, Any], blobs: BlobStore, limit: int, fmt: str, max_unzipped: int
) -> tuple[str, int, int | None] | Unacceptable:
    announced = request.headers.get("content-length")
    if announced and announced.isdigit() and int(announced) > limit:
        return Unacceptable(f"the upload is larger than the {limit} bytes allowed", 413)
    pending = blobs.begin(limit)
    try:
        async for chunk in request.stream():
            pending.write(chunk)
        await anyio.to_thread.run_sync(pending.finish)
        checked = await anyio.to_thread.run_sync(identify, pending.path, fmt, max_unzipped)
        if isinstance(checked, Unacceptable):
            pending.discard()
            return checked
        sha256 = await anyio.to_thread.run_sync(pending.commit)
        return sha256, pending.size, checked.triangle_count
    except TooLarge as e:
        pending.discard()
        return Unacceptable(str(e), 413)
    except BaseException:
        pending.discard()
        raise


def _unacceptable(problem: Unacceptable) -> ErrorAnswer:
    code = {413: "too_large", 415: "unsupported_media_type", 400: "bad_request"}.get(problem.http_status)
    return ErrorAnswer(
        Response(error_body(code or "invalid_model", problem.reason), status_code=problem.http_status)
    )


async def _run(
    order_id: UUID, command: Command, actor: Actor, request: Request[Any, Any, State]
) -> OrderResponse:
    # Commands are handled on the event loop, not on a thread each: the application decides on the loop
    # what needs no read, and takes whatever must wait on the database off it.
    orders = provide_orders(request.app.state)
    result = await orders.execute_async(order_id, command, actor, request_meta(request))
    return accepted(result, actor)


@post("/{order_id:uuid}/ship", status_code=200, summary="ShipOrder", operation_id="ShipOrder")
async def ship(
    order_id: FromPath[UUID],
    data: JSONBody[ShipRequest],
    actor: NamedDependency[Actor],
    request: Request[Any, Any, State],
) -> OrderResponse:
    """Hand the parcel to a carrier: `{carrier, tracking_number}`."""
    return await _run(order_id, ShipOrder(data.carrier, data.tracking_number), actor, request)


@post("/{order_id:uuid}/cancel", status_code=200, summary="CancelOrder", operation_id="CancelOrder")
async def cancel(
    order_id: FromPath[UUID],
    data: JSONBody[CancelRequest],
    actor: NamedDependency[Actor],
    request: Request[Any, Any, State],
) -> OrderResponse:
    """Cancel with a reason: owners before approval, sellers until manufacturing starts."""
    return await _run(order_id, CancelOrder(data.reason), actor, request)


@post("/{order_id:uuid}/hold", status_code=200, summary="HoldOrder", operation_id="HoldOrder")
async def hold(
    order_id: FromPath[UUID],
    data: JSONBody[HoldRequest],
    actor: NamedDependency[Actor],
    request: Request[Any, Any, State],
) -> OrderResponse:
    """Put the order on hold with a reason (operators and sellers): it leaves the queue, and takes only
    ReleaseOrder and CancelOrder until released."""
    return await _run(order_id, HoldOrder(data.reason), actor, request)


def _bodiless_command_route(transition: Transition) -> HTTPRouteHandler:
    command_class = ORDER_COMMANDS[transition.command]

    async def handler(
        order_id: FromPath[UUID], actor: NamedDependency[Actor], request: Request[Any, Any, State]
    ) -> OrderResponse:
        return await _run(order_id, command_class(), actor, request)

    handler.__doc__ = f"{transition.command}: {' or '.join(sorted(s.value for s in transition.sources))}"
    target = transition.target
    handler.__doc__ += f" -> {target.value if target else 'the same status'}."
    return post(
        f"/{{order_id:uuid}}/{transition.action}",
        status_code=200,
        summary=transition.command,
        operation_id=transition.command,
        name=transition.command,
    )(handler)


WITH_BODY = {"ShipOrder": ship, "CancelOrder": cancel, "HoldOrder": hold}

COMMAND_ROUTES: tuple[HTTPRouteHandler, ...] = tuple(
    WITH_BODY[t.command] if t.command in WITH_BODY else _bodiless_command_route(t)
    for t in TRANSITIONS
    if t.action is not None
)
"""`POST /orders/{order_id}/{action}` for each command of the lifecycle table that has an action."""
ON_ONE_ORDER: tuple[HTTPRouteHandler, ...] = (read_order, read_history, attach_model, *COMMAND_ROUTES)
"""Every operation that takes an order's id: what the answers of `POST /orders` link to."""


def on_one_order() -> list[str]:
    """The operation ids of `ON_ONE_ORDER`; each handler names its own, so that a link can name it."""
    ids: list[str] = []
    for handler in ON_ONE_ORDER:
        if not isinstance(handler.operation_id, str):
            raise TypeError(f"{handler.handler_name} needs an operation_id of its own for a link to name it")
        ids.append(handler.operation_id)
    return ids


orders_router = Router(
    path="/orders",
    route_handlers=[create_order, *ON_ONE_ORDER],
    tags=["orders"],
    exception_handlers={ErrorAnswer: send_error_answer},
    response_headers=documented_position(
        "the event store position the command's events reached (or, reading, the store's position): pass it"
        " as min_position to read your own write from a view"
    ),
)
