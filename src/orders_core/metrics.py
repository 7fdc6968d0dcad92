"""Command-side metrics: commands by outcome, their latency, appends, relay and results consumer."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)

COMMANDS = Counter("backbone_commands_total", "Commands handled, by name and outcome", ["command", "outcome"])
COMMAND_SECONDS = Histogram(
    "backbone_command_duration_seconds", "Time to decide and append", ["command"], buckets=FAST
)
APPEND_SECONDS = Histogram(
    "backbone_append_duration_seconds", "Time to append one aggregate's events", buckets=FAST
)
CONFLICTS = Counter("backbone_command_conflicts_total", "Appends that lost an optimistic-concurrency race")
PUBLISHED = Counter(
    "backbone_relay_published_total", "Integration messages confirmed by the broker", ["routing_key"]
)
RESULTS_APPLIED = Counter("backbone_results_total", "Pricing results consumed, by effect", ["effect"])
QUEUE_DEPTH = Gauge("backbone_queue_depth", "Messages ready in a broker queue", ["queue"])
DEAD_LETTERS = Counter("backbone_dead_letters_total", "Messages sent to the dead-letter queue", ["queue"])

_command_children: dict[tuple[str, str], tuple[Any, Any]] = {}


def observe_command(command: str, outcome: str, seconds: float) -> None:
    """Count a command by outcome and observe its latency; the labelled children are kept, as `labels()`
    looks each up under the metric's lock on every call."""
    children = _command_children.get((command, outcome))
    if children is None:
        children = _command_children[command, outcome] = (
            COMMANDS.labels(command, outcome),
            COMMAND_SECONDS.labels(command),
        )
    children[0].inc()
    children[1].observe(seconds)
