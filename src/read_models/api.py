"""The read API (Litestar): the shop's and the MES's views, read from their own schemas only."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar
from uuid import UUID

import msgspec
from litestar import Litestar, Request, Response, Router, get
from litestar.config.app import AppConfig
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, PermissionDeniedException
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.plugins import InitPlugin
from litestar.plugins.opentelemetry.middleware import OpenTelemetryInstrumentationMiddleware
from litestar.response import ServerSentEvent
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler
from psycopg import Connection
from psycopg.rows import DictRow
from psycopg_pool import ConnectionPool

from http_edge.error_contract import documents_errors
from http_edge.health import UNTRACED, Probe, add_probe
from http_edge.plugin import EdgeConfig, edge_application
from http_edge.position import POSITION, documented_position
from http_edge.rate_limit import RateLimiter, limit_description
from orders_core.contracts import Actor, OrderFacts, PreviewReader, Role, Status, allowed_commands
from projectors.health import every_projection
from read_models import mes, shop
from read_models.bodies import (
    ManufacturingEstimates,
    MesOrderPage,
    MesStreamMessage,
    ShopCatalog,
    ShopOrder,
    ShopOrderPage,
    StatusBoard,
)
from read_models.metrics import register_mes_collector
from read_models.paging import BadQuery, decode_cursor, encode_cursor
from read_models.stream import ChangeFeed

Body = TypeVar("Body")
POSITIONED = documented_position("the event store position the view had reached when it answered")
MES_ROLES = frozenset({Role.SELLER, Role.OPERATOR, Role.ADMIN})
MinPosition = Annotated[
    int,
    QueryParameter(
        ge=0,
        description="read your own write: wait (up to 5 s) until the view has reached this position, the "
        "X-Position a command answered with (0, the default: no wait). Still behind after the wait: 503 with "
        "Retry-After. A position the event store has never reached (no command answered with it): 400.",
    ),
]
STATUS_FILTER = QueryParameter(
    max_length=400,
    description="orders in any of these statuses, comma-separated (e.g. MANUFACTURING_APPROVED,PACKAGING): "
    + ", ".join(Status)
    + "; an unknown one is a 400 that names the known ones",
)


class Behind(HTTPException):
    """The view has not reached the position the client asked for within the wait bound."""

    status_code = 503


def provide_pool(state: State) -> ConnectionPool[Connection[DictRow]]:
    pool: ConnectionPool[Connection[DictRow]] = state.pool
    return pool


def await_position(
    pool: ConnectionPool[Connection[DictRow]], schema: str, position: int, timeout: float
) -> int:
    """Wait until the projection in `schema` has reached `position`; returns where it stands."""
    deadline = time.monotonic() + timeout
    while True:
        with pool.connection() as conn:
            row = conn.execute(
                f"SELECT notification_id FROM {schema}.tracking WHERE application_name = 'orders'"  # noqa: S608
            ).fetchone()
        reached = int(row["notification_id"]) if row else 0
        if reached >= position:
            return reached
        if time.monotonic() > deadline:
            with pool.connection() as conn:
                found = conn.execute(
                    "SELECT head, pg_is_in_recovery() AS replica FROM monitor.projection_health(%s)",
                    (schema,),
                ).fetchone()
            head, replica = (int(found["head"]), bool(found["replica"])) if found else (0, False)
            # Checked after the wait, on the store as this database has it. A hot standby's copy of the store
            # may itself lag behind the primary's: there a position beyond its head may well be real.
            if position > head and not replica:
                raise HTTPException(
                    f"min_position {position} is beyond the last position the event store has reached "
                    f"({head}): pass the X-Position a command answered with",
                    status_code=400,
                )
            if position > head:
                detail = f"this replica has the event store up to position {head}, not yet {position}"
            else:
                detail = f"the {schema} view is at position {reached}, not yet {position}"
            raise Behind(f"{detail}; retry shortly", headers={"Retry-After": "1"})
        time.sleep(0.01)


def _no_nul(**texts: str | None) -> None:
    """A 400 for a NUL in a text parameter: PostgreSQL text cannot hold one, and the query would fail."""
    for name, text in texts.items():
        if text is not None and "\x00" in text:
            raise HTTPException(f"{name} must not contain a NUL character", status_code=400)


def _positioned(rows: Any, body: type[Body], reached: int) -> Response[Body]:
    """`rows` as the response body `body`, saying in X-Position which position the view had reached."""
    return Response(msgspec.convert(rows, body), headers={POSITION: str(reached)})


@get("/catalog", sync_to_thread=True, operation_id="ReadShopCatalog")
def shop_catalog(
    pool: NamedDependency[ConnectionPool[Connection[DictRow]]], min_position: MinPosition = 0
) -> Response[ShopCatalog]:
    """The shop's catalog: materials with today's price per gram, and ready-made products."""
    reached = await_position(pool, "shop", min_position, 5.0)
    with pool.connection() as conn:
        return _positioned(shop.catalog(conn), ShopCatalog, reached)


@get("/orders", sync_to_thread=True, operation_id="ListShopOrders")
def shop_orders(
    actor: NamedDependency[Actor],
    pool: NamedDependency[ConnectionPool[Connection[DictRow]]],
    owner_id: Annotated[str | None, QueryParameter(max_length=128)] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, QueryParameter(max_length=500)] = None,
    min_position: MinPosition = 0,
) -> Response[ShopOrderPage]:
    """The caller's own orders, newest first (staff name the owner with `owner_id=`)."""
    _no_nul(owner_id=owner_id, cursor=cursor)
    if actor.owns_orders:
        owner_id = actor.subject
    elif owner_id is None:
        raise HTTPException(
            "staff must name whose orders to list: ?owner_id=<customer or partner id>", status_code=400
        )
    before = shop_cursor(cursor) if cursor else None
    reached = await_position(pool, "shop", min_position, 5.0)
    with pool.connection() as conn:
        rows = shop.orders_of(conn, owner_id, limit + 1, before)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = (
        encode_cursor(mes.MesOrderSort.CREATED, rows[-1]["sort_key"], str(rows[-1]["order_id"]))
        if more
        else None
    )
    for r in rows:
        r.pop("sort_key")
    return _positioned({"items": rows, "next_cursor": next_cursor}, ShopOrderPage, reached)


