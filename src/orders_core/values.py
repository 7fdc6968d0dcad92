"""The values the domain's aggregates hold and decide on: model files, quotes, catalog entries.

Pure (msgspec Structs, no I/O, no edge library): the aggregates import them from here, and `contracts.py`
re-exports them as part of what crosses a process boundary.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Annotated

import msgspec

from orders_core.money import CurrencyCode, MinorUnits, Money

MODEL_FORMATS = ("stl", "obj", "ply", "3mf", "glb")
"""Model file formats the shop accepts, by their usual file extension."""

Sha256 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]


class ModelFile(msgspec.Struct, frozen=True, kw_only=True):
    """A 3D model as stored in the blob store: content-addressed by sha256."""

    sha256: Sha256
    filename: str
    format: str
    size_bytes: int
    triangle_count: int | None = None
    """Known at upload for binary STL (it is in the header); otherwise filled in by the quote."""


class QuoteLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a quote's breakdown."""

    code: str
    label: str
    amount_minor: int


class WallFigures(msgspec.Struct, frozen=True, kw_only=True):
    """The local wall thickness of a model (pricing.thickness), area-weighted over its surface."""

    minimum_mm: float
    p1_mm: float
    """1% of the measured surface is thinner than this."""
    min_wall_mm: float
    """The material's minimum wall the area below was counted against."""
    area_below_mm2: float
    share_below: float
    """`area_below_mm2` over the whole surface."""
    unreliable_share: float
    """The share of the surface whose rays did not behave as on a clean closed solid."""
    reliable: bool
    """False: the figures describe a faulty surface and decided nothing."""
    measured_share: float = 1.0
    """The share of the triangles measured: all of a model up to a million, a seeded sample beyond (the
    other figures are then estimates over it: pricing.thickness.MAX_MEASURED)."""


class MeshFigures(msgspec.Struct, frozen=True, kw_only=True):
    """The geometry a quote was computed from, in millimetres and grams."""

    volume_mm3: float
    area_mm2: float
    mass_g: float
    triangle_count: int
    bbox_mm: tuple[float, float, float]
    wall: WallFigures | None = None
    """None in quotes made before the wall-thickness analysis."""


QUOTE_VALIDITY = timedelta(hours=24)
"""How long a quote holds by default (QUOTE_VALID_HOURS): metal prices move daily."""


class Quote(msgspec.Struct, frozen=True, kw_only=True):
    """A price for one order's current model: breakdown lines that add up to the total, and its terms.

    The terms (the catalog version and metal price it used, until when it holds) are None in quotes
    stored before quotes had terms; such a quote holds for QUOTE_VALIDITY after it was recorded.
    """

    model_sha256: Sha256
    material_code: str
    quantity: int
    currency: CurrencyCode
    lines: tuple[QuoteLine, ...]
    total_minor: int
    figures: MeshFigures
    catalog_version: int | None = None
    """The version of the catalog whose prices the quote used."""
    metal_price_per_gram_minor: int | None = None
    """What a gram of the material cost in that catalog, in minor units of `currency`."""
    valid_until: datetime | None = None
    """Until when the price holds: approving the order after it is refused (re-price it)."""
    preview_sha256: Sha256 | None = None
    """The preview of the model (pricing.preview: a GLB coloured by wall thickness) in the blob store;
    None when none was made (quotes before previews, or the preview ran out of time or failed)."""

    def holds_until(self, recorded_at: datetime) -> datetime:
        """Until when the quote holds, had it been recorded at `recorded_at` (older quotes have no term)."""
        return self.valid_until or recorded_at + QUOTE_VALIDITY

    @property
    def total(self) -> Money:
        """The total as Money."""
        return Money(amount_minor=self.total_minor, currency=self.currency)


Code = Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9][A-Z0-9_-]{0,31}$", description="upper-case code")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class LabourUnit(enum.StrEnum):
    """What a labour rate is charged per."""

    PER_CM2 = "per_cm2"
    PER_PIECE = "per_piece"
    PER_ORDER = "per_order"


MIN_WALL_BY_FAMILY = {"AU": 0.6, "AG": 0.8, "PT": 0.5, "PD": 0.6}
"""The thinnest wall casting houses commonly take, by the metal family a material's code starts with:
gold 0.6 mm, silver 0.8 mm (it flows less far before it freezes), platinum 0.5 mm. Palladium is not in
the common tables; it gets gold's 0.6 mm until the casting house says otherwise."""
MIN_WALL_OTHERWISE = 0.8
"""For a code of no known family: the most cautious of the above."""


class Material(msgspec.Struct, frozen=True, kw_only=True):
    """A metal alloy: its density, what a gram costs today, and the thinnest wall it casts."""

    code: Code
    name: Name
    density_g_cm3: Annotated[float, msgspec.Meta(gt=0, le=30)]
    price_per_gram_minor: MinorUnits
    casting_loss_permille: Annotated[int, msgspec.Meta(ge=0, le=500)] = 50
    min_wall_mm: Annotated[float, msgspec.Meta(gt=0, le=10)] | None = None
    """None (and in materials stored before it existed): the family's default, see `minimum_wall_mm`."""
    manufacturing_hours: Annotated[float, msgspec.Meta(ge=0.1, le=2000)] | None = None
    """How long an order of this material is expected to spend in manufacturing (taken to completed), in
    hours, 6 minutes to 2,000 hours; None: EXPECTED_MANUFACTURING (lifecycle.py). The operators' queue
    ranks orders by the slack it leaves before their promised date."""
    work_centre: Code | None = None
    """Where orders of this material are made (a bench or a casting line, e.g. `CASTING-AU`): operators
    who declare the work centre work its materials. None: no work centre named."""

    @property
    def minimum_wall_mm(self) -> float:
        """The thinnest wall this material casts: its own setting, else its family's (MIN_WALL_BY_FAMILY)."""
        if self.min_wall_mm is not None:
            return self.min_wall_mm
        return MIN_WALL_BY_FAMILY.get(self.code[:2], MIN_WALL_OTHERWISE)


class LabourRate(msgspec.Struct, frozen=True, kw_only=True):
    """A labour charge: finishing per cm2 of surface, casting per piece, setup per order."""

    code: Code
    name: Name
    unit: LabourUnit
    amount_minor: MinorUnits


class Product(msgspec.Struct, frozen=True, kw_only=True):
    """A ready-made piece the shop sells from stock."""

    sku: Code
    title: Name
    material_code: Code
    price_minor: MinorUnits
    description: str = ""
