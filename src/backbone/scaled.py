"""`backbone up --scaled`: the deployment of compose.yaml as local processes, for machines without Docker.

Each part is its own `backbone` process on a real PostgreSQL and RabbitMQ (the configured ones, or the
embedded PostgreSQL and a local RabbitMQ node), watched by a small supervisor that restarts a part that
dies. A gateway on the main port sends /shop, /mes and /console to the read API replicas and everything
else to the command API replicas, so the system has one address, as behind compose's nginx.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog

log = structlog.get_logger("scaled")

READ_PREFIXES = ("/shop", "/mes", "/console")
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Part:
    """One process of the topology."""

    name: str
    args: tuple[str, ...]
    env: Mapping[str, str]


def topology(port: int, metrics_from: int) -> list[Part]:
    """The parts of compose.yaml (docs/architecture.md, "Parts"): APIs x2, projectors and relay with
    standbys, the webhook sender with a standby, pricing workers x3, the results consumer and the periodic
    audit."""
    parts: list[Part] = []
    metrics = itertools.count(metrics_from)
    for i in (1, 2):
        parts.append(Part(f"api-{i}", ("api",), {"PORT": str(port + i)}))
        parts.append(Part(f"read-api-{i}", ("read-api",), {"PORT": str(port + 2 + i)}))
    for name, args, copies in (
        ("projector-mes", ("projector", "mes"), 2),
        ("projector-shop", ("projector", "shop"), 2),
        ("relay", ("relay",), 2),
        ("webhooks", ("webhooks",), 2),
        ("worker-pricing", ("worker", "pricing"), 3),
        ("results", ("results",), 1),
        ("audit", ("audit", "--every", "300"), 1),
    ):
        for i in range(1, copies + 1):
            parts.append(Part(f"{name}-{i}", args, {"METRICS_PORT": str(next(metrics))}))
    return parts


@dataclass
class Supervisor:
    """Starts every part, restarts one that exits, and stops them all on `stop`."""

    parts: list[Part]
    env: Mapping[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        """Start every part and a thread that watches them."""
        for part in self.parts:
            self._spawn(part)
        threading.Thread(target=self._watch, name="supervisor", daemon=True).start()

    def _spawn(self, part: Part) -> None:
        command = [sys.executable, "-m", "backbone.cli", *part.args]
        self.processes[part.name] = subprocess.Popen(command, env={**self.env, **part.env})

    def _watch(self) -> None:
        while not self.stopping.wait(1.0):
            for part in self.parts:
                code = self.processes[part.name].poll()
                if code is not None and not self.stopping.is_set():
                    self.restarts[part.name] = self.restarts.get(part.name, 0) + 1
                    log.warning(
                        "part exited, restarting",
                        part=part.name,
                        code=code,
                        restarts=self.restarts[part.name],
                    )
                    self._spawn(part)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM every part, then SIGKILL what is still running after `timeout`."""
        self.stopping.set()
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Gateway:
    """An ASGI reverse proxy: reads to the read API replicas, the rest to the command API, round robin."""

    def __init__(self, command_urls: list[str], read_urls: list[str]) -> None:
        self.command = (itertools.cycle(command_urls), len(command_urls))
        self.read = (itertools.cycle(read_urls), len(read_urls))
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(60.0, read=None), limits=httpx.Limits(max_connections=200)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        upstreams, count = self.read if path.startswith(READ_PREFIXES) else self.command
        query = scope.get("query_string", b"").decode()
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k.lower() != b"host"]
        body = Body(receive)
        attempt = 0
        while True:
            attempt += 1
            upstream = next(upstreams)
            url = f"{upstream}{path}" + (f"?{query}" if query else "")
            request = self.client.build_request(scope["method"], url, headers=headers, content=body)
            try:
                response = await self.client.send(request, stream=True)
                break
            except Exception as e:
                # Refused: the replica is down (killed, restarting) and nothing of the request reached it,
                # so the next replica takes it, as nginx's proxy_next_upstream does. Without this, each
                # restart of a replica (seconds of imports) answered half the traffic with 502.
                if isinstance(e, httpx.ConnectError) and attempt < count and not body.started:
                    log.debug("upstream refused, trying the next", upstream=upstream, path=path)
                    continue
                # Not only httpx's own errors: a replica killed while the connection is being set up
                # surfaces as an AttributeError from deep in anyio. The client gets a 502 and retries,
                # never a 500.
                log.warning("upstream failed", upstream=upstream, path=path, error=repr(e))
                await _answer(
                    send, 502, b'{"error": "bad_gateway", "detail": "' + type(e).__name__.encode() + b'"}'
                )
                return
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [
                        (k.encode(), v.encode())
                        for k, v in response.headers.multi_items()
                        if k.lower() not in ("transfer-encoding", "connection")
                    ],
                }
            )
            async for chunk in response.aiter_raw():  # streams SSE and downloads as they come
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


class Body:
    """The client's request body, streamed to the upstream as it arrives; `started` once any of it was
    read, after which the request cannot go to another replica."""

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.started = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.started = True
        while True:
            message = await self.receive()
            if message["type"] != "http.request":
                return
            yield message.get("body", b"")
            if not message.get("more_body"):
                return


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": body})
