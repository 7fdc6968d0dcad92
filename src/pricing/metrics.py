"""Pricing metrics: how long quotes take by mesh size, and how they end."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

QUOTE_SECONDS = Histogram(
    "backbone_pricing_duration_seconds",
    "Wall time of one quote, from fetching the model to the result",
    ["mesh_size"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RESULTS = Counter("backbone_pricing_results_total", "Pricing results by outcome", ["outcome", "reason"])
IN_PROGRESS = Gauge(
    "backbone_pricing_in_progress",
    "Pricing requests this worker is handling now (taken, not yet acked); a stopping worker finishes them",
)
POISON = Counter("backbone_pricing_poison_total", "Pricing requests rejected as undecodable (dead-lettered)")


def mesh_size(triangles: int | None) -> str:
    """The bucket label of a mesh: <10k, <100k, <1M, >=1M triangles, or unknown."""
    if triangles is None:
        return "unknown"
    for limit, label in ((10_000, "<10k"), (100_000, "<100k"), (1_000_000, "<1M")):
        if triangles < limit:
            return label
    return ">=1M"


PREVIEWS = Counter(
    "backbone_pricing_previews_total",
    "Model previews by outcome: made, skipped (no time left within the quote's limit) or failed",
    ["outcome"],
)
