"""Builders for orders, actors and quotes that the tests share."""

from __future__ import annotations

import hashlib
from uuid import uuid4

from orders_core.actors import Actor
from orders_core.commands import (
    ApproveManufacturing,
    AttachModel,
    CancelOrder,
    CloseOrder,
    Command,
    CompleteManufacturing,
    InitiateOrder,
    RecordQuote,
    RejectModel,
    RepriceOrder,
    ShipOrder,
    StartManufacturing,
    StartPackaging,
    SubmitOrder,
)
from orders_core.contracts import MeshFigures, ModelFile, Quote, QuoteLine
from orders_core.lifecycle import Role
from orders_core.order import Order
from orders_core.outcomes import Accepted, Refusal

OWNER = Actor(Role.CUSTOMER, "cust-1")
STRANGER = Actor(Role.CUSTOMER, "cust-2")
PARTNER = Actor(Role.PARTNER, "partner-1")
SELLER = Actor(Role.SELLER, "seller-1")
ADMIN = Actor(Role.ADMIN, "admin-1")
OPERATOR = Actor(Role.OPERATOR, "op-1")
OTHER_OPERATOR = Actor(Role.OPERATOR, "op-2")
PRICING = Actor(Role.SERVICE, "pricing")
EVERYONE = (OWNER, STRANGER, PARTNER, SELLER, ADMIN, OPERATOR, OTHER_OPERATOR, PRICING)


def initiate_command(owner: Actor = OWNER, **changes: object) -> InitiateOrder:
    fields: dict[str, object] = {
        "channel": "partner" if owner.role is Role.PARTNER else "shop",
        "owner_id": owner.subject,
        "contact_name": "Ann Example",
        "item_title": "Engagement ring",
        "material_code": "AU750",
        "quantity": 1,
    }
    fields.update(changes)
    return InitiateOrder(**fields)  # type: ignore[arg-type]


def new_order(owner: Actor = OWNER, number: str = "A-100001") -> Order:
    order = Order.initiate(uuid4(), number, initiate_command(owner), owner)
    assert not isinstance(order, Refusal), order
    return order


def model_file(content: bytes = b"solid cube") -> ModelFile:
    sha = hashlib.sha256(content).hexdigest()
    return ModelFile(sha256=sha, filename="ring.stl", format="stl", size_bytes=len(content))


def quote_for(sha256: str, total_minor: int = 123_45, quantity: int = 1) -> Quote:
    metal = total_minor * 2 // 3
    return Quote(
        model_sha256=sha256,
        material_code="AU750",
        quantity=quantity,
        currency="EUR",
        lines=(
            QuoteLine(code="METAL", label="Gold 750", amount_minor=metal),
            QuoteLine(code="LABOUR", label="Finishing", amount_minor=total_minor - metal),
        ),
        total_minor=total_minor,
        figures=MeshFigures(
            volume_mm3=1000.0, area_mm2=600.0, mass_g=15.5, triangle_count=12, bbox_mm=(10.0, 10.0, 10.0)
        ),
    )


def valid_command(order: Order, name: str) -> Command:
    """A command called `name` with arguments that fit `order` (a quote for its current model, ...)."""
    sha = order.model.sha256 if order.model else "0" * 64
    with_arguments: dict[str, Command] = {
        "AttachModel": AttachModel(model_file(sha.encode())),
        "RecordQuote": RecordQuote(quote_for(sha)),
        "RejectModel": RejectModel(sha, "the model is not watertight"),
        "ShipOrder": ShipOrder("DHL", "JD014600"),
        "CancelOrder": CancelOrder("customer asked"),
    }
    if name in with_arguments:
        return with_arguments[name]
    plain = (
        SubmitOrder,
        RepriceOrder,
        ApproveManufacturing,
        StartManufacturing,
        CompleteManufacturing,
        StartPackaging,
        CloseOrder,
    )
    return {c.name(): c for c in plain}[name]()


def accepted(result: Accepted[Order] | Refusal) -> Order:
    """The order of an accepted command (fails the test on a refusal, showing it)."""
    assert isinstance(result, Accepted), result
    return result.value
