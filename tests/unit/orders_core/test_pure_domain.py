"""The domain imports nothing of the edge: its modules load without any web, database, broker, logging or
tracing library (checked in a fresh interpreter, as this test process has loaded them all)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

DOMAIN = (
    "orders_core.lifecycle",
    "orders_core.actors",
    "orders_core.commands",
    "orders_core.outcomes",
    "orders_core.money",
    "orders_core.values",
    "orders_core.idempotency",
    "orders_core.numbers",
    "orders_core.order",
    "orders_core.catalog",
    "orders_core.webhooks",
    "orders_core.webhook_urls",
    "orders_core.webhook_messages",
    "orders_core.operators",
    "orders_core.audit",
    "orders_core.contracts",
    "pricing.quote",
    "pricing.geometry",
)
EDGE = (
    "litestar",
    "jwt",
    "psycopg",
    "psycopg_pool",
    "structlog",
    "aio_pika",
    "aiormq",
    "opentelemetry",
    "uvicorn",
)


@pytest.mark.parametrize("module", DOMAIN)
def test_a_domain_module_loads_no_edge_library(module: str) -> None:
    probe = (
        f"import json, sys, {module}; "
        f"print(json.dumps(sorted({{n.split('.')[0] for n in sys.modules}} & set({list(EDGE)!r}))))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(loaded.stdout) == [], f"{module} loads {loaded.stdout.strip()}"
