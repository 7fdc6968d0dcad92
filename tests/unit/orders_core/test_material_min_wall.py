"""A material's minimum wall goes through the catalog command and its stored event; materials stored
before it existed read as their family's default."""

from __future__ import annotations

import msgspec

from orders_core.actors import Actor
from orders_core.catalog import DEFAULT_LABOUR, DEFAULT_MATERIALS, Catalog
from orders_core.lifecycle import Role
from orders_core.values import Material

SELLER = Actor(Role.SELLER, "seller-1")


def test_the_seeded_materials_take_their_familys_minimum_wall() -> None:
    catalog = Catalog.seed("EUR", DEFAULT_MATERIALS, DEFAULT_LABOUR, [], SELLER)
    walls = {code: m.minimum_wall_mm for code, m in catalog.materials.items()}
    assert walls == {"AU585": 0.6, "AU750": 0.6, "AU750W": 0.6, "AG925": 0.8, "PT950": 0.5, "PD950": 0.6}


def test_a_seller_sets_a_minimum_wall_and_the_event_carries_it() -> None:
    catalog = Catalog.seed("EUR", DEFAULT_MATERIALS, DEFAULT_LABOUR, [], SELLER)
    thicker = msgspec.structs.replace(catalog.materials["AG925"], min_wall_mm=1.0)
    assert catalog.set_material(thicker, SELLER) is None
    assert catalog.materials["AG925"].minimum_wall_mm == 1.0
    events = catalog.collect_events()
    assert events[-1].material["min_wall_mm"] == 1.0  # type: ignore[attr-defined]
    replayed = Catalog.MaterialSet.apply  # what a replay runs: the stored dict back to a Material
    again = Catalog.seed("EUR", DEFAULT_MATERIALS, DEFAULT_LABOUR, [], SELLER)
    replayed(events[-1], again)  # type: ignore[arg-type]
    assert again.materials["AG925"] == thicker


def test_a_material_event_stored_before_the_minimum_wall_still_applies() -> None:
    stored = {"code": "PT950", "name": "Platinum 950", "density_g_cm3": 20.7, "price_per_gram_minor": 5200}
    material = msgspec.convert(stored, Material)
    assert material.min_wall_mm is None and material.minimum_wall_mm == 0.5
