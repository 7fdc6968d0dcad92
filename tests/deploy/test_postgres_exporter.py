"""postgres_exporter's custom queries run on a real, migrated PostgreSQL and return what they declare."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.deploy.promql import exporter_queries


@pytest.mark.parametrize("name", sorted(exporter_queries()))
def test_custom_query_returns_its_declared_columns(database: str, name: str) -> None:
    spec: dict[str, Any] = exporter_queries()[name]
    declared = {column: usage["usage"] for metric in spec["metrics"] for column, usage in metric.items()}
    assert set(declared.values()) <= {"LABEL", "GAUGE", "COUNTER", "DISCARD"}
    with psycopg.connect(database, row_factory=dict_row) as conn:
        cursor = conn.execute(spec["query"])
        assert cursor.description is not None
        returned = [column.name for column in cursor.description]
        rows = cursor.fetchall()
    assert sorted(returned) == sorted(declared), "every column is declared, every declared column returned"
    for row in rows:
        for column, usage in declared.items():
            if usage in {"GAUGE", "COUNTER"}:
                assert isinstance(row[column], int | float | Decimal) or row[column] is None, (
                    column,
                    row[column],
                )


def test_table_and_index_sizes_cover_the_backbone_schemas(database: str) -> None:
    queries = exporter_queries()
    with psycopg.connect(database, row_factory=dict_row) as conn:
        tables = {(r["schemaname"], r["relname"]) for r in conn.execute(queries["pg_table"]["query"])}
        indexes = {r["schemaname"] for r in conn.execute(queries["pg_index"]["query"])}
    schemas = {schema for schema, _ in tables}
    assert {"crm", "mes", "shop", "relay", "blobs"} <= schemas, schemas
    assert ("mes", "orders") in tables
    assert "mes" in indexes
