"""Catalog endpoints: read it as the write side holds it; sellers and admins change prices and rates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from litestar import Response, Router, delete, get, put
from litestar.di import NamedDependency
from litestar.openapi.spec import Link, OpenAPIResponse, Operation
from litestar.params import JSONBody, PathParameter

from http_edge.position import POSITION, documented_position
from orders_core.actors import Actor
from orders_core.api.orders import ErrorAnswer, refused, send_error_answer
from orders_core.api.schemas import (
    CatalogView,
    LabourRateRequest,
    MaterialRequest,
    ProductRequest,
    catalog_view,
)
from orders_core.application import OrdersApplication
from orders_core.catalog import Catalog
from orders_core.contracts import LabourRate, Material, Product
from orders_core.lifecycle import INITIATE
from orders_core.outcomes import Refusal

CatalogResponse = Response[CatalogView]
CodeParam = Annotated[str, PathParameter(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$", max_length=32)]


def _change(orders: OrdersApplication, change: Callable[[Catalog], Refusal | None]) -> CatalogResponse:
    result = orders.change_catalog(change)
    if isinstance(result, Refusal):
        raise refused(result)
    return Response(catalog_view(result.value), headers={POSITION: str(result.position)})


@dataclass
class ReadCatalogOperation(Operation):
    """`GET /catalog` in the OpenAPI document: its 200 links to `POST /orders` with one of its materials.

    The link says what the schema cannot: an order's `material_code` names a material of the catalog. It is
    also schemathesis' way into orders: its stateful phase never starts with `POST /orders`, whose optional
    `owner_id` it takes for a reference to something no operation creates. The `requestBody` is read as
    schemathesis reads it: the expressions inside are evaluated and merged into a generated body.
    """

    def __post_init__(self) -> None:
        read = (self.responses or {}).get("200")
        if isinstance(read, OpenAPIResponse):
            read.links = {
                INITIATE.command: Link(
                    operation_id=INITIATE.command,
                    request_body={"material_code": "$response.body#/materials/0/code"},
                )
            }


@get("/", sync_to_thread=True, operation_class=ReadCatalogOperation, operation_id="ReadCatalog")
def read_catalog(orders: NamedDependency[OrdersApplication]) -> Response[CatalogView]:
    """Materials, labour rates and products as the CRM holds them now."""
    return Response(catalog_view(orders.catalog()), headers={POSITION: str(orders.position())})


@put("/materials/{code:str}", sync_to_thread=True, operation_id="SetMaterial")
def put_material(
    code: CodeParam,
    data: JSONBody[MaterialRequest],
    actor: NamedDependency[Actor],
    orders: NamedDependency[OrdersApplication],
) -> CatalogResponse:
    """Add a material or change its density, today's price per gram, the thinnest wall it casts, how long
    its orders take to make, or the work centre that makes them."""
    material = Material(
        code=code.upper(),
        name=data.name.strip(),
        density_g_cm3=data.density_g_cm3,
        price_per_gram_minor=data.price_per_gram_minor,
        casting_loss_permille=data.casting_loss_permille,
        min_wall_mm=data.min_wall_mm,
        manufacturing_hours=data.manufacturing_hours,
        work_centre=data.work_centre.upper() if data.work_centre else None,
    )
    return _change(orders, lambda c: c.set_material(material, actor))


@put("/labour/{code:str}", sync_to_thread=True, operation_id="SetLabourRate")
def put_labour_rate(
    code: CodeParam,
    data: JSONBody[LabourRateRequest],
    actor: NamedDependency[Actor],
    orders: NamedDependency[OrdersApplication],
) -> CatalogResponse:
    """Add a labour rate or change it."""
    rate = LabourRate(
        code=code.upper(), name=data.name.strip(), unit=data.unit, amount_minor=data.amount_minor
    )
    return _change(orders, lambda c: c.set_labour_rate(rate, actor))


@put("/products/{sku:str}", sync_to_thread=True, operation_id="SetProduct")
def put_product(
    sku: CodeParam,
    data: JSONBody[ProductRequest],
    actor: NamedDependency[Actor],
    orders: NamedDependency[OrdersApplication],
) -> CatalogResponse:
    """List a ready-made product or change it."""
    product = Product(
        sku=sku.upper(),
        title=data.title.strip(),
        material_code=data.material_code.upper(),
        price_minor=data.price_minor,
        description=data.description,
    )
    return _change(orders, lambda c: c.set_product(product, actor))


@delete("/products/{sku:str}", sync_to_thread=True, status_code=200, operation_id="RemoveProduct")
def delete_product(
    sku: CodeParam, actor: NamedDependency[Actor], orders: NamedDependency[OrdersApplication]
) -> CatalogResponse:
    """Take a ready-made product off the catalog."""
    return _change(orders, lambda c: c.remove_product(sku.upper(), actor))


catalog_router = Router(
    tags=["catalog"],
    path="/catalog",
    route_handlers=[read_catalog, put_material, put_labour_rate, put_product, delete_product],
    exception_handlers={ErrorAnswer: send_error_answer},
    response_headers=documented_position(
        "the event store position the change reached (or, reading, the store's position): pass it as"
        " min_position to read the shop's catalog as changed"
    ),
)
