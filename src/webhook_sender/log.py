"""The delivery log as partners read it, and replays: what the command API serves of the sender's tables.

Pages are newest first, by keyset: a page hands out `next_cursor`, the last row's place, and the next
page starts after it (a row added meanwhile shows on the first page, never twice).

A replay puts messages back to `pending`, due now, with their attempts counted from zero: the same message
(same `webhook-id`, same body) is sent again, so a receiver that kept it deduplicates, and one that lost it
gets it. Only the replay's own columns may be written by the API's role (migrations/0013_webhooks.sql).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from psycopg import Connection, sql
from psycopg.rows import DictRow
from psycopg_pool import ConnectionPool

from webhook_sender.outbox import CHANNEL

MAX_PAGE = 100


AttemptKey = tuple[int]
"""Where a page of attempts ends: the last attempt's id."""
MessageKey = tuple[datetime, str]
"""Where a page of messages ends: the last message's creation time and id."""


class BadCursor(ValueError):
    """A cursor this log did not hand out."""


@dataclass(frozen=True)
class Page:
    """Rows of the log, newest first, and the cursor of the next page (None on the last)."""

    rows: list[dict[str, Any]]
    next_cursor: str | None


def _cursor(*key: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(key)).decode().rstrip("=")


MALFORMED = "malformed cursor: pass back the next_cursor of a previous page"


def _read_cursor(cursor: str, kind: Any) -> Any:
    """The key a cursor holds, of the tuple type `kind`; BadCursor for anything this log did not hand out."""
    try:
        return msgspec.json.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)), type=kind)
    except (binascii.Error, msgspec.DecodeError, msgspec.ValidationError, ValueError) as e:
        raise BadCursor(MALFORMED) from e


class DeliveryLog:
    """Reads the sender's messages and attempts of one endpoint, and replays them."""

    def __init__(self, pool: ConnectionPool[Connection[DictRow]], schema: str = "webhooks") -> None:
        self.pool, self.schema = pool, schema

    def attempts(self, endpoint_id: UUID, limit: int, cursor: str | None = None) -> Page:
        """The endpoint's attempts, newest first, each with its message's order and event type."""
        after: int | None = _read_cursor(cursor, AttemptKey)[0] if cursor else None
        if after is not None and not 0 < after < 2**63:
            raise BadCursor(MALFORMED)
        query = sql.SQL(
            "SELECT a.attempt_id, a.message_id, m.order_id, m.event_type, a.attempted_at, a.status_code, "
            "a.latency_ms, a.error, a.outcome, a.next_attempt_at FROM {attempts} AS a "
            "JOIN {messages} AS m USING (message_id) WHERE a.endpoint_id = %(endpoint)s "
            "AND (%(after)s::bigint IS NULL OR a.attempt_id < %(after)s) "
            "ORDER BY a.attempt_id DESC LIMIT %(limit)s"
        ).format(attempts=self._table("attempts"), messages=self._table("messages"))
        rows = self._rows(query, {"endpoint": endpoint_id, "after": after, "limit": limit + 1})
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(rows, _cursor(rows[-1]["attempt_id"]) if more else None)

    def messages(
        self, endpoint_id: UUID, limit: int, status: str | None = None, cursor: str | None = None
    ) -> Page:
        """The endpoint's messages, newest first, with where each stands."""
        after: tuple[datetime | None, str | None] = (None, None)
        if cursor:
            after = _read_cursor(cursor, MessageKey)
        query = sql.SQL(
            "SELECT message_id, order_id, order_version, event_type, status, attempts, occurred_at, "
            "created_at, next_attempt_at, last_attempt_at, last_status_code, last_error, delivered_at, "
            "replayed_at FROM {} WHERE endpoint_id = %(endpoint)s "
            "AND (%(status)s::text IS NULL OR status = %(status)s) "
            "AND (%(at)s::timestamptz IS NULL OR (created_at, message_id) < (%(at)s, %(id)s)) "
            "ORDER BY created_at DESC, message_id DESC LIMIT %(limit)s"
        ).format(self._table("messages"))
        rows = self._rows(
            query,
            {"endpoint": endpoint_id, "status": status, "at": after[0], "id": after[1], "limit": limit + 1},
        )
        more = len(rows) > limit
        rows = rows[:limit]
        if not more:
            return Page(rows, None)
        return Page(rows, _cursor(rows[-1]["created_at"].isoformat(), rows[-1]["message_id"]))

    def replay(self, endpoint_id: UUID, message_id: str) -> str | None:
        """Send one message again; its status before the replay (`pending`: it is on its way already, and
        left as it is), or None if the endpoint has no such message."""
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute(
                sql.SQL("SELECT status FROM {} WHERE message_id = %s AND endpoint_id = %s FOR UPDATE").format(
                    self._table("messages")
                ),
                (message_id, endpoint_id),
            ).fetchone()
            if row is None:
                return None
            if row["status"] != "pending":
                self._reset(conn, "message_id = %(id)s", {"id": message_id})
            status: str = row["status"]
            return status

    def replay_since(self, endpoint_id: UUID, since: datetime, only_failed: bool) -> int:
        """Send again every message of the endpoint created at or after `since` that is not on its way
        (only those given up, if `only_failed`); how many."""
        with self.pool.connection() as conn, conn.transaction():
            return self._reset(
                conn,
                "endpoint_id = %(endpoint)s AND created_at >= %(since)s AND status <> 'pending' "
                "AND (NOT %(only_failed)s OR status = 'failed')",
                {"endpoint": endpoint_id, "since": since, "only_failed": only_failed},
            )

    def _reset(self, conn: Connection[DictRow], where: str, params: dict[str, Any]) -> int:
        cursor = conn.execute(
            sql.SQL(
                "UPDATE {} SET status = 'pending', attempts = 0, next_attempt_at = now(), "
                "replayed_at = now() WHERE {}"
            ).format(self._table("messages"), sql.SQL(where)),
            params,
        )
        if cursor.rowcount:
            conn.execute(sql.SQL("NOTIFY {}").format(sql.Identifier(CHANNEL)))
        return cursor.rowcount

    def _rows(self, query: sql.Composed, params: dict[str, Any]) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return list(conn.execute(query, params).fetchall())

    def _table(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)
