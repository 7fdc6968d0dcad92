"""Simulated users of the whole system over HTTP: shop customers and partners ordering, sellers approving,
operators building and shipping, everyone reading their views. Used by bench/load.py and tests/faults.

Each order is one journey, walked as a careful real client would walk it against a system that may fail
under it: every create carries an Idempotency-Key; a request that got no answer, a 502/503 or a 429 is
retried after a pause, and before a command is sent again the client reads the order to see whether the
first attempt took effect (a 409 that says the order is already past the step means it did). What is
lost or doubled after that is the system's fault, which is what the audit and the tests then look for.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import trimesh

from http_edge.identity import mint_token
from orders_core.lifecycle import Role

RETRYABLE = {429, 502, 503, 504}
MATERIALS = ("AU585", "AU750", "AG925", "PT950")


def box_stl(size_mm: float) -> bytes:
    """A closed box as binary STL (fast to make; distinct sizes give distinct files)."""
    data: bytes = trimesh.creation.box(extents=(size_mm, size_mm * 0.8, size_mm / 4)).export(file_type="stl")
    return data


@dataclass
class Stats:
    """Latency per endpoint and what went wrong, over a run."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    retries: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: list[str] = field(default_factory=list)

    def record(self, endpoint: str, seconds: float) -> None:
        self.latencies[endpoint].append(seconds)

    def requests(self) -> int:
        # list() first: the chaos driver asks from another thread while the load adds endpoints.
        return sum(len(v) for v in list(self.latencies.values()))

    def table(self) -> str:
        """p50/p99 and counts per endpoint, one line each."""
        lines = [f"{'endpoint':<34} {'requests':>9} {'p50 ms':>8} {'p99 ms':>8} {'retried':>8}"]
        for endpoint in sorted(self.latencies):
            values = sorted(self.latencies[endpoint])
            p50 = values[len(values) // 2] * 1000
            p99 = values[min(len(values) - 1, int(len(values) * 0.99))] * 1000
            lines.append(
                f"{endpoint:<34} {len(values):>9} {p50:>8.1f} {p99:>8.1f} {self.retries.get(endpoint, 0):>8}"
            )
        return "\n".join(lines)


@dataclass
class Journey:
    """One order as its client walked it: what it asked for and what it saw at the end."""

    number: int
    owner: tuple[Role, str]
    key: str
    plan: str
    """`close` (the whole lifecycle), `cancel` (cancelled once priced) or `reject` (a model refused first,
    then a good one)."""
    rng: random.Random
    order_id: str | None = None
    version: int = 0
    """The order's version as this client last saw it; only this client changes the order, but pricing."""
    final_status: str | None = None
    operator: str | None = None
    models: int = 0
    submissions: int = 0


class GiveUp(Exception):
    """A step could not be done within the retry budget: counted as an error of the run."""


class Users:
    """The people and partners of the simulation, with their tokens."""

    def __init__(self, secret: str, customers: int = 40, partners: int = 5, operators: int = 6) -> None:
        def token(role: Role, sub: str) -> str:
            return mint_token(secret, role, sub)

        self.owners = [(Role.CUSTOMER, f"customer-{i}") for i in range(customers)] + [
            (Role.PARTNER, f"partner-{i}") for i in range(partners)
        ]
        self.tokens = {(role, sub): token(role, sub) for role, sub in self.owners}
        self.seller = token(Role.SELLER, "seller-1")
        self.operators = [(f"operator-{i}", token(Role.OPERATOR, f"operator-{i}")) for i in range(operators)]


class Router:
    """Sends each request to an upstream, round robin: reads (/shop, /mes) to `reads`, the rest to `commands`.

    With one base URL for both it is a plain client of one address (`backbone up`, or a gateway); with the
    replicas' own addresses it balances on the client side, as a gateway in front of them would.
    """

    def __init__(self, commands: list[str], reads: list[str], connections: int) -> None:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        clients = {
            url: httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(30.0), limits=limits)
            for url in {*commands, *reads}
        }
        self.clients = list(clients.values())
        self.commands = itertools.cycle([clients[u] for u in commands])
        self.reads = itertools.cycle([clients[u] for u in reads])

    def request(self, method: str, path: str, **kwargs: Any) -> Awaitable[httpx.Response]:
        client = next(self.reads if path.startswith(("/shop", "/mes")) else self.commands)
        return client.request(method, path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Awaitable[httpx.Response]:
        return self.request("PUT", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Awaitable[httpx.Response]:
        return self.request("POST", path, **kwargs)

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


class Workload:
    """Runs journeys against `base_url` (`backbone up`, or a gateway), or against the replicas of the scaled
    topology directly (`commands` and `reads` URLs)."""

    def __init__(
        self,
        base_url: str | tuple[list[str], list[str]],
        secret: str,
        seed: int,
        *,
        concurrency: int = 24,
        read_every: int = 3,
        retry_for_s: float = 180.0,
        poll_s: float = 0.25,
    ) -> None:
        self.base_url, self.seed, self.concurrency = base_url, seed, concurrency
        self.read_every, self.retry_for_s, self.poll_s = read_every, retry_for_s, poll_s
        self.users = Users(secret)
        self.stats = Stats()
        self.journeys: list[Journey] = []
        self.good = [box_stl(8 + i) for i in range(12)]
        self.too_big = box_stl(400)  # larger than the casting flask: pricing rejects it with a reason
        commands, reads = ([base_url], [base_url]) if isinstance(base_url, str) else base_url
        self.client = Router(commands, reads, connections=concurrency * 2)

    async def run(self, orders: int | None = None, seconds: float | None = None) -> list[Journey]:
        """Walk `orders` journeys, or as many as fit in `seconds`, `concurrency` at a time."""
        deadline = time.monotonic() + seconds if seconds is not None else None
        numbers = iter(range(orders if orders is not None else 10**9))

        async def lane() -> None:
            for number in numbers:
                if deadline is not None and time.monotonic() >= deadline:
                    return
                journey = self._plan(number)
                self.journeys.append(journey)
                try:
                    await self._walk(journey)
                except GiveUp as e:
                    self.stats.errors.append(f"order #{number} ({journey.order_id}): {e}")

        try:
            await asyncio.gather(*(lane() for _ in range(self.concurrency)))
        finally:
            await self.client.aclose()
        return self.journeys

    def _plan(self, number: int) -> Journey:
        rng = random.Random(f"{self.seed}:{number}")  # each order its own draws, whatever the interleaving
        owner = rng.choice(self.users.owners)
        roll = rng.random()
        plan = "cancel" if roll < 0.05 else "reject" if roll < 0.10 else "close"
        return Journey(number, owner, str(uuid.UUID(int=rng.getrandbits(128))), plan, rng)

    # --- one journey -------------------------------------------------------------------------------------

    async def _walk(self, j: Journey) -> None:
        owner, rng = self.users.tokens[j.owner], j.rng
        body = {
            "contact_name": f"Client {j.number}",
            "item_title": rng.choice(("Signet ring", "Pendant", "Ear studs", "Wedding band")),
            "material_code": rng.choice(MATERIALS),
            "quantity": rng.randint(1, 3),
        }
        created = await self._send(
            "POST /orders",
            "POST",
            "/orders",
            owner,
            json=body,
            headers={"Idempotency-Key": j.key},
            ok=(200, 201),
        )
        j.order_id, j.version = created["order_id"], created["version"]
        path = f"/orders/{j.order_id}"
        first = self.too_big if j.plan == "reject" else rng.choice(self.good)
        await self._upload(j, owner, first)
        await self._command(j, owner, "submit", "SUBMITTED")
        status = await self._answered(j, owner)
        if j.plan == "reject":
            if status != "REJECTED":
                raise GiveUp(f"the oversized model was not rejected but {status}")
            await self._upload(j, owner, rng.choice(self.good))
            await self._command(j, owner, "submit", "SUBMITTED")
            status = await self._answered(j, owner)
        if status != "PRICE_CALCULATED":
            raise GiveUp(f"a good model was not priced but {status}")
        if rng.randrange(self.read_every) == 0:
            await self._send(
                "GET /shop/orders/{order_id}", "GET", f"/shop/orders/{j.order_id}", owner, ok=(200, 404)
            )
        if j.plan == "cancel":
            await self._command(
                j, self.users.seller, "cancel", "CANCELLED", json={"reason": "client withdrew"}
            )
            j.final_status = "CANCELLED"
            return
        await self._command(j, self.users.seller, "approve", "MANUFACTURING_APPROVED")
        j.operator, token = rng.choice(self.users.operators)
        if rng.randrange(self.read_every) == 0:
            await self._send(
                "GET /mes/orders",
                "GET",
                "/mes/orders?status=MANUFACTURING_APPROVED&limit=20",
                token,
                ok=(200,),
            )
        await self._command(j, token, "take", "MANUFACTURING_STARTED")
        await self._command(j, token, "complete", "MANUFACTURING_COMPLETED")
        await self._command(j, token, "package", "PACKAGING")
        ship = {"carrier": "DHL", "tracking_number": f"JD{j.number:010d}"}
        await self._command(j, token, "ship", "SHIPPED", json=ship)
        await self._command(j, self.users.seller, "close", "CLOSED")
        order = await self._send("GET /orders/{order_id}", "GET", path, owner, ok=(200,))
        j.final_status = order["status"]

    async def _upload(self, j: Journey, token: str, model: bytes) -> None:
        await self._effect(
            j,
            "PUT /orders/{order_id}/model",
            lambda: self.client.put(
                f"/orders/{j.order_id}/model",
                content=model,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "model/stl"},
            ),
            token,
        )
        j.models += 1

    async def _command(
        self, j: Journey, token: str, action: str, target: str, json: dict[str, Any] | None = None
    ) -> None:
        await self._effect(
            j,
            f"POST /orders/{{order_id}}/{action}",
            lambda: self.client.post(
                f"/orders/{j.order_id}/{action}", json=json, headers={"Authorization": f"Bearer {token}"}
            ),
            token,
        )
        if action == "submit":
            j.submissions += 1

    async def _effect(
        self,
        j: Journey,
        endpoint: str,
        send: Callable[[], Awaitable[httpx.Response]],
        token: str,
    ) -> None:
        """Send a command until it is known to have taken effect exactly once.

        Only this client changes its order (pricing answers only after a submit), so the order's version
        having moved past the one the client last saw means an earlier attempt was applied.
        """
        deadline = time.monotonic() + self.retry_for_s
        pause = 0.2
        while True:
            began = time.perf_counter()
            try:
                response = await send()
            except httpx.TransportError:
                response = None
            self.stats.record(endpoint, time.perf_counter() - began)
            if response is not None and response.status_code < 300:
                j.version = response.json()["version"]
                return
            if response is not None and response.status_code not in RETRYABLE and response.status_code != 409:
                raise GiveUp(f"{endpoint}: {response.status_code} {response.text[:200]}")
            # No answer, a retryable one, or a 409: did an earlier attempt take effect after all?
            order = await self._read_order(j, token, deadline)
            if order["version"] > j.version:
                j.version = order["version"]
                return
            if response is not None and response.status_code == 409:
                raise GiveUp(f"{endpoint}: 409 {response.text[:200]}")
            if time.monotonic() > deadline:
                raise GiveUp(f"{endpoint}: still failing after {self.retry_for_s:.0f} s")
            self.stats.retries[endpoint] += 1
            await asyncio.sleep(_pause(response, pause))
            pause = min(pause * 2, 2.0)

    async def _read_order(self, j: Journey, token: str, deadline: float) -> dict[str, Any]:
        return await self._send(
            "GET /orders/{order_id}", "GET", f"/orders/{j.order_id}", token, ok=(200,), deadline=deadline
        )

    async def _answered(self, j: Journey, token: str) -> str:
        """Wait for pricing to answer the submission; the status it left."""
        deadline = time.monotonic() + self.retry_for_s
        while True:
            order = await self._read_order(j, token, deadline)
            j.version = order["version"]
            if order["status"] != "SUBMITTED":
                status: str = order["status"]
                return status
            if time.monotonic() > deadline:
                raise GiveUp(f"no pricing answer within {self.retry_for_s:.0f} s")
            await asyncio.sleep(self.poll_s)

    async def _send(
        self,
        endpoint: str,
        method: str,
        path: str,
        token: str,
        *,
        ok: tuple[int, ...],
        deadline: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """A request that is safe to repeat (a read, or a create with its Idempotency-Key) until answered."""
        deadline = deadline or time.monotonic() + self.retry_for_s
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        pause = 0.2
        while True:
            began = time.perf_counter()
            try:
                response: httpx.Response | None = await self.client.request(
                    method, path, headers=headers, **kwargs
                )
            except httpx.TransportError:
                response = None
            self.stats.record(endpoint, time.perf_counter() - began)
            if response is not None and response.status_code in ok:
                return response.json() if response.content else None
            if response is not None and response.status_code not in RETRYABLE:
                raise GiveUp(f"{endpoint}: {response.status_code} {response.text[:200]}")
            if time.monotonic() > deadline:
                raise GiveUp(f"{endpoint}: still failing after {self.retry_for_s:.0f} s")
            self.stats.retries[endpoint] += 1
            await asyncio.sleep(_pause(response, pause))
            pause = min(pause * 2, 2.0)


def _pause(response: httpx.Response | None, pause: float) -> float:
    if response is not None and "retry-after" in response.headers:
        try:
            return min(float(response.headers["retry-after"]), 5.0)
        except ValueError:
            pass
    return pause * (0.5 + random.random())


def summary(journeys: list[Journey]) -> dict[str, int]:
    """Journeys by the final status their client saw (None: did not finish)."""
    counts: dict[str, int] = defaultdict(int)
    for j in journeys:
        counts[str(j.final_status)] += 1
    return dict(counts)
