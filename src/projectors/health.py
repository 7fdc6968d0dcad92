"""How each projection stands: position against the store's head, parked aggregates, failing or not.

Read from the database, not from a runner's memory, so every reader (the read API's /health, the command
line, the audit, the runner's own metrics) tells the same story, also while the runner is failing or gone.
One function, `monitor.projection_health` (migrations/0011), reads it all: the read API's role may call it
without the right to read the events or the relay's tables.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg import Connection
from psycopg.rows import tuple_row

PROJECTION_SCHEMAS = ("mes", "shop", "relay", "webhooks")
"""Every projection that follows the event store, by the schema its tracking lives in."""

BEHIND_SECONDS = 60.0
"""A projection whose oldest unapplied event is older than this is `behind` (the lag alerts fire later)."""


@dataclass(frozen=True)
class ProjectionHealth:
    """One projection as its tables and the store's head say it stands."""

    name: str
    state: str
    """`ok`, `parked` (some aggregates wait, the others flow), `behind` or `failing`: the worst that holds."""
    position: int
    head: int
    lag_events: int
    lag_seconds: float
    """Age of the oldest event the projection has not applied (0 when caught up)."""
    parked_aggregates: int
    last_success_at: datetime | None
    failing_since: datetime | None
    last_error: str | None

    def as_json(self) -> dict[str, Any]:
        """The fields as /health shows them (times in ISO 8601)."""
        fields = asdict(self)
        for key in ("last_success_at", "failing_since"):
            value = fields[key]
            fields[key] = value.isoformat() if value is not None else None
        fields["lag_seconds"] = round(self.lag_seconds, 3)
        return fields


def state_of(lag_seconds: float, parked: int, failing: bool, behind_seconds: float = BEHIND_SECONDS) -> str:
    """The worst of what holds: failing, then behind, then parked, else ok."""
    if failing:
        return "failing"
    if lag_seconds > behind_seconds:
        return "behind"
    if parked:
        return "parked"
    return "ok"


def projection_health(
    conn: Connection[Any], schema: str, now: datetime | None = None, behind_seconds: float = BEHIND_SECONDS
) -> ProjectionHealth:
    """How the projection tracked in `schema` stands now (read with one connection, in one statement)."""
    with conn.cursor(row_factory=tuple_row) as cursor:
        row = cursor.execute("SELECT * FROM monitor.projection_health(%s)", (schema,)).fetchone()
    assert row is not None  # the function returns one row
    position, head, first_after, parked, last_success, failing_since, last_error = row
    now = now or datetime.now(UTC)
    lag_events = max(head - position, 0)
    lag_seconds = max((now - first_after).total_seconds(), 0.0) if first_after and lag_events else 0.0
    failing = failing_since is not None
    return ProjectionHealth(
        name=schema,
        state=state_of(lag_seconds, parked, failing, behind_seconds),
        position=position,
        head=head,
        lag_events=lag_events,
        lag_seconds=lag_seconds,
        parked_aggregates=parked,
        last_success_at=last_success,
        failing_since=failing_since,
        last_error=last_error if failing else None,
    )


def every_projection(
    conn: Connection[Any], schemas: tuple[str, ...] = PROJECTION_SCHEMAS
) -> list[ProjectionHealth]:
    """The health of every projection."""
    return [projection_health(conn, schema) for schema in schemas]
