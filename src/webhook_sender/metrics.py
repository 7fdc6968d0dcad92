"""Webhook delivery metrics: outcomes, attempts, how long messages take and wait, per endpoint where it
matters to the person on call (an endpoint that stopped receiving)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DELIVERIES = Counter(
    "backbone_webhook_deliveries_total",
    "Messages that reached an end: delivered (2xx), failed (retries spent, 410, endpoint disabled) "
    "or dropped (endpoint deleted)",
    ["outcome"],
)
ATTEMPTS = Counter(
    "backbone_webhook_attempts_total",
    "Delivery attempts by result: 2xx, 3xx, 4xx, 5xx, timeout, connection (no answer) or refused (the "
    "endpoint's address is not allowed)",
    ["result"],
)
ATTEMPT_SECONDS = Histogram(
    "backbone_webhook_attempt_seconds",
    "Time from sending a message to its answer (or to giving up on one)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DELIVERY_SECONDS = Histogram(
    "backbone_webhook_delivery_seconds",
    "Time from the order event's commit to the receiver's 2xx",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 5, 30, 300, 3600, 6 * 3600, 86400),
)
OLDEST_UNDELIVERED = Gauge(
    "backbone_webhook_oldest_undelivered_seconds",
    "Age of the oldest message still waiting to be delivered, per endpoint (absent when none waits)",
    ["endpoint_id", "partner_id"],
)
UNDELIVERED = Gauge("backbone_webhook_undelivered_messages", "Messages waiting to be delivered")
ACTIVE = Gauge("backbone_webhook_sender_active", "1 while this process is the active webhook sender")
DISABLED = Counter(
    "backbone_webhook_endpoints_disabled_total",
    "Endpoints the sender disabled (410 Gone, or failing for days)",
    ["reason"],
)

# Every label value exported from the start, at 0: a series that first appears at 1 shows no increase, so
# increase() and rate() (and the alerts on them, deploy/prometheus/alerts.yml) would miss the first one.
for _outcome in ("delivered", "failed", "dropped"):
    DELIVERIES.labels(_outcome)
for _result in ("2xx", "3xx", "4xx", "5xx", "timeout", "connection", "refused"):
    ATTEMPTS.labels(_result)
for _reason in ("gone", "failing"):
    DISABLED.labels(_reason)
