"""The delivery loop: POSTs the outbox's due messages, signed per Standard Webhooks, and records each
attempt and what follows it (orders_core/webhook_messages.py: `verdict`).

One sender is active across processes (a PostgreSQL advisory lock, as the projections have); others wait as
standbys. The active one runs up to `concurrency` deliveries at once, at most one per (endpoint, order):
a message is claimed only when no earlier message of its order to its endpoint is still pending, so one
order's messages reach an endpoint in order, and a receiver that is down holds back only its own orders.

A message stays `pending` in the table until an attempt's outcome is committed, so a sender killed
mid-delivery loses nothing: the next active sender sends it again, with the same `webhook-id`.

Before each attempt the endpoint's host is resolved and every address checked again (server-side request
forgery: a name may be pointed at a private address after registration), and the request goes to the
address that was checked, with the host name in the Host header and TLS's SNI; redirects are not followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import psycopg
import structlog
from psycopg import AsyncConnection, sql
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from orders_core.actors import Actor
from orders_core.application import OrdersApplication
from orders_core.lifecycle import Role
from orders_core.resolver import Resolve, system_resolve
from orders_core.webhook_messages import (
    ATTEMPT_SECONDS,
    DISABLE_AFTER,
    ENDPOINT_DELETED,
    ENDPOINT_DISABLED,
    RETRY_SCHEDULE,
    Outcome,
    Verdict,
    signed_headers,
    verdict,
)
from orders_core.webhook_urls import WebhookUrl, destination_refusal, parse_webhook_url
from orders_core.webhooks import WebhookEndpoint, signing_secrets
from projectors.runner import LockLost, lock_key
from webhook_sender import metrics
from webhook_sender.outbox import CHANNEL

log = structlog.get_logger("webhooks")

SENDER = Actor(Role.SERVICE, "webhook-sender")
LOCK = lock_key("webhook-delivery")
REST_SECONDS = 5.0
"""How long a message whose delivery could not be recorded waits before it is claimed again."""
POLL_SECONDS = 5.0
"""The longest the loop sleeps without a NOTIFY, a finished delivery or a retry falling due."""


@dataclass(frozen=True)
class DeliveryConfig:
    """How the sender delivers (Settings' WEBHOOK_* values)."""

    attempt_seconds: float = ATTEMPT_SECONDS
    schedule: tuple[timedelta, ...] = RETRY_SCHEDULE
    disable_after: timedelta = DISABLE_AFTER
    concurrency: int = 32
    allow_private: bool = False


@dataclass(frozen=True)
class Due:
    """A message claimed for an attempt."""

    message_id: str
    partner_id: str
    endpoint_id: UUID
    order_id: UUID
    body: str
    occurred_at: datetime
    attempts: int


@dataclass(frozen=True)
class Answer:
    """What one attempt got: a status code, or why there was none."""

    status_code: int | None
    error: str | None
    result: str
    """The attempts metric's label: 2xx, 3xx, 4xx, 5xx, timeout, connection or refused."""


CLAIM = """
SELECT m.message_id, m.partner_id, m.endpoint_id, m.order_id, m.body, m.occurred_at, m.attempts
FROM {messages} AS m
WHERE m.status = 'pending' AND m.next_attempt_at <= now() AND m.message_id <> ALL(%(busy)s)
  AND NOT EXISTS (
    SELECT 1 FROM {messages} AS e
    WHERE e.status = 'pending' AND e.endpoint_id = m.endpoint_id AND e.order_id = m.order_id
      AND e.order_version < m.order_version)
ORDER BY m.next_attempt_at
LIMIT %(limit)s
"""


class Sender:
    """Delivers the outbox's messages while it holds the sender's lock (see the module's description)."""

    def __init__(
        self,
        dsn: str,
        orders: OrdersApplication,
        config: DeliveryConfig,
        resolve: Resolve = system_resolve,
        schema: str = "webhooks",
    ) -> None:
        self.dsn, self.orders, self.config, self.resolve = dsn, orders, config, resolve
        self.schema = schema
        self._busy: dict[str, asyncio.Task[None]] = {}
        self._resting: dict[str, float] = {}
        """Messages whose last delivery was not recorded, and until when (monotonic) they are not claimed."""
        self._failing: set[UUID] = set()
        """Endpoints whose last recorded attempt failed (as this process saw them)."""
        self._success_noted: dict[UUID, float] = {}
        """When a 2xx of each endpoint was last written to its health (monotonic seconds)."""

    def table(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)

    async def run(self, stop: asyncio.Event, standby_poll: float = 0.5) -> None:
        """Wait to become the active sender, then deliver until `stop` is set."""
        while not stop.is_set():
            try:
                await self._run_once(stop, standby_poll)
            except Exception as e:
                # The database went away (and the lock with it): try again, as active sender or standby.
                log.warning("webhook sender lost its connection, retrying", error=repr(e))
                metrics.ACTIVE.set(0)
                await _wait(stop, 2.0)
            finally:
                await self._cancel_busy()

    async def _run_once(self, stop: asyncio.Event, standby_poll: float) -> None:
        label = f"webhook sender pid {os.getpid()}"
        async with await AsyncConnection.connect(self.dsn, autocommit=True, application_name=label) as lock:
            # A standby keeps its connection and asks again on it, rather than connecting twice a second.
            while True:
                row = await (await lock.execute("SELECT pg_try_advisory_lock(%s)", (LOCK,))).fetchone()
                if row and row[0]:
                    break
                await _wait(stop, standby_poll)
                if stop.is_set():
                    return
            log.info("webhook sender active", host=socket.gethostname(), pid=os.getpid())
            metrics.ACTIVE.set(1)
            try:
                await self._deliver_while_active(stop, lock)
            finally:
                metrics.ACTIVE.set(0)

    async def _deliver_while_active(self, stop: asyncio.Event, lock: AsyncConnection[Any]) -> None:
        wake = asyncio.Event()
        pool = AsyncConnectionPool(
            self.dsn, min_size=1, max_size=8, kwargs={"row_factory": dict_row, "autocommit": True}, open=False
        )
        await pool.open()
        limits = httpx.Limits(max_connections=self.config.concurrency, max_keepalive_connections=64)
        client = httpx.AsyncClient(
            follow_redirects=False,
            limits=limits,
            timeout=self.config.attempt_seconds,
            trust_env=False,  # a proxy from the environment would connect where the check never looked
        )
        listener = asyncio.create_task(self._listen(wake))
        reporter = asyncio.create_task(self._report(pool, stop))
        checked = time.monotonic()
        try:
            while not stop.is_set():
                if listener.done():
                    listener.result()  # the listening connection failed: a fault, start over
                if time.monotonic() - checked > 1.0:
                    await _check_lock(lock)
                    checked = time.monotonic()
                wake.clear()
                free = self.config.concurrency - len(self._busy)
                if free > 0:
                    for due in await self._claim(pool, free):
                        self._busy[due.message_id] = asyncio.create_task(self._deliver(pool, client, due))
                timeout = await self._next_due_in(pool)
                waiters = {
                    asyncio.create_task(wake.wait()),
                    asyncio.create_task(stop.wait()),
                }
                await asyncio.wait(
                    waiters | set(self._busy.values()), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                for waiter in waiters:
                    waiter.cancel()
                self._collect()
        finally:
            listener.cancel()
            reporter.cancel()
            await self._finish_busy()
            await client.aclose()
            await pool.close()

    async def _listen(self, wake: asyncio.Event) -> None:
        async with await AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
            async for _ in conn.notifies():
                wake.set()

    async def _claim(self, pool: AsyncConnectionPool[Any], limit: int) -> list[Due]:
        query = sql.SQL(CLAIM).format(messages=self.table("messages"))
        async with pool.connection() as conn:
            now = time.monotonic()
            self._resting = {m: until for m, until in self._resting.items() if until > now}
            skipped = [*self._busy, *self._resting]
            cursor = await conn.execute(query, {"busy": skipped, "limit": limit})
            return [Due(**row) for row in await cursor.fetchall()]

    async def _next_due_in(self, pool: AsyncConnectionPool[Any]) -> float:
        """Seconds until the next retry falls due (a due message is either claimed or waits behind one
        under way, whose end wakes the loop), at most POLL_SECONDS."""
        query = sql.SQL(
            "SELECT extract(epoch FROM min(next_attempt_at) - now()) AS wait FROM {} "
            "WHERE status = 'pending' AND next_attempt_at > now()"
        ).format(self.table("messages"))
        async with pool.connection() as conn:
            row = await (await conn.execute(query)).fetchone()
        wait = row["wait"] if row else None
        return POLL_SECONDS if wait is None else min(max(float(wait), 0.01), POLL_SECONDS)

    def _collect(self) -> None:
        for message_id, task in list(self._busy.items()):
            if task.done():
                del self._busy[message_id]
                if not task.cancelled() and task.exception() is not None:
                    # Not recorded (the database was away, or a fault): the message is still pending. It
                    # waits a few seconds before it is claimed again, so a fault that repeats does not
                    # spin the loop (and the receiver) on it.
                    self._resting[message_id] = time.monotonic() + REST_SECONDS
                    error = repr(task.exception())
                    log.warning("webhook delivery not recorded", message_id=message_id, error=error)

    async def _finish_busy(self, seconds: float = 5.0) -> None:
        """Let the deliveries under way record their outcome (a stopping sender), then cancel the rest:
        they stay pending and are sent again by whoever is active next."""
        if self._busy:
            await asyncio.wait(set(self._busy.values()), timeout=seconds)
        await self._cancel_busy()

    async def _cancel_busy(self) -> None:
        for task in self._busy.values():
            task.cancel()
        await asyncio.gather(*self._busy.values(), return_exceptions=True)
        self._busy.clear()

    async def _deliver(self, pool: AsyncConnectionPool[Any], client: httpx.AsyncClient, due: Due) -> None:
        endpoint = await self._endpoint(due.partner_id, due.endpoint_id)
        if endpoint is None or not endpoint.enabled:
            why = ENDPOINT_DELETED if endpoint is None else ENDPOINT_DISABLED
            # A deleted endpoint's messages wait for nobody (its log is gone with it): dropped, not failed.
            status = "dropped" if endpoint is None else Outcome.FAILED.value
            await self._record(pool, due, Answer(None, why, "refused"), 0, given_up=status)
            return
        started = time.perf_counter()
        answer = await self._post(client, endpoint, due)
        await self._record(pool, due, answer, time.perf_counter() - started, given_up=None)

    async def _endpoint(self, partner_id: str, endpoint_id: UUID) -> WebhookEndpoint | None:
        """The endpoint as the store holds it now: a secret rotated or an endpoint disabled a moment ago
        counts for this attempt. (The application's aggregate cache makes this one read of the events
        since the last one, usually none.)"""
        webhooks = await asyncio.to_thread(self.orders.webhooks, partner_id)
        return webhooks.endpoints.get(endpoint_id) if webhooks is not None else None

    async def _post(self, client: httpx.AsyncClient, endpoint: WebhookEndpoint, due: Due) -> Answer:
        target = parse_webhook_url(endpoint.url)
        if isinstance(target, str):
            return Answer(None, target, "refused")
        addresses = await self.resolve(target.host, target.port)
        refusal = (
            addresses
            if isinstance(addresses, str)
            else destination_refusal(target, addresses, allow_private=self.config.allow_private)
        )
        if refusal is not None or isinstance(addresses, str):
            return Answer(None, refusal, "refused")
        now = datetime.now(UTC)
        headers = signed_headers(signing_secrets(endpoint, now), due.message_id, now, due.body)
        request = pinned_request(client, target, str(addresses[0]), headers, due.body)
        try:
            async with asyncio.timeout(self.config.attempt_seconds):
                response = await client.send(request, stream=True)
                await _drain(response)
        except TimeoutError:
            return Answer(None, f"no answer within {self.config.attempt_seconds:g} s", "timeout")
        except httpx.HTTPError as e:
            return Answer(None, f"{type(e).__name__}: {e}"[:500] or type(e).__name__, "connection")
        code = response.status_code
        error = None if 200 <= code < 300 else _why(code)
        return Answer(code, error, f"{code // 100}xx")

    async def _record(
        self,
        pool: AsyncConnectionPool[Any],
        due: Due,
        answer: Answer,
        seconds: float,
        *,
        given_up: str | None,
    ) -> None:
        """The attempt, the message's new state and the endpoint's health, in one transaction; then, if the
        verdict says so, the endpoint disabled (a command on the write side). `given_up` is the message's
        status when it was not sent at all (its endpoint disabled or deleted)."""
        now = datetime.now(UTC)
        delivered = answer.status_code is not None and 200 <= answer.status_code < 300
        async with pool.connection() as conn, conn.transaction():
            failed = not given_up and not delivered
            failing_since = await self._note_failure(conn, due, now) if failed else None
            if given_up:
                decided = Verdict(Outcome.FAILED)
            else:
                decided = verdict(
                    answer.status_code,
                    due.attempts + 1,
                    now,
                    failing_since,
                    schedule=self.config.schedule,
                    disable_after=self.config.disable_after,
                )
            await conn.execute(
                sql.SQL(
                    "INSERT INTO {} (message_id, endpoint_id, attempted_at, status_code, latency_ms, error, "
                    "outcome, next_attempt_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                ).format(self.table("attempts")),
                (
                    due.message_id,
                    due.endpoint_id,
                    now,
                    answer.status_code,
                    round(seconds * 1000),
                    answer.error if decided.disable is None else f"{answer.error}; {decided.disable}",
                    decided.outcome.value,
                    decided.retry_at,
                ),
            )
            await conn.execute(
                sql.SQL(
                    "UPDATE {} SET status = %(status)s, attempts = attempts + %(attempted)s, "
                    "next_attempt_at = %(retry_at)s, last_attempt_at = %(now)s, last_status_code = %(code)s, "
                    "last_error = %(error)s, delivered_at = CASE WHEN %(status)s = 'delivered' THEN %(now)s "
                    "END WHERE message_id = %(id)s AND status = 'pending'"
                ).format(self.table("messages")),
                {
                    "status": given_up
                    or ("pending" if decided.outcome is Outcome.RETRY else decided.outcome.value),
                    "attempted": 0 if given_up else 1,
                    "retry_at": decided.retry_at,
                    "now": now,
                    "code": answer.status_code,
                    "error": answer.error,
                    "id": due.message_id,
                },
            )
            # Last, so that the row is locked only until the commit that follows.
            if delivered and self._success_to_note(due.endpoint_id):
                await self._note_success(conn, due, now)
            if decided.disable is not None:
                await self._note_disabled(conn, due, decided.disable, now)
        if not given_up:
            metrics.ATTEMPTS.labels(answer.result).inc()
            metrics.ATTEMPT_SECONDS.observe(seconds)
        if decided.outcome is Outcome.DELIVERED:
            metrics.DELIVERY_SECONDS.observe(max((now - due.occurred_at).total_seconds(), 0.0))
        if decided.outcome is not Outcome.RETRY:
            metrics.DELIVERIES.labels(given_up or decided.outcome.value).inc()
        log.info(
            "webhook attempt",
            message_id=due.message_id,
            endpoint_id=str(due.endpoint_id),
            partner_id=due.partner_id,
            status_code=answer.status_code,
            outcome=decided.outcome.value,
            error=answer.error,
            retry_at=decided.retry_at.isoformat() if decided.retry_at else None,
        )
        if decided.disable is not None:
            await self._disable(due, decided.disable)

    async def _note_failure(self, conn: AsyncConnection[DictRow], due: Due, now: datetime) -> datetime:
        """Since when the endpoint has been failing, `now` if this is the first failure after a 2xx."""
        self._failing.add(due.endpoint_id)
        row = await (
            await conn.execute(
                sql.SQL(
                    "INSERT INTO {0} AS e (endpoint_id, partner_id, failing_since) VALUES (%s, %s, %s) "
                    "ON CONFLICT (endpoint_id) DO UPDATE SET failing_since = coalesce(e.failing_since, "
                    "EXCLUDED.failing_since) RETURNING e.failing_since"
                ).format(self.table("endpoints")),
                (due.endpoint_id, due.partner_id, now),
            )
        ).fetchone()
        assert row is not None  # an upsert returns its row
        since: datetime = row["failing_since"]
        return since

    def _success_to_note(self, endpoint_id: UUID) -> bool:
        """Whether a 2xx must be written to the endpoint's health: it clears a failure, or the last one
        written is a second old. Not every 2xx: each write locks the endpoint's row until its commit, and
        with a write per message one endpoint's deliveries were recorded one at a time (bench/webhooks.py:
        80 messages/s with it, 170 without)."""
        noted = self._success_noted.get(endpoint_id)
        if endpoint_id not in self._failing and noted is not None and time.monotonic() - noted < 1.0:
            return False
        self._failing.discard(endpoint_id)
        self._success_noted[endpoint_id] = time.monotonic()
        return True

    async def _note_success(self, conn: AsyncConnection[DictRow], due: Due, now: datetime) -> None:
        await conn.execute(
            sql.SQL(
                "INSERT INTO {0} AS e (endpoint_id, partner_id, last_success_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (endpoint_id) DO UPDATE SET failing_since = NULL, "
                "last_success_at = greatest(e.last_success_at, EXCLUDED.last_success_at)"
            ).format(self.table("endpoints")),
            (due.endpoint_id, due.partner_id, now),
        )

    async def _note_disabled(
        self, conn: AsyncConnection[DictRow], due: Due, reason: str, now: datetime
    ) -> None:
        await conn.execute(
            sql.SQL("UPDATE {} SET disabled_at = %s, disabled_reason = %s WHERE endpoint_id = %s").format(
                self.table("endpoints")
            ),
            (now, reason, due.endpoint_id),
        )

    async def _disable(self, due: Due, reason: str) -> None:
        def disable() -> None:
            result = self.orders.change_webhooks(
                "DisableWebhookEndpoint",
                due.partner_id,
                lambda w: w.disable_undeliverable(due.endpoint_id, reason, SENDER),
                SENDER,
                endpoint_id=due.endpoint_id,
            )
            log.warning(
                "webhook endpoint disabled",
                endpoint_id=str(due.endpoint_id),
                partner_id=due.partner_id,
                reason=reason,
                result=type(result).__name__,
            )

        await asyncio.to_thread(disable)
        metrics.DISABLED.labels("gone" if "410" in reason else "failing").inc()

    async def _report(self, pool: AsyncConnectionPool[Any], stop: asyncio.Event, every: float = 5.0) -> None:
        """The waiting messages as metrics: how many, and the oldest's age per endpoint."""
        query = sql.SQL(
            "SELECT endpoint_id::text AS endpoint_id, partner_id, count(*) AS waiting, "
            "extract(epoch FROM now() - min(occurred_at)) AS oldest FROM {} WHERE status = 'pending' "
            "GROUP BY endpoint_id, partner_id"
        ).format(self.table("messages"))
        while not stop.is_set():
            with contextlib.suppress(psycopg.Error):
                async with pool.connection() as conn:
                    rows = await (await conn.execute(query)).fetchall()
                metrics.OLDEST_UNDELIVERED.clear()
                for row in rows:
                    metrics.OLDEST_UNDELIVERED.labels(row["endpoint_id"], row["partner_id"]).set(
                        float(row["oldest"])
                    )
                metrics.UNDELIVERED.set(sum(row["waiting"] for row in rows))
            await _wait(stop, every)


def pinned_request(
    client: httpx.AsyncClient, target: WebhookUrl, address: str, headers: dict[str, str], body: str
) -> httpx.Request:
    """A POST to `target` that connects to `address` (the one checked), naming the host in the Host header
    and, over TLS, in SNI (whose certificate is checked against the name, not the address)."""
    url = httpx.URL(target.url)
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return client.build_request(
        "POST",
        url.copy_with(host=address),
        content=body.encode(),
        headers={**headers, "host": url.netloc.decode("ascii"), "user-agent": "Alexandrite-Webhooks/1"},
        extensions=extensions,
    )


def _why(code: int) -> str:
    if 300 <= code < 400:
        return f"answered {code}: redirects are not followed (change the endpoint's URL to where it moved)"
    return f"answered {code}"


async def _drain(response: httpx.Response, most: int = 64 * 1024) -> None:
    """Read a little of the answer (nobody needs its body), then close it: httpx keeps a connection for the
    next message only if its answer was read to the end, and a new connection per message is a TLS
    handshake per message (bench/webhooks.py counted 2,175 connections for 2,000 messages before)."""
    read = 0
    try:
        async for chunk in response.aiter_raw():
            read += len(chunk)
            if read > most:
                break
    finally:
        await response.aclose()


async def _check_lock(lock: AsyncConnection[Any]) -> None:
    """Raise unless this session still holds the sender's lock (a pooler in transaction mode, or a lost
    connection, would leave two senders active: projectors/runner.py's SessionLock says more)."""
    row = await (
        await lock.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND pid = pg_backend_pid() AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1)",
            (LOCK >> 32, LOCK & 0xFFFFFFFF),
        )
    ).fetchone()
    if not row or not row[0]:
        raise LockLost("the session that took the webhook sender's lock no longer holds it")


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
