"""The price of a model: the checks that it can be cast, then metal plus labour in integer minor units.

Rounding: each line is worked out per piece from the float figures in Decimal arithmetic, rounded once,
half up, to a whole minor unit, and only then multiplied by the quantity (per-piece lines) as an integer.
The total is the sum of the lines. A quote is therefore a function of its recorded figures alone, and it
never holds a float amount.

Too thin: the mean wall thickness is estimated as 2 x volume / area. That is exact for a flat plate (the
thinnest shape a given volume can take as a wall) and gives half the diameter of a round wire and a third
of the diameter of a ball. With the default minimum of 0.3 mm it rejects plates under 0.3 mm, wires under
0.6 mm and balls under 0.9 mm, all below what casting houses accept as the thinnest wall (0.5-0.6 mm) or
wire (0.8 mm). Being an average, it never rejects a sound piece for one fine detail; it is meant to catch
sheet-like or wire-like models that cannot be cast at all, cheaply, before the wall-thickness analysis.

Too thin locally: then pricing.thickness measures the wall behind every triangle (a ray inward from its
centroid), and the quote records the thinnest wall, the 1st percentile and the area below the material's
minimum wall (`Material.minimum_wall_mm`: 0.6 mm gold, 0.8 mm silver, 0.5 mm platinum unless the catalog
says otherwise). A model with more than THIN_SHARE of its surface below that minimum is rejected, with
the share, the thinnest wall and the box around the thin part. A surface the analysis finds faulty
(inverted normals, overlapping or self-intersecting parts: `unreliable`) is priced on the mean rule
alone, its figures recorded as unreliable, never rejected by them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path

import msgspec

from orders_core.contracts import (
    LabourRate,
    LabourUnit,
    Material,
    MeshFigures,
    Quote,
    QuoteLine,
    WallFigures,
)
from pricing.geometry import DefectiveEdges, defective_edges, figures_of
from pricing.limits import DEFAULT_LIMITS, Deadline, Limits
from pricing.meshes import Triangles, load_triangles
from pricing.rejections import Reason, Rejection
from pricing.thickness import Thickness, describe_box, wall_thickness

METAL = "METAL"
"""The code of the metal line; labour lines carry their rate's code."""
ZERO_VOLUME_RATIO = 1e-6
"""A volume below this fraction of the cube on the largest extent is float noise around zero."""
THIN_SHARE = 0.005
"""More than this share of the surface below the material's minimum wall rejects a model. Sound test
solids (plates, tubes, rings of 0.7 mm and up in gold) have none below it; a ring's prong is 1-2% of its
surface (the generated rings of the tests: a 5 mm prong of 0.3 mm, 1.2%; of 0.5 mm, 2.0%), so half a
percent lets a few stray triangles through (a fine chamfer, a tiny engraving) but not a prong."""


def quote_for(
    source: Path | bytes,
    fmt: str,
    *,
    material: Material,
    labour_rates: Iterable[LabourRate],
    quantity: int,
    currency: str,
    model_sha256: str,
    limits: Limits = DEFAULT_LIMITS,
    deadline: Deadline | None = None,
    measured: Callable[[Triangles, Thickness], None] | None = None,
) -> Quote | Rejection:
    """Price the model in `source` (a path or its bytes, format `fmt`), or say why it cannot be priced.

    `deadline` defaults to `limits.time_limit_s` from now; pass one to share a budget with earlier work.
    `measured` is called with the triangles and their wall thickness once the analysis has run (the
    worker's preview is made from them, for a quote and for a model rejected as too thin alike).
    """
    deadline = deadline or Deadline.after(limits.time_limit_s)
    triangles = load_triangles(source, fmt, limits)
    if isinstance(triangles, Rejection):
        return triangles
    if deadline.passed():
        return _too_slow(limits)
    figures = figures_of(triangles, material.density_g_cm3)
    rejection = _too_large(figures, limits)
    if rejection is not None:
        return rejection
    if deadline.passed():
        return _too_slow(limits)
    defects = defective_edges(triangles)
    if defects.count:
        return _not_watertight(defects)
    rejection = _not_solid(figures, limits)
    if rejection is not None:
        return rejection
    if deadline.passed():
        return _too_slow(limits)
    # checked again after it: the analysis is one phase, 1-2 s at the 1M triangles (bench/thickness.py)
    thickness = wall_thickness(triangles, material.minimum_wall_mm)
    if measured is not None:
        measured(triangles, thickness)
    if deadline.passed():
        return _too_slow(limits)
    rejection = _too_thin_locally(thickness)
    if rejection is not None:
        return rejection
    figures = msgspec.structs.replace(figures, wall=_wall_figures(thickness))
    return price(
        figures,
        material=material,
        labour_rates=labour_rates,
        quantity=quantity,
        currency=currency,
        model_sha256=model_sha256,
    )


def price(
    figures: MeshFigures,
    *,
    material: Material,
    labour_rates: Iterable[LabourRate],
    quantity: int,
    currency: str,
    model_sha256: str,
) -> Quote:
    """The quote for `quantity` pieces of a model measured as `figures`, with its breakdown."""
    if quantity < 1:
        raise ValueError(f"quantity must be at least 1, not {quantity}")
    metal = _per_piece(
        Decimal(figures.mass_g)
        * material.price_per_gram_minor
        * (1000 + material.casting_loss_permille)
        / 1000
    )
    lines = [
        QuoteLine(
            code=METAL,
            label=f"{material.name}: {figures.mass_g:.2f} g per piece "
            f"+ {material.casting_loss_permille / 10:g}% casting loss{_times(quantity)}",
            amount_minor=metal * quantity,
        )
    ]
    lines.extend(_labour(rate, figures, quantity) for rate in labour_rates)
    return Quote(
        model_sha256=model_sha256,
        material_code=material.code,
        quantity=quantity,
        currency=currency,
        lines=tuple(lines),
        total_minor=sum(line.amount_minor for line in lines),
        figures=figures,
        metal_price_per_gram_minor=material.price_per_gram_minor,
    )


