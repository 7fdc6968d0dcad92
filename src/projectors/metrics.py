"""Projection metrics: where each projection stands, how far behind it is, how fast batches go."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

POSITION = Gauge("backbone_projection_position", "Last event store position applied", ["projection"])
LAG_EVENTS = Gauge("backbone_projection_lag_events", "Events stored but not yet applied", ["projection"])
LAG_SECONDS = Gauge(
    "backbone_projection_lag_seconds",
    "Age of the oldest event not yet applied (0 when caught up)",
    ["projection"],
)
EVENTS = Counter("backbone_projection_events_total", "Events applied", ["projection"])
BATCH_SECONDS = Histogram(
    "backbone_projection_batch_seconds",
    "Time to apply and commit one batch",
    ["projection"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
FAILURES = Counter(
    "backbone_projection_failures_total", "Batches that failed and were retried", ["projection"]
)
ACTIVE = Gauge(
    "backbone_projection_active", "1 while this process is the projection's active runner", ["projection"]
)
STAY_BUCKETS = (1, 10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400, 21 * 86400)
STATUS_SECONDS = Histogram(
    "backbone_order_status_seconds",
    "Time orders spent in a status, not on hold, observed when they leave it (or are put on hold)",
    ["status"],
    buckets=STAY_BUCKETS,
)
HELD_SECONDS = Histogram(
    "backbone_order_held_seconds",
    "Time orders spent on hold in a status, observed when they are released (or cancelled)",
    ["status"],
    buckets=STAY_BUCKETS,
)
PARKED = Gauge(
    "backbone_projection_parked_aggregates",
    "Aggregates whose events the projection holds back since one of them could not be applied",
    ["projection"],
)
PARKED_EVENTS = Counter(
    "backbone_projection_parked_events_total",
    "Events parked (the failing ones and those behind them)",
    ["projection"],
)
SKIPPED = Counter(
    "backbone_projection_skipped_events_total",
    "Events of a type the projection does not know, skipped by design",
    ["projection"],
)
LAST_SUCCESS = Gauge(
    "backbone_projection_last_success_timestamp_seconds",
    "When the projection last caught up with the event store without an error (Unix time)",
    ["projection"],
)