def shop_cursor(cursor: str) -> tuple[str, str]:
    try:
        return decode_cursor(cursor, mes.MesOrderSort.CREATED)
    except BadQuery as e:
        raise HTTPException(str(e), status_code=400) from e


@get("/orders/{order_id:uuid}", sync_to_thread=True, operation_id="ReadShopOrder")
def shop_order(
    order_id: FromPath[UUID],
    actor: NamedDependency[Actor],
    pool: NamedDependency[ConnectionPool[Connection[DictRow]]],
    min_position: MinPosition = 0,
) -> Response[ShopOrder]:
    """One order as the shop shows it; someone else's order is not found."""
    reached = await_position(pool, "shop", min_position, 5.0)
    with pool.connection() as conn:
        found = shop.order(conn, order_id)
    if found is None or (actor.owns_orders and found["owner_id"] != actor.subject):
        raise HTTPException(f"no order {order_id}", status_code=404)
    return _positioned(found, ShopOrder, reached)


PREVIEW_MEDIA_TYPE = "model/gltf-binary"
PREVIEW_RESPONSES = {
    200: ResponseSpec(
        None,
        description="the model's preview: binary glTF 2.0, one mesh in millimetres with COLOR_0 (red below "
        "the material's minimum wall, amber near it) and _WALL_MM (float32, the wall there in mm); ETag: its "
        "sha256",
        media_type=PREVIEW_MEDIA_TYPE,
    ),
    304: ResponseSpec(None, description="the preview named in If-None-Match is still the order's preview"),
}


def _preview(order_id: UUID, sha256: str | None, request: Request[Any, Any, State]) -> Response[bytes]:
    """The preview `sha256` of the order as a GLB answer, or the 404 that says why there is none."""
    previews: PreviewReader | None = request.app.state.previews
    if sha256 is None:
        raise HTTPException(
            f"order {order_id} has no preview yet: one is made when its model is quoted or rejected as too "
            "thin",
            status_code=404,
        )
    etag = f'"{sha256}"'
    # The URL names the order, whose model (and so preview) may change: cached copies are revalidated
    # (no-cache), which the strong ETag, the preview's sha256, answers with a 304 without the body.
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(b"", status_code=304, headers=headers, media_type=PREVIEW_MEDIA_TYPE)
    try:
        if previews is None:
            raise KeyError(sha256)
        content = previews.read_preview(sha256)
    except KeyError:
        raise HTTPException(
            f"the preview of order {order_id} is not in the blob store", status_code=404
        ) from None
    return Response(content, headers=headers, media_type=PREVIEW_MEDIA_TYPE)


@get(
    "/orders/{order_id:uuid}/preview",
    sync_to_thread=True,
    operation_id="ReadShopOrderPreview",
    media_type=PREVIEW_MEDIA_TYPE,
    responses=PREVIEW_RESPONSES,
)
def shop_order_preview(
    order_id: FromPath[UUID],
    actor: NamedDependency[Actor],
    pool: NamedDependency[ConnectionPool[Connection[DictRow]]],
    request: Request[Any, Any, State],
) -> Response[bytes]:
    """The 3D preview of the caller's own order (a GLB coloured by wall thickness against the material's
    minimum); anyone else's order, including another customer's, is not found."""
    with pool.connection() as conn:
        found = shop.preview_of(conn, order_id)
    if found is None or not actor.owns_orders or found[0] != actor.subject:
        raise HTTPException(f"no order {order_id}", status_code=404)
    return _preview(order_id, found[1], request)