def _labour(rate: LabourRate, figures: MeshFigures, quantity: int) -> QuoteLine:
    if rate.unit is LabourUnit.PER_ORDER:
        return QuoteLine(
            code=rate.code, label=f"{rate.name} (once per order)", amount_minor=rate.amount_minor
        )
    if rate.unit is LabourUnit.PER_PIECE:
        return QuoteLine(
            code=rate.code, label=f"{rate.name}{_times(quantity)}", amount_minor=rate.amount_minor * quantity
        )
    per_piece = _per_piece(Decimal(figures.area_mm2) * rate.amount_minor / 100)
    return QuoteLine(
        code=rate.code,
        label=f"{rate.name}: {figures.area_mm2 / 100:.2f} cm2 per piece{_times(quantity)}",
        amount_minor=per_piece * quantity,
    )


def _per_piece(amount: Decimal) -> int:
    """The one rounding of a line: half up to a whole minor unit."""
    with localcontext() as context:
        context.prec = 50
        return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _times(quantity: int) -> str:
    return f" x {quantity}" if quantity > 1 else ""


def _too_large(figures: MeshFigures, limits: Limits) -> Rejection | None:
    if max(figures.bbox_mm) <= limits.flask_max_mm:
        return None
    x, y, z = figures.bbox_mm
    return Rejection(
        reason=Reason.TOO_LARGE_FOR_FLASK,
        detail=f"the model measures {x:.1f} x {y:.1f} x {z:.1f} mm; our casting flask takes pieces of up to "
        f"{limits.flask_max_mm:g} mm in every direction. If it should be smaller, check the units it was "
        "exported in (we read STL, OBJ and PLY as millimetres)",
    )


def _not_watertight(defects: DefectiveEdges) -> Rejection:
    where = ""
    if defects.low is not None and defects.high is not None:
        span = ", ".join(
            f"{axis} {low:.2f} to {high:.2f}"
            for axis, low, high in zip("xyz", defects.low, defects.high, strict=True)
        )
        where = f" They lie within {span} mm (the model's own coordinates)."
    return Rejection(
        reason=Reason.NOT_WATERTIGHT,
        detail=f"the model is not a closed solid: {defects.count:,} of its edges border a hole, are shared "
        "by more than two faces, or join faces that disagree about which side is outside (corners closer "
        f"than {defects.tolerance_mm:.4f} mm count as one).{where} Close the holes and make the normals "
        "consistent (the 'repair' or 'make manifold' command of most modelling tools), then upload it again",
    )


def _not_solid(figures: MeshFigures, limits: Limits) -> Rejection | None:
    volume = figures.volume_mm3
    if abs(volume) <= ZERO_VOLUME_RATIO * max(figures.bbox_mm) ** 3:
        return Rejection(
            reason=Reason.ZERO_VOLUME,
            detail="the model encloses no volume: it is flat or made of surfaces only, "
            "and casting needs a solid",
        )
    if volume < 0:
        return Rejection(
            reason=Reason.INVERTED,
            detail="the model is inside out: its faces point inwards, so its volume comes out negative. "
            "Flip its normals and upload it again",
        )
    wall = 2 * volume / figures.area_mm2
    if wall < limits.min_wall_mm:
        return Rejection(
            reason=Reason.TOO_THIN,
            detail=f"the model is too thin to cast: its walls are {wall:.2f} mm thick on average, and metal "
            f"casting needs at least {limits.min_wall_mm:g} mm",
        )
    return None


def _wall_figures(thickness: Thickness) -> WallFigures:
    return WallFigures(
        minimum_mm=thickness.minimum_mm,
        p1_mm=thickness.p1_mm,
        min_wall_mm=thickness.min_wall_mm,
        area_below_mm2=thickness.area_below_mm2,
        share_below=thickness.share_below,
        unreliable_share=thickness.unreliable_share,
        reliable=thickness.reliable,
        measured_share=thickness.measured_share,
    )


def _too_thin_locally(thickness: Thickness) -> Rejection | None:
    if not thickness.reliable or thickness.share_below <= THIN_SHARE:
        return None
    where = ""
    if thickness.below_low is not None and thickness.below_high is not None:
        box = describe_box(thickness.below_low, thickness.below_high)
        where = f" The thin part lies within {box} (the model's own coordinates)."
    return Rejection(
        reason=Reason.TOO_THIN,
        detail=f"parts of the model are too thin to cast: {thickness.share_below:.1%} of its surface "
        f"({thickness.area_below_mm2:.1f} mm2) has a wall under the {thickness.min_wall_mm:g} mm this "
        f"metal needs, the thinnest {thickness.minimum_mm:.2f} mm.{where} Thicken those walls, prongs or "
        f"wires to at least {thickness.min_wall_mm:g} mm, or choose a metal that casts thinner walls",
    )


def _too_slow(limits: Limits) -> Rejection:
    return Rejection(
        reason=Reason.TIME_LIMIT,
        detail=f"the model is too complex to price automatically within {limits.time_limit_s:g} s; please "
        "reduce its detail, or ask us for a manual quote",
    )
