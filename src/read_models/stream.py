"""Live MES changes for Server-Sent Events: one listener per process, fanned out to every open stream.

On a primary the listener LISTENs on the channel the MES projector NOTIFYs with each batch. A hot standby
takes no LISTEN (and replays no NOTIFY): there it follows the view instead, reading the orders whose
position has passed the one it last saw, in one snapshot with the view's own position, and says the same.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import psycopg
import structlog
from litestar.response import ServerSentEventMessage
from psycopg import sql

from orders_core.contracts import MES_ANNOUNCED, MES_CHANGES_CHANNEL

log = structlog.get_logger("mes_stream")
KEEP_ALIVE_SECONDS = 15.0
FOLLOW_SECONDS = 0.2
"""How often the listener on a standby looks for changed orders (an indexed read of nothing, most times)."""
FOLLOW_LIMIT = 100
"""Changed orders one event names at most when following; beyond, it says `truncated` (reload)."""
CHANGED_SINCE = sql.SQL("""
    SELECT t.notification_id AS head, o.order_id::text, o.number, o.status, o.operator_id, o.version
    FROM mes.tracking AS t
    LEFT JOIN LATERAL (
        SELECT * FROM mes.orders AS o
        WHERE o.position > %(seen)s AND o.position <= t.notification_id
        ORDER BY o.position LIMIT %(limit)s
    ) AS o ON true
    WHERE t.application_name = 'orders'
""")


class ChangeFeed:
    """Listens on the MES projection's channel and hands each payload to every subscriber."""

    def __init__(self, dsn: str, queue_size: int = 1000) -> None:
        self.dsn = dsn
        self.queue_size = queue_size
        self.subscribers: set[asyncio.Queue[str]] = set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Begin listening (a background task that reconnects after database failures)."""
        self._task = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
                    standby = await (await conn.execute("SELECT pg_is_in_recovery()")).fetchone()
                    if standby and standby[0]:
                        await self._follow(conn)
                    else:
                        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(MES_CHANGES_CHANNEL)))
                        async for notice in conn.notifies():
                            self._publish(notice.payload)
            except psycopg.Error as e:
                log.warning("change feed lost its database, reconnecting", error=str(e))
                await asyncio.sleep(1.0)

    async def _follow(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """On a standby: publish the orders the view changes, as the projector's NOTIFY would."""
        seen: int | None = None
        while True:
            cursor = await conn.execute(CHANGED_SINCE, {"seen": seen or 0, "limit": FOLLOW_LIMIT + 1})
            rows = await cursor.fetchall()
            head = int(rows[0][0]) if rows else 0
            if seen is not None and head > seen:
                orders = [
                    dict(zip(MES_ANNOUNCED, row[1:], strict=True)) for row in rows[:FOLLOW_LIMIT] if row[1]
                ]
                truncated = len(rows) > FOLLOW_LIMIT
                self._publish(
                    msgspec.json.encode(
                        {"position": head, "orders": [] if truncated else orders, "truncated": truncated}
                    ).decode()
                )
            if seen is None or head > seen:
                seen = head
            await asyncio.sleep(FOLLOW_SECONDS)

    def _publish(self, payload: str) -> None:
        for queue in list(self.subscribers):
            if queue.full():
                # A reader that cannot keep up gets told to reload instead of an ever-growing backlog.
                queue.get_nowait()
                payload = '{"position": 0, "orders": [], "truncated": true}'
            queue.put_nowait(payload)

    async def messages(self) -> AsyncIterator[ServerSentEventMessage]:
        """The SSE messages of one client: every change from now on, with keep-alive comments between."""
        queue: asyncio.Queue[str] = asyncio.Queue(self.queue_size)
        self.subscribers.add(queue)
        try:
            yield ServerSentEventMessage(event="ready", data="{}")
            while True:
                try:
                    payload = await asyncio.wait_for(queue.get(), KEEP_ALIVE_SECONDS)
                except TimeoutError:
                    yield ServerSentEventMessage(comment="keep-alive")
                    continue
                yield ServerSentEventMessage(event="change", data=payload)
        finally:
            self.subscribers.discard(queue)
