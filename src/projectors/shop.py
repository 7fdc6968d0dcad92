"""The shop projection: the catalog as the shop shows it, and each customer's and partner's orders."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import Cursor, sql
from psycopg.rows import DictRow

from orders_core.contracts import Change
from projectors.order_rows import ORDER_COLUMNS as FOLD_COLUMNS
from projectors.order_rows import OrderRow, fold_order
from projectors.tables import mark_order_parked, upsert_rows

ORDER_COLUMNS = (
    "order_id", "owner_id", "number", "channel", "status", "version", "position", "item_title",
    "contact_name", "material_code", "quantity", "created_at", "updated_at", "promised_date",
    "model_filename", "triangle_count", "quote_total_minor", "currency", "quote", "carrier",
    "tracking_number", "rejection_reason", "cancellation_reason", "status_times", "held_since",
    "hold_reason", "preview_sha256",
)  # fmt: skip
JSON_COLUMNS = frozenset({"quote", "status_times"})
CATALOG_TABLES = {
    "materials": ("code", ("code", "name", "density_g_cm3", "price_per_gram_minor", "casting_loss_permille")),
    "labour_rates": ("code", ("code", "name", "unit", "amount_minor")),
    "products": ("sku", ("sku", "title", "material_code", "price_minor", "description")),
}


class ShopProjector:
    """Folds order events into shop.orders and catalog events into shop.materials/labour_rates/products."""

    name = "shop"

    def __init__(self) -> None:
        self._rows: dict[str, OrderRow] = {}

    def forget(self) -> None:
        self._rows.clear()

    def mark_parked(
        self, cursor: Cursor[DictRow], schema: str, aggregate_id: str, reason: str | None
    ) -> None:
        """Show on the order's row that its events are parked (`reason`), or no longer are (None)."""
        mark_order_parked(cursor, schema, aggregate_id, reason)

    def apply(self, cursor: Cursor[DictRow], schema: str, changes: Sequence[Change]) -> None:
        touched: dict[str, OrderRow] = {}
        for change in changes:
            if change.event.aggregate == "catalog":
                _apply_catalog(cursor, schema, change)
                continue
            row = self._rows.get(change.aggregate_id) or self._load(cursor, schema, change.aggregate_id)
            row = fold_order(row, change.event, change.aggregate_id, change.version, change.position)
            self._rows[change.aggregate_id] = touched[change.aggregate_id] = row
        if touched:
            upsert_rows(
                cursor, schema, "orders", ORDER_COLUMNS, ("order_id",), touched.values(), JSON_COLUMNS
            )
        if len(self._rows) > 200_000:
            self._rows.clear()

    def _load(self, cursor: Cursor[DictRow], schema: str, order_id: str) -> OrderRow | None:
        query = sql.SQL("SELECT to_json(o) AS row FROM {} AS o WHERE order_id = %s").format(
            sql.Identifier(schema, "orders")
        )
        record = cursor.execute(query, (order_id,)).fetchone()
        if record is None:
            return None
        # The shop keeps fewer columns than the fold produces; the rest start empty again.
        row: OrderRow = fold_defaults()
        row.update({c: record["row"][c] for c in ORDER_COLUMNS})
        return row


def fold_defaults() -> OrderRow:
    """A row with every column the fold writes, all empty."""
    return dict.fromkeys(FOLD_COLUMNS)


def _apply_catalog(cursor: Cursor[DictRow], schema: str, change: Change) -> None:
    f = change.event.fields
    name = change.event.name
    if name == "CatalogSeeded":
        for table in CATALOG_TABLES:
            cursor.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(schema, table)))
        _upsert(cursor, schema, "materials", f["materials"])
        _upsert(cursor, schema, "labour_rates", f["labour_rates"])
        _upsert(cursor, schema, "products", f["products"])
    elif name == "MaterialSet":
        _upsert(cursor, schema, "materials", [f["material"]])
    elif name == "LabourRateSet":
        _upsert(cursor, schema, "labour_rates", [f["rate"]])
    elif name == "ProductSet":
        _upsert(cursor, schema, "products", [f["product"]])
    elif name == "ProductRemoved":
        cursor.execute(
            sql.SQL("DELETE FROM {} WHERE sku = %s").format(sql.Identifier(schema, "products")), (f["sku"],)
        )
    currency = f.get("currency")
    cursor.execute(
        sql.SQL(
            "INSERT INTO {} (id, version, currency) VALUES (1, %s, coalesce(%s, 'EUR')) "
            "ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, "
            "currency = coalesce(%s, {}.currency)"
        ).format(sql.Identifier(schema, "catalog"), sql.Identifier(schema, "catalog")),
        (change.version, currency, currency),
    )


def _upsert(cursor: Cursor[DictRow], schema: str, table: str, items: list[dict[str, Any]]) -> None:
    key, columns = CATALOG_TABLES[table]
    rows = [{c: item.get(c, "") if c == "description" else item.get(c) for c in columns} for item in items]
    upsert_rows(cursor, schema, table, columns, (key,), rows)
