"""The shop's queries: its catalog and a customer's or partner's own orders, from schema shop only."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg import Connection
from psycopg.rows import DictRow

ORDER_FIELDS = (
    "order_id, owner_id, number, channel, status, version, position, item_title, contact_name, "
    "material_code, quantity, created_at, updated_at, promised_date, model_filename, triangle_count, "
    "quote_total_minor, "
    "currency, quote, carrier, tracking_number, rejection_reason, cancellation_reason, status_times, "
    "held_since, hold_reason, "
    "parked_since, CASE WHEN parked_since IS NOT NULL THEN %(stale)s END AS parked_reason, preview_sha256"
)
"""parked_since: set while the order's events are parked (the row is stale since then). The shop says so in
words for its customers; the error itself is for staff (the MES view, `backbone projections parked`)."""
STALE = "An update of this order cannot be shown yet; our team has been told and is on it."


def catalog(conn: Connection[DictRow]) -> dict[str, Any]:
    """Materials with today's price per gram and ready-made products, as the shop shows them."""
    head = conn.execute("SELECT version, currency FROM shop.catalog WHERE id = 1").fetchone()
    materials = conn.execute(
        "SELECT code, name, density_g_cm3, price_per_gram_minor FROM shop.materials ORDER BY code"
    ).fetchall()
    products = conn.execute(
        "SELECT sku, title, material_code, price_minor, description FROM shop.products ORDER BY sku"
    ).fetchall()
    return {
        "version": head["version"] if head else 0,
        "currency": head["currency"] if head else None,
        "materials": [dict(m) for m in materials],
        "products": [dict(p) for p in products],
    }


def orders_of(
    conn: Connection[DictRow], owner_id: str, limit: int, before: tuple[str, str] | None
) -> list[dict[str, Any]]:
    """An owner's orders, newest first; `before` is the (created_at, order_id) of the last one seen."""
    after = "AND (created_at, order_id) < (%(at)s::timestamptz, %(id)s::uuid) " if before else ""
    rows = conn.execute(
        f"SELECT {ORDER_FIELDS}, created_at::text AS sort_key FROM shop.orders "  # noqa: S608
        f"WHERE owner_id = %(owner)s {after}ORDER BY created_at DESC, order_id DESC LIMIT %(limit)s",
        {
            "stale": STALE,
            "owner": owner_id,
            "limit": limit,
            "at": before and before[0],
            "id": before and before[1],
        },
    ).fetchall()
    return [dict(r) for r in rows]


def preview_of(conn: Connection[DictRow], order_id: UUID) -> tuple[str, str | None] | None:
    """The order's owner and its preview's sha256 (None: no preview yet), or None for no such order."""
    row = conn.execute(
        "SELECT owner_id, preview_sha256 FROM shop.orders WHERE order_id = %s", (order_id,)
    ).fetchone()
    return (row["owner_id"], row["preview_sha256"]) if row else None


def order(conn: Connection[DictRow], order_id: UUID) -> dict[str, Any] | None:
    """One order of the shop's view, or None."""
    row = conn.execute(
        f"SELECT {ORDER_FIELDS} FROM shop.orders WHERE order_id = %(id)s",  # noqa: S608
        {"stale": STALE, "id": order_id},
    ).fetchone()
    return dict(row) if row else None
