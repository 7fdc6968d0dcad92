"""The catalog aggregate: materials (density, price per gram), labour rates and ready-made products."""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import msgspec
from eventsourcing.domain import Aggregate

from orders_core.actors import SELLERS, Actor
from orders_core.money import CurrencyCode
from orders_core.outcomes import Refusal, Refused
from orders_core.values import LabourRate, LabourUnit, Material, Product

CATALOG_ID: UUID = uuid5(NAMESPACE_URL, "urn:alexandrite:catalog")
"""There is one catalog; its aggregate id is fixed so every process finds it."""


class Catalog(Aggregate):
    """What the shop sells and what pricing charges; changed by sellers and admins."""

    class Event(Aggregate.Event):
        actor_role: str
        actor_id: str

    class CatalogSeeded(Event, Aggregate.Created):
        currency: str
        materials: list[dict[str, Any]]
        labour_rates: list[dict[str, Any]]
        products: list[dict[str, Any]]

        def apply(self, aggregate: Any) -> None:
            catalog: Catalog = aggregate
            catalog.currency = self.currency
            for m in self.materials:
                catalog.materials[m["code"]] = msgspec.convert(m, Material)
            for r in self.labour_rates:
                catalog.labour_rates[r["code"]] = msgspec.convert(r, LabourRate)
            for p in self.products:
                catalog.products[p["sku"]] = msgspec.convert(p, Product)

    class MaterialSet(Event):
        material: dict[str, Any]

        def apply(self, aggregate: Any) -> None:
            material = msgspec.convert(self.material, Material)
            aggregate.materials[material.code] = material

    class LabourRateSet(Event):
        rate: dict[str, Any]

        def apply(self, aggregate: Any) -> None:
            rate = msgspec.convert(self.rate, LabourRate)
            aggregate.labour_rates[rate.code] = rate

    class ProductSet(Event):
        product: dict[str, Any]

        def apply(self, aggregate: Any) -> None:
            product = msgspec.convert(self.product, Product)
            aggregate.products[product.sku] = product

    class ProductRemoved(Event):
        sku: str

        def apply(self, aggregate: Any) -> None:
            aggregate.products.pop(self.sku, None)

    def __init__(self) -> None:
        self.currency = "EUR"
        self.materials: dict[str, Material] = {}
        self.labour_rates: dict[str, LabourRate] = {}
        self.products: dict[str, Product] = {}

    @classmethod
    def seed(
        cls,
        currency: CurrencyCode,
        materials: list[Material],
        labour_rates: list[LabourRate],
        products: list[Product],
        actor: Actor,
    ) -> Catalog:
        """The first version of the catalog."""
        return cls._create(
            cls.CatalogSeeded,
            id=CATALOG_ID,
            actor_role=actor.role.value,
            actor_id=actor.subject,
            currency=currency,
            materials=[msgspec.to_builtins(m) for m in materials],
            labour_rates=[msgspec.to_builtins(r) for r in labour_rates],
            products=[msgspec.to_builtins(p) for p in products],
        )

    def set_material(self, material: Material, actor: Actor) -> Refusal | None:
        """Add a material or change its density, price per gram or minimum wall."""
        refusal = _staff_only(actor)
        if refusal is None and self.materials.get(material.code) != material:
            self._trigger(self.MaterialSet, actor, material=msgspec.to_builtins(material))
        return refusal

    def set_labour_rate(self, rate: LabourRate, actor: Actor) -> Refusal | None:
        """Add or change a labour rate."""
        refusal = _staff_only(actor)
        if refusal is None and self.labour_rates.get(rate.code) != rate:
            self._trigger(self.LabourRateSet, actor, rate=msgspec.to_builtins(rate))
        return refusal

    def set_product(self, product: Product, actor: Actor) -> Refusal | None:
        """List a ready-made product or change it."""
        refusal = _staff_only(actor)
        if refusal is None and product.material_code not in self.materials:
            refusal = Refusal(Refused.INVALID, f"unknown material {product.material_code!r}")
        if refusal is None and self.products.get(product.sku) != product:
            self._trigger(self.ProductSet, actor, product=msgspec.to_builtins(product))
        return refusal

    def remove_product(self, sku: str, actor: Actor) -> Refusal | None:
        """Take a ready-made product off the catalog."""
        refusal = _staff_only(actor)
        if refusal is None and sku not in self.products:
            refusal = Refusal(Refused.NOT_FOUND, f"no product {sku!r}")
        if refusal is None:
            self._trigger(self.ProductRemoved, actor, sku=sku)
        return refusal

    def _trigger(self, event_class: type[Event], actor: Actor, **fields: Any) -> None:
        self.trigger_event(event_class, actor_role=actor.role.value, actor_id=actor.subject, **fields)


def _staff_only(actor: Actor) -> Refusal | None:
    if actor.role in SELLERS:
        return None
    return Refusal(Refused.FORBIDDEN, "only sellers and admins change the catalog")


DEFAULT_MATERIALS = [
    Material(code="AU585", name="Gold 585 (14k)", density_g_cm3=13.0, price_per_gram_minor=6800),
    Material(code="AU750", name="Gold 750 (18k)", density_g_cm3=15.5, price_per_gram_minor=8700),
    Material(code="AU750W", name="White gold 750 (18k)", density_g_cm3=15.9, price_per_gram_minor=8900),
    Material(
        code="AG925",
        name="Sterling silver 925",
        density_g_cm3=10.4,
        price_per_gram_minor=160,
        casting_loss_permille=80,
    ),
    Material(
        code="PT950",
        name="Platinum 950",
        density_g_cm3=20.7,
        price_per_gram_minor=5200,
        casting_loss_permille=70,
    ),
    Material(code="PD950", name="Palladium 950", density_g_cm3=11.9, price_per_gram_minor=4100),
]
DEFAULT_LABOUR = [
    LabourRate(code="FINISHING", name="Finishing and polishing", unit=LabourUnit.PER_CM2, amount_minor=90),
    LabourRate(code="CASTING", name="Casting", unit=LabourUnit.PER_PIECE, amount_minor=1500),
    LabourRate(
        code="SETUP", name="Order set-up and model check", unit=LabourUnit.PER_ORDER, amount_minor=2500
    ),
]
DEFAULT_PRODUCTS = [
    Product(sku="RING-SOLITAIRE-AU750", title="Solitaire ring", material_code="AU750", price_minor=129000),
    Product(sku="BAND-CLASSIC-AU585", title="Classic wedding band", material_code="AU585", price_minor=54000),
    Product(sku="PENDANT-DROP-AG925", title="Drop pendant", material_code="AG925", price_minor=8900),
    Product(sku="STUDS-ROUND-PT950", title="Round stud earrings", material_code="PT950", price_minor=76000),
]
