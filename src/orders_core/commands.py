"""Commands: what a caller asks of an order, named in the imperative as in the lifecycle table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from orders_core.values import ModelFile, Quote


class Command:
    """Base of order commands; a class's name is its command name in `lifecycle.TRANSITIONS`."""

    @classmethod
    def name(cls) -> str:
        """The command's name in the lifecycle table."""
        return cls.__name__


@dataclass(frozen=True)
class InitiateOrder(Command):
    channel: str
    owner_id: str
    contact_name: str
    item_title: str
    material_code: str
    quantity: int
    promised_date: date | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True)
class AttachModel(Command):
    model: ModelFile


@dataclass(frozen=True)
class SubmitOrder(Command):
    pass


@dataclass(frozen=True)
class RecordQuote(Command):
    quote: Quote
    submission: int | None = None
    """The version of the OrderSubmitted this answers; a result for an earlier submission is refused."""


@dataclass(frozen=True)
class RejectModel(Command):
    model_sha256: str
    reason: str
    submission: int | None = None
    preview_sha256: str | None = None


@dataclass(frozen=True)
class RepriceOrder(Command):
    """Price the order's model again at today's catalog: a new quote through the pricing service."""


@dataclass(frozen=True)
class ApproveManufacturing(Command):
    pass


@dataclass(frozen=True)
class StartManufacturing(Command):
    pass


@dataclass(frozen=True)
class CompleteManufacturing(Command):
    pass


@dataclass(frozen=True)
class StartPackaging(Command):
    pass


@dataclass(frozen=True)
class ShipOrder(Command):
    carrier: str
    tracking_number: str


@dataclass(frozen=True)
class CloseOrder(Command):
    pass


@dataclass(frozen=True)
class CancelOrder(Command):
    reason: str


HOLD_REASON_MAX = 200
"""The longest hold reason, in characters: a sentence, not a letter."""


@dataclass(frozen=True)
class HoldOrder(Command):
    """Take the order out of the queue for a reason: awaiting material, a question about the model, the
    customer asked to wait."""

    reason: str


@dataclass(frozen=True)
class ReleaseOrder(Command):
    """Put a held order back where it was."""


ORDER_COMMANDS: dict[str, type[Command]] = {
    c.name(): c
    for c in (
        AttachModel,
        SubmitOrder,
        RecordQuote,
        RejectModel,
        RepriceOrder,
        ApproveManufacturing,
        StartManufacturing,
        CompleteManufacturing,
        StartPackaging,
        ShipOrder,
        CloseOrder,
        CancelOrder,
        HoldOrder,
        ReleaseOrder,
    )
}
"""Commands on an existing order, by name."""
