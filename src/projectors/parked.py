"""What a projection has parked, and asking its active runner to retry it (`backbone projections ...`).

A retry is carried out by the projection's active runner, not by whoever asks: it holds the projection's
cached state and, for the relay, the broker connection (with the in-process broker of `backbone up`, nothing
else could publish). The request is a mark on the parked rows; the runner looks for marks between batches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import Connection, sql
from psycopg.rows import tuple_row


@dataclass(frozen=True)
class Parked:
    """An aggregate whose events a projection holds back since one of them could not be applied."""

    aggregate_id: str
    first_position: int
    events: int
    since: datetime
    event_type: str
    """The type of the first parked event, the one that failed."""
    error: str
    retried_at: datetime | None
    retry_requested: bool


def parked_aggregates(conn: Connection[Any], schema: str, aggregate_id: str | None = None) -> list[Parked]:
    """The aggregates parked in `schema` (or just `aggregate_id`), the longest waiting first."""
    query = sql.SQL(
        "SELECT aggregate_id::text, min(position), count(*), min(parked_at), "
        "(array_agg(event_type ORDER BY position))[1], (array_agg(error ORDER BY position))[1], "
        "max(retried_at), bool_or(retry_requested_at IS NOT NULL) "
        "FROM {} WHERE %(id)s::uuid IS NULL OR aggregate_id = %(id)s::uuid "
        "GROUP BY aggregate_id ORDER BY min(position)"
    ).format(sql.Identifier(schema, "parked"))
    with conn.cursor(row_factory=tuple_row) as cursor:
        return [Parked(*row) for row in cursor.execute(query, {"id": aggregate_id})]


def request_retry(conn: Connection[Any], schema: str, aggregate_id: str | None = None) -> list[str]:
    """Mark the parked events of `aggregate_id` (None: of every parked aggregate) for the active runner to
    retry; returns the aggregates marked."""
    query = sql.SQL(
        "UPDATE {} SET retry_requested_at = now() WHERE %(id)s::uuid IS NULL OR aggregate_id = %(id)s::uuid "
        "RETURNING aggregate_id::text"
    ).format(sql.Identifier(schema, "parked"))
    with conn.cursor(row_factory=tuple_row) as cursor:
        marked = {row[0] for row in cursor.execute(query, {"id": aggregate_id})}
    conn.commit()
    return sorted(marked)


def await_retries(
    conn: Connection[Any], schema: str, aggregates: list[str], timeout: float, poll: float = 0.2
) -> dict[str, Parked | None]:
    """Wait until the runner has retried each of `aggregates`: None for one it unparked, else how it stands
    (still marked when the runner has not come to it within `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        outcome: dict[str, Parked | None] = dict.fromkeys(aggregates)
        for parked in parked_aggregates(conn, schema):
            if parked.aggregate_id in outcome:
                outcome[parked.aggregate_id] = parked
        conn.commit()  # a fresh snapshot on the next look
        pending = [p for p in outcome.values() if p is not None and p.retry_requested]
        if not pending or time.monotonic() > deadline:
            return outcome
        time.sleep(poll)
