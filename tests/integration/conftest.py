"""Fixtures of the integration tests: the application on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from backbone.database import eventsourcing_env
from orders_core.application import OrdersApplication


@pytest.fixture
def replicas(database: str) -> Iterator[tuple[OrdersApplication, OrdersApplication]]:
    """Two application instances on one store, as two API replicas would be."""
    first = OrdersApplication(env=eventsourcing_env(database, pool_size=4))
    second = OrdersApplication(env=eventsourcing_env(database, pool_size=4))
    yield first, second
    first.close()
    second.close()
