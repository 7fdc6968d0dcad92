"""Gauges read from the MES view at scrape time: orders per status, stuck and overdue orders.

They are the numbers of the status board (`/mes/stats`), read by the same query (`order_counts`: orders per
status from mes.status_counts, which the MES projector keeps with the rows; stuck and overdue counted from
their partial indexes), so the console and the alerts never disagree, and a scrape costs milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator

import structlog
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector
from psycopg import Connection
from psycopg.rows import DictRow
from psycopg_pool import ConnectionPool

from read_models.mes import order_counts

log = structlog.get_logger("read_api")


class MesCollector(Collector):
    """Collects order counts from the MES view when Prometheus scrapes."""

    def __init__(self, pool: ConnectionPool[Connection[DictRow]]) -> None:
        self.pool = pool

    def collect(self) -> Iterator[GaugeMetricFamily]:
        per_status = GaugeMetricFamily(
            "backbone_orders", "Orders in each status (MES view)", labels=["status"]
        )
        stuck = GaugeMetricFamily("backbone_orders_stuck", "Orders past their status's time limit")
        overdue = GaugeMetricFamily("backbone_orders_overdue", "Orders past their promised date, not shipped")
        try:
            with self.pool.connection(timeout=2) as conn:
                counts = order_counts(conn)
        except Exception as e:  # a scrape must not fail because the read database is away
            log.warning("order gauges unavailable", error=repr(e))
            return
        for status, n in counts.per_status.items():
            per_status.add_metric([status], n)
        stuck.add_metric([], counts.stuck)
        overdue.add_metric([], counts.overdue)
        yield from (per_status, stuck, overdue)


_registered: list[MesCollector] = []


def register_mes_collector(pool: ConnectionPool[Connection[DictRow]]) -> None:
    """Register the collector once per process (the registry refuses duplicates)."""
    if _registered:
        _registered[0].pool = pool
        return
    collector = MesCollector(pool)
    REGISTRY.register(collector)
    _registered.append(collector)