@get(
    "/orders/{order_id:uuid}/preview",
    sync_to_thread=True,
    operation_id="ReadMesOrderPreview",
    media_type=PREVIEW_MEDIA_TYPE,
    responses=PREVIEW_RESPONSES,
)
def mes_order_preview(
    order_id: FromPath[UUID],
    actor: NamedDependency[Actor],
    pool: NamedDependency[ConnectionPool[Connection[DictRow]]],
    request: Request[Any, Any, State],
) -> Response[bytes]:
    """The 3D preview of any order, for operators, sellers and admins (a GLB coloured by wall thickness
    against the material's minimum)."""
    _mes_only(actor)
    with pool.connection() as conn:
        found = mes.preview_of(conn, order_id)
    if found is None:
        raise HTTPException(f"no order {order_id}", status_code=404)
    return _preview(order_id, found[1], request)


def _mes_only(actor: Actor) -> None:
    if actor.role not in MES_ROLES:
        raise PermissionDeniedException("the MES is for operators and sellers")


@get("/orders", sync_to_thread=True, operation_id="ListMesOrders")
def mes_orders(
    actor: NamedDependency[Actor],
    pool: NamedDependency[ConnectionPool[Connection[DictRow]]],
    status: Annotated[str | None, STATUS_FILTER] = None,
    material_code: Annotated[
        str | None,
        QueryParameter(
            max_length=4000, description="a material code, or several comma-separated (an operator's profile)"
        ),
    ] = None,
    channel: Annotated[str | None, QueryParameter(max_length=16)] = None,
    operator_id: Annotated[str | None, QueryParameter(max_length=128)] = None,
    overdue: FromQuery[bool] = False,
    stuck: FromQuery[bool] = False,
    held: Annotated[
        bool | None, QueryParameter(description="true: only orders on hold; false: only those not on hold")
    ] = None,
    q: Annotated[str | None, QueryParameter(description="text in number, contact name or item title")] = None,
    sort: FromQuery[mes.MesOrderSort] = mes.MesOrderSort.APPROVED,
    cursor: Annotated[str | None, QueryParameter(max_length=500)] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=mes.MAX_LIMIT)] = 50,
    min_position: MinPosition = 0,
) -> Response[MesOrderPage]:
    """Orders for the operators: any combination of filters, newest approved first, keyset pages."""
    _mes_only(actor)
    _no_nul(
        status=status,
        material_code=material_code,
        channel=channel,
        operator_id=operator_id,
        q=q,
        cursor=cursor,
    )
    try:
        filters = mes.MesFilters(
            statuses=mes.parse_statuses(status), material_code=material_code, channel=channel,
            operator_id=operator_id,
            overdue=overdue, stuck=stuck, held=held, text=q or None, sort=sort, cursor=cursor, limit=limit,
        )  # fmt: skip
        reached = await_position(pool, "mes", min_position, 5.0)
        with pool.connection() as conn:
            page = mes.find_orders(conn, filters)
    except BadQuery as e:
        raise HTTPException(str(e), status_code=400) from e
    for item in page.items:
        facts = OrderFacts(
            Status(item["status"]), item["owner_id"], item["operator_id"], item["held_since"] is not None
        )
        item["allowed"] = list(allowed_commands(actor, facts))
    return _positioned({"items": page.items, "next_cursor": page.next_cursor}, MesOrderPage, reached)


@get("/stats", sync_to_thread=True, operation_id="ReadMesStatusBoard")
def mes_stats(
    actor: NamedDependency[Actor],
    pool: NamedDependency[ConnectionPool[Connection[DictRow]]],
    min_position: MinPosition = 0,
) -> Response[StatusBoard]:
    """Counts per status, waiting times in MANUFACTURING_APPROVED, stuck and overdue orders."""
    _mes_only(actor)
    reached = await_position(pool, "mes", min_position, 5.0)
    with pool.connection() as conn:
        return _positioned(mes.status_board(conn), StatusBoard, reached)


@get("/manufacturing-estimates", sync_to_thread=True, operation_id="ListMesManufacturingEstimates")
def mes_manufacturing_estimates(
    actor: NamedDependency[Actor],
    pool: NamedDependency[ConnectionPool[Connection[DictRow]]],
    min_position: MinPosition = 0,
) -> Response[ManufacturingEstimates]:
    """Each material's manufacturing estimate in use (catalog, measured or default), with its completions
    and measured figure."""
    _mes_only(actor)
    reached = await_position(pool, "mes", min_position, 5.0)
    with pool.connection() as conn:
        items = mes.manufacturing_estimates(conn)
    return _positioned({"items": items}, ManufacturingEstimates, reached)


