"""Live MES changes for Server-Sent Events: one LISTEN per process, fanned out to every open stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import psycopg
import structlog
from litestar.response import ServerSentEventMessage
from psycopg import sql

from orders_core.contracts import MES_CHANGES_CHANNEL

log = structlog.get_logger("mes_stream")
KEEP_ALIVE_SECONDS = 15.0


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
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(MES_CHANGES_CHANNEL)))
                    async for notice in conn.notifies():
                        self._publish(notice.payload)
            except psycopg.Error as e:
                log.warning("change feed lost its database, reconnecting", error=str(e))
                await asyncio.sleep(1.0)

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