@get(
    "/stream",
    operation_id="StreamMesChanges",
    opt=UNTRACED,
    responses={
        200: ResponseSpec(
            data_container=MesStreamMessage,
            generate_examples=False,
            media_type="text/event-stream",
            description="Server-Sent Events: `ready`, then a `change` per batch of the MES view",
        )
    },
)
async def mes_stream(actor: NamedDependency[Actor], request: Request[Any, Any, State]) -> ServerSentEvent:
    """Live changes of the MES view as Server-Sent Events: `change` events carry the changed orders."""
    _mes_only(actor)
    feed: ChangeFeed = request.app.state.feed
    return ServerSentEvent(feed.messages(), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def views_health(pool: ConnectionPool[Connection[DictRow]]) -> dict[str, Any]:
    """`status` (`degraded` while any projection is failing, behind or holding parked aggregates) and how
    each projection stands; raises if the database cannot be reached."""
    with pool.connection() as conn:
        projections = every_projection(conn)
    return {
        "status": "ok" if all(p.state == "ok" for p in projections) else "degraded",
        "positions": {p.name: p.position for p in projections if p.name in ("shop", "mes")},
        "projections": {p.name: p.as_json() for p in projections},
    }


CONSOLE_DIR = Path(__file__).with_name("console")

ROUTES: list[ControllerRouterHandler] = [
    Router(
        "/shop",
        route_handlers=[shop_catalog, shop_orders, shop_order, shop_order_preview],
        tags=["shop"],
        response_headers=POSITIONED,
    ),
    Router(
        "/mes",
        route_handlers=[mes_orders, mes_stats, mes_manufacturing_estimates],
        tags=["mes"],
        response_headers=POSITIONED,
    ),
    Router("/mes", route_handlers=[mes_stream, mes_order_preview], tags=["mes"]),
    create_static_files_router(
        path="/console", directories=[CONSOLE_DIR], html_mode=True, include_in_schema=False
    ),
]


READ_ERRORS = (400, 401, 403, 404, 429, 503)


class ReadApi(InitPlugin):
    """The read API's routes (/shop, /mes, the console), the MES change feed they stream, and the views'
    health. `required`: whether the process is unready without the views' database (a process that also
    serves commands still serves them, and only reports itself degraded)."""

    __slots__ = ("feed", "pool", "previews", "required")

    def __init__(
        self,
        pool: ConnectionPool[Connection[DictRow]],
        feed: ChangeFeed,
        *,
        required: bool = True,
        previews: PreviewReader | None = None,
    ) -> None:
        self.pool, self.feed, self.required, self.previews = pool, feed, required, previews
        super().__init__()

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        pool = self.pool
        app_config.route_handlers = [*app_config.route_handlers, *ROUTES]
        app_config.dependencies["pool"] = Provide(provide_pool, sync_to_thread=False)
        app_config.state.update(pool=pool, feed=self.feed, previews=self.previews)
        app_config.on_startup.append(self.feed.start)
        app_config.on_shutdown.append(self.feed.stop)
        register_mes_collector(pool)
        add_probe(
            app_config,
            Probe(
                name="projections",
                dependency="read database",
                report=lambda: views_health(pool),
                ready=lambda: _select_one(pool),
                required=self.required,
            ),
        )
        documents_errors(app_config, READ_ERRORS, ("/shop", "/mes"))
        return app_config


def _select_one(pool: ConnectionPool[Connection[DictRow]]) -> None:
    with pool.connection() as conn:
        conn.execute("SELECT 1")


@dataclass(frozen=True)
class ReadApiSettings:
    """What the read API alone runs on."""

    pool: ConnectionPool[Connection[DictRow]]
    """Connections to the views (a read-only role is enough)."""
    feed: ChangeFeed
    """The MES view's changes, for /mes/stream."""
    jwt_secret: str
    tracing: type[OpenTelemetryInstrumentationMiddleware] | None = None
    """The middleware to trace requests with (None: no tracing)."""
    limiter: RateLimiter | None = None
    """The rate limit of outside callers (None: no limit)."""
    previews: PreviewReader | None = None
    """Where model previews are read (None: every preview is a 404)."""


def create_read_app(settings: ReadApiSettings) -> Litestar:
    """The read API alone on the HTTP edge."""
    edge = EdgeConfig(
        title="Alexandrite read API",
        jwt_secret=settings.jwt_secret,
        description=limit_description(settings.limiter),
        tracing=settings.tracing,
        limiter=settings.limiter,
    )
    return edge_application(edge, ReadApi(settings.pool, settings.feed, previews=settings.previews))
