"""Command throughput of the CRM write side, beside what the same PostgreSQL does raw.

What it measures, in one run on one embedded PostgreSQL (started in a temporary BACKBONE_HOME and stopped
at the end, together with the API server it starts):

1. raw single-row ``INSERT`` + ``COMMIT`` into a scratch table with psycopg, from 1 connection and from
   ``--clients`` connections (one thread each): the ceiling the command path is compared against;
2. the eventsourcing library's own save rate, no HTTP: ``OrdersApplication.save`` of a new order from 1 thread
   and from ``--clients`` threads, and ``OrdersApplication.initiate`` (the application's create command:
   catalog check, order number, save) from ``--clients`` threads;
3. commands per second and p50/p99 latency through the HTTP API (``backbone api --workers N``, one run per
   value of ``--workers``) with ``--clients`` concurrent keep-alive clients, each a customer working on its
   own orders with the command mix ``--mix``:

   - ``create``: ``POST /orders`` only;
   - ``create+cancel`` (default): ``POST /orders``, then ``POST /orders/{order_id}/cancel`` on the new order;
   - ``lifecycle``: ``POST /orders``, ``PUT /orders/{order_id}/model`` (a 4-triangle binary STL),
     ``POST /orders/{order_id}/submit``, ``POST /orders/{order_id}/cancel``;

4. the ratio of the API's commands/s to the raw multi-connection insert rate. The target of issue 3 is at
   least 25% of it with p99 under 50 ms;
5. with ``--tracing off on sampled``, the throughput lost to instrumentation (issue 6: under 10%). "on":
   the OpenTelemetry SDK with every request sampled, the ASGI and psycopg instrumentations, the trace
   context stored in every event, and spans exported over OTLP/HTTP to a local sink
   (``OTEL_TRACES_EXPORTER=otlp``). "sampled" is the same with
   ``OTEL_TRACES_SAMPLER=parentbased_traceidratio`` at each ``--sample-ratio`` (0.1), as a deployment
   runs it (compose.yaml: 0.01): the sampler decides before the request is instrumented, so only that
   share of the requests pays for spans; the others still carry their trace id into logs and events. The
   loss is the median over rounds of each run against the "off" run of its round. Metrics are on in
   every run (they are not optional in the API). With ``--side-by-side`` each traced mode runs at the same
   time as an untraced twin API (same database, same cores, ``--clients`` clients each), so drift of
   the machine's speed between runs (other tenants of a virtual machine: +-20 % from one half minute to
   the next here) weighs on both alike; "off" against its twin is the A/A control of the method.

The API server and the direct phases inherit the environment, so eventsourcing settings can be tried
without code changes, e.g. ``POSTGRES_POOL_SIZE=20``. The API server's log (one JSON line per command, as
in production) goes to ``api.log`` in the temporary BACKBONE_HOME (kept with ``--keep``).

Every figure is printed with the CPU each side used while it ran (the bench process is the client; on a
small machine a busy client takes cores from the server, so its share is printed too). Nothing is
asserted. Run from the repository root::

    .venv/bin/python bench/commands.py                      # defaults: 16 clients, 1 API worker, ~1 min
    .venv/bin/python bench/commands.py --workers 1 2 --seconds 20 --mix lifecycle
    .venv/bin/python bench/commands.py --workers 1 2 --tracing off on sampled --rounds 3 --seconds 10
    .venv/bin/python bench/commands.py --tracing off on sampled --sample-ratio 0.01 0.1 --side-by-side
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import msgspec
import psycopg

from backbone.database import eventsourcing_env, start_embedded
from backbone.migrate import migrate
from backbone.observability import configure_logging
from backbone.settings import Settings
from harness import CpuMeter, stop_embedded  # bench/ is on sys.path
from http_edge.identity import mint_token
from orders_core.actors import Actor
from orders_core.application import OrdersApplication
from orders_core.commands import InitiateOrder
from orders_core.lifecycle import Role
from orders_core.order import Order

HOST = "127.0.0.1"
MIXES = ("create", "create+cancel", "lifecycle")
CREATE_BODY = {"contact_name": "Bench Client", "item_title": "Ring", "material_code": "AU750", "quantity": 1}


# --- figures ----------------------------------------------------------------------------------------------


@dataclass
class Figures:
    """Completed operations in a measured window, with their latencies and CPU use."""

    label: str
    seconds: float
    latencies: list[float]
    statuses: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def line(self) -> str:
        text = (
            f"{self.label:<56} {self.rate:>8,.0f}/s   p50 {self.percentile(50) * 1000:6.2f} ms"
            f"   p99 {self.percentile(99) * 1000:6.2f} ms   (n={len(self.latencies):,})"
        )
        if self.cpu:
            text += "\n" + " " * 6 + "CPU: " + ", ".join(f"{k} {v:.0%}" for k, v in self.cpu.items())
        odd = {k: v for k, v in self.statuses.items() if not k.startswith("2")}
        if odd:
            text += "\n" + " " * 6 + "non-2xx answers: " + ", ".join(f"{k} x{v}" for k, v in odd.items())
        return text


def timed_threads(
    label: str,
    threads: int,
    seconds: float,
    setup: Callable[[int], Callable[[], None]],
    meter: CpuMeter,
    warmup: float = 0.5,
) -> Figures:
    """Run `setup(i)()` in a loop on `threads` threads; count what completes inside the measured window."""
    operations = [setup(i) for i in range(threads)]
    begin = time.perf_counter() + warmup
    end = begin + seconds
    results: list[list[float]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def loop(i: int) -> None:
        operation, mine = operations[i], results[i]
        try:
            while True:
                t0 = time.perf_counter()
                if t0 >= end:
                    return
                operation()
                t1 = time.perf_counter()
                if t0 >= begin and t1 <= end:
                    mine.append(t1 - t0)
        except BaseException as e:  # reported, not asserted: a failing phase prints its error
            errors.append(e)

    workers = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    time.sleep(max(0.0, begin - time.perf_counter()))
    meter.start()
    time.sleep(max(0.0, end - time.perf_counter()))
    cpu = meter.stop()
    for w in workers:
        w.join()
    figures = Figures(label, seconds, [x for r in results for x in r], cpu=cpu)
    if errors:
        figures.statuses[f"error {type(errors[0]).__name__}: {errors[0]}"] = len(errors)
    return figures


# --- raw PostgreSQL -----------------------------------------------------------------------------------------


def raw_inserts(dsn: str, connections: int, seconds: float, meter: CpuMeter) -> Figures:
    """Single-row INSERT + COMMIT into a scratch table, one connection per thread."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS public.bench_scratch")
        conn.execute(
            "CREATE TABLE public.bench_scratch "
            "(id bigserial PRIMARY KEY, payload text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
        )
    opened: list[psycopg.Connection[Any]] = []

    def setup(i: int) -> Callable[[], None]:
        conn = psycopg.connect(dsn)
        opened.append(conn)
        payload = f"client {i} " + "x" * 200

        def insert() -> None:
            conn.execute("INSERT INTO public.bench_scratch (payload) VALUES (%s)", (payload,))
            conn.commit()

        return insert

    try:
        label = f"raw INSERT+COMMIT, {connections} connection(s)"
        return timed_threads(label, connections, seconds, setup, meter)
    finally:
        for conn in opened:
            conn.close()


# --- the library, no HTTP ----------------------------------------------------------------------------------


def direct_saves(dsn: str, threads: int, seconds: float, meter: CpuMeter, *, initiate: bool) -> Figures:
    """New orders saved by OrdersApplication in this process: bare `save`, or the `initiate` command."""
    app = OrdersApplication(env=eventsourcing_env(dsn, pool_size=threads))
    app.catalog()  # seeded by the migration; warm the cache
    numbers = iter(range(10_000_000))

    def setup(i: int) -> Callable[[], None]:
        actor = Actor(Role.CUSTOMER, f"direct-{i}")
        command = InitiateOrder("shop", actor.subject, "Bench Client", "Ring", "AU750", 1)

        def save() -> None:
            order = Order.initiate(uuid4(), f"D-{next(numbers)}", command, actor)
            assert isinstance(order, Order)
            app.save(order)

        def run_initiate() -> None:
            app.initiate(command, actor)

        return run_initiate if initiate else save

    what = "initiate()" if initiate else "save(new Order)"
    try:
        return timed_threads(f"OrdersApplication.{what}, {threads} thread(s)", threads, seconds, setup, meter)
    finally:
        app.close()


# --- through HTTP ------------------------------------------------------------------------------------------


class HttpError(Exception):
    """The server closed the connection or answered something this client cannot read."""


class Connection:
    """One keep-alive HTTP/1.1 connection with just enough protocol for this API (kept lean on purpose)."""

    def __init__(self, port: int, token: str) -> None:
        self._port = port
        self._auth = f"Authorization: Bearer {token}\r\n".encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes = b"", content_type: str = "application/json"
    ) -> tuple[int, bytes]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(HOST, self._port)
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
        ).encode()
        self._writer.write(head + self._auth + b"\r\n" + body)
        reader = self._reader
        status_line = await reader.readline()
        if not status_line:
            raise HttpError("connection closed by the server")
        status = int(status_line.split(b" ", 2)[1])
        length, chunked, close = 0, False, False
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                close = True
        if chunked:
            parts = []
            while size := int((await reader.readline()).split(b";")[0], 16):
                parts.append(await reader.readexactly(size))
                await reader.readline()
            await reader.readline()
            payload = b"".join(parts)
        else:
            payload = await reader.readexactly(length)
        if close:
            await self.close()
        return status, payload

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


def tiny_stl() -> bytes:
    """A binary STL of one tetrahedron (4 triangles), as a customer's upload."""
    v = [(0.0, 0.0, 0.0), (10.0, 0.0, 0.0), (0.0, 10.0, 0.0), (0.0, 0.0, 10.0)]
    faces = [(0, 2, 1), (0, 1, 3), (0, 3, 2), (1, 2, 3)]
    data = bytearray(b"bench tetrahedron".ljust(80, b" ") + struct.pack("<I", len(faces)))
    for a, b, c in faces:
        data += struct.pack("<3f", 0.0, 0.0, 0.0) + struct.pack("<9f", *v[a], *v[b], *v[c]) + b"\0\0"
    return bytes(data)


async def api_clients(
    port: int, tokens: Sequence[str], mix: str, warmup: float, seconds: float, meter: CpuMeter
) -> Figures:
    """`len(tokens)` clients, each running the command mix on its own orders until the window ends."""
    loop = asyncio.get_running_loop()
    begin = loop.time() + warmup
    end = begin + seconds
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    create = msgspec.json.encode(CREATE_BODY)
    cancel = msgspec.json.encode({"reason": "bench: changed my mind"})
    model = tiny_stl()
    decode_id = msgspec.json.Decoder(type=dict[str, Any])

    async def client(token: str, arrival: float) -> None:
        conn = Connection(port, token)
        # Clients connect one after another, as real ones do, not all in the same instant: uvicorn's
        # workers share one listening socket, and the first to wake would accept every connection that
        # is already queued, leaving the other workers without a client for the whole run.
        await asyncio.sleep(arrival)

        async def command(
            method: str, path: str, body: bytes, content_type: str = "application/json"
        ) -> bytes:
            t0 = loop.time()
            status, payload = await conn.request(method, path, body, content_type)
            t1 = loop.time()
            if t0 >= begin and t1 <= end:
                latencies.append(t1 - t0)
                statuses[str(status)] += 1
            return payload if 200 <= status < 300 else b""

        try:
            while loop.time() < end:
                created = await command("POST", "/orders", create)
                if mix == "create" or not created or loop.time() >= end:
                    continue
                order = f"/orders/{decode_id.decode(created)['order_id']}"
                if mix == "lifecycle":
                    await command("PUT", f"{order}/model", model, "model/stl")
                    await command("POST", f"{order}/submit", b"")
                await command("POST", f"{order}/cancel", cancel)
        except (HttpError, OSError, asyncio.IncompleteReadError, ValueError) as e:
            statuses[f"client error {type(e).__name__}"] += 1
        finally:
            await conn.close()

    async def window() -> dict[str, float]:
        await asyncio.sleep(max(0.0, begin - loop.time()))
        meter.start()
        await asyncio.sleep(max(0.0, end - loop.time()))
        return meter.stop()

    timer = asyncio.create_task(window())
    spacing = min(0.05, warmup / (2 * len(tokens)))  # everyone is connected halfway through the warm-up
    await asyncio.gather(*(client(t, i * spacing) for i, t in enumerate(tokens)))
    cpu = await timer
    label = f"HTTP API, {len(tokens)} clients, mix {mix}"
    return Figures(label, seconds, latencies, statuses, cpu)


@contextmanager
def api_server(
    home: Path, workers: int, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[int, int]]:
    """`backbone api --workers N` on a free port; yields (port, pid) once /health answers, stops it after."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = int(s.getsockname()[1])
    env = {**os.environ, "BACKBONE_HOME": str(home), **(extra_env or {})}
    command = [sys.executable, "-m", "backbone.cli", "api", "--host", HOST, "--port", str(port)]
    log = home / "api.log"
    with log.open("ab") as stderr:  # the server keeps its own handle on it
        proc = subprocess.Popen(
            [*command, "--workers", str(workers)], env=env, start_new_session=True, stderr=stderr
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"backbone api exited with {proc.returncode}; the end of {log}:\n{tail}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("backbone api did not become healthy within 60 s")
            time.sleep(0.1)
        yield port, proc.pid
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT (uvicorn shuts down cleanly and its handles on the embedded server are released); then kill."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- the run -----------------------------------------------------------------------------------------------


class _Sink(http.server.BaseHTTPRequestHandler):
    """Accepts OTLP/HTTP exports and throws them away: tracing costs the API its spans, not a collector."""

    received = 0

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        _Sink.received += length
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


@contextmanager
def otlp_sink() -> Iterator[dict[str, str]]:
    """A local OTLP endpoint; yields the environment that points the API's exporter at it."""
    server = http.server.ThreadingHTTPServer((HOST, 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{HOST}:{server.server_address[1]}",
        }
    finally:
        server.shutdown()


TRACING_MODES = ("off", "on", "sampled")


def tracing_env(mode: str, otlp: dict[str, str], ratio: float) -> dict[str, str] | None:
    """The API's environment for a tracing mode: spans to the OTLP sink, all of them or a sampled share."""
    if mode == "off":
        return None
    if mode == "on":
        return otlp
    sampler = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": str(ratio)}
    return {**otlp, **sampler}


async def twin_runs(args: argparse.Namespace, *servers: tuple[int, Sequence[str], int]) -> list[Figures]:
    """The command mix on each (port, tokens, pid) server at the same time."""
    return await asyncio.gather(
        *(
            api_clients(port, tokens, args.mix, args.warmup, args.seconds, CpuMeter({"API": pid}))
            for port, tokens, pid in servers
        )
    )


def side_by_side(
    home: Path,
    args: argparse.Namespace,
    modes: Sequence[tuple[str, float]],
    tokens: Sequence[str],
    twins: Sequence[str],
) -> None:
    """Each traced mode against an untraced twin API running at the same time, once per round; prints the
    throughput lost in each round and the median. The two processes share the cores and the database, so
    a slower machine (other tenants, a throttled host) slows both alike: the ratio of their rates is the
    ratio of their costs per command."""
    losses: dict[tuple[int, str], list[float]] = {}
    for round_ in range(args.rounds):
        for workers in args.workers:
            for tracing, ratio in modes:
                # Which twin starts and gets its clients first alternates by round: the A/A control showed
                # the first a few per cent ahead.
                with otlp_sink() as otel_env, ExitStack() as stack:
                    sides = [(twins, None), (tokens, tracing_env(tracing, otel_env, ratio))]
                    if round_ % 2:
                        sides.reverse()
                    servers = [
                        (*stack.enter_context(api_server(home, workers, env)), who) for who, env in sides
                    ]
                    done = asyncio.run(twin_runs(args, *((port, who, pid) for port, pid, who in servers)))
                    off, on = done if sides[0][0] is twins else reversed(done)
                mode = tracing if tracing != "sampled" else f"sampled {ratio:g}"
                lost = 1 - on.rate / off.rate if off.rate else float("nan")
                losses.setdefault((workers, mode), []).append(lost)
                print(
                    f"side by side, {workers} worker(s): tracing {mode} {on.rate:,.0f}/s"
                    f" (p99 {on.percentile(99) * 1000:.1f} ms) vs off {off.rate:,.0f}/s"
                    f" (p99 {off.percentile(99) * 1000:.1f} ms): {lost:.1%} lost",
                    flush=True,
                )
    print("\nsummary (side by side)")
    for (workers, mode), found in losses.items():
        found.sort()
        print(
            f"  tracing {mode}, {workers} worker(s): median {found[(len(found) - 1) // 2]:.1%} lost"
            f" (each round: {', '.join(f'{x:.1%}' for x in found)})   (target < 10%)"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients/connections (16)")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1], help="API worker processes; one API run per value (1)"
    )
    parser.add_argument(
        "--mix", choices=MIXES, default="create+cancel", help="API command mix (create+cancel)"
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per API run (15)")
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="unmeasured seconds before each API run (3)"
    )
    parser.add_argument(
        "--phase-seconds", type=float, default=5.0, help="measured seconds of each raw and direct phase (5)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary BACKBONE_HOME (for inspection)"
    )
    parser.add_argument(
        "--tracing",
        choices=TRACING_MODES,
        nargs="+",
        default=["off"],
        help="API runs without tracing, with every request traced and exported over OTLP to a local sink"
        " (on), or with only --sample-ratio of the traces recorded (sampled); see above (off)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="API runs of every --workers and --tracing value, interleaved; the median is reported (1)",
    )
    parser.add_argument(
        "--side-by-side",
        action="store_true",
        help="instead of one run after another, run each traced mode at the same time as an untraced twin"
        " (each with --clients clients): both see the same machine, drift and noise included",
    )
    parser.add_argument(
        "--sample-ratio",
        type=float,
        nargs="+",
        default=[0.1],
        help="share of traces recorded by --tracing sampled, one run per value (0.1)",
    )
    args = parser.parse_args(argv)
    # The direct phases run the application here: its per-command log lines would drown the figures.
    configure_logging(level="WARNING")

    home = Path(tempfile.mkdtemp(prefix="backbone-bench-"))
    pgdata = home / "pgdata"
    started = time.perf_counter()
    try:
        dsn = start_embedded(pgdata, cleanup_mode="stop")
        migrate(dsn)
        with psycopg.connect(dsn) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            sync = conn.execute("SHOW synchronous_commit").fetchone()
        postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
        print(
            f"PostgreSQL {version[0] if version else '?'} (embedded, "
            f"synchronous_commit={sync[0] if sync else '?'}) in {pgdata}; {os.cpu_count()} CPU(s); "
            "CPU figures in cores (100% = one core busy)",
            flush=True,
        )
        meter = CpuMeter({"PostgreSQL": postmaster}, own="client (bench)")
        n, secs = args.clients, args.phase_seconds
        raw1 = raw_inserts(dsn, 1, secs, meter)
        print(raw1.line(), flush=True)
        raw_n = raw_inserts(dsn, n, secs, meter)
        print(raw_n.line(), flush=True)
        for threads, initiate in ((1, False), (n, False), (n, True)):
            print(direct_saves(dsn, threads, secs, meter, initiate=initiate).line(), flush=True)

        secret = Settings.from_env({"BACKBONE_HOME": str(home)}).jwt_secret
        tokens = [mint_token(secret, Role.CUSTOMER, f"bench-{i}") for i in range(n)]
        # Every (workers, tracing) run once per round, rounds interleaved: a load that comes and goes on the
        # machine then weighs on each alike, and each figure below is the run with the median rate.
        runs: dict[tuple[int, str], list[Figures]] = {}
        modes = [(t, r) for t in args.tracing for r in (args.sample_ratio if t == "sampled" else [1.0])]
        if args.side_by_side:
            twins = [mint_token(secret, Role.CUSTOMER, f"bench-twin-{i}") for i in range(n)]
            side_by_side(home, args, modes, tokens, twins)  # "off" against its twin: the A/A control
            print(f"  total run time {time.perf_counter() - started:.0f} s")
            return 0
        for _ in range(args.rounds):
            for workers in args.workers:
                for tracing, ratio in modes:
                    with (
                        otlp_sink() as otel_env,
                        api_server(home, workers, tracing_env(tracing, otel_env, ratio)) as (port, pid),
                    ):
                        api_meter = CpuMeter({"PostgreSQL": postmaster, "API": pid}, own="client (bench)")
                        figures = asyncio.run(
                            api_clients(port, tokens, args.mix, args.warmup, args.seconds, api_meter)
                        )
                    mode = tracing if tracing != "sampled" else f"sampled {ratio:g}"
                    figures.label += f", {workers} worker(s), tracing {mode}"
                    print(figures.line(), flush=True)
                    runs.setdefault((workers, mode), []).append(figures)
        medians = {
            key: sorted(found, key=lambda f: f.rate)[(len(found) - 1) // 2] for key, found in runs.items()
        }

        print("\nsummary")
        print(f"  raw INSERT+COMMIT, 1 connection:    {raw1.rate:8,.0f}/s")
        print(
            f"  raw INSERT+COMMIT, {n} connections:  {raw_n.rate:8,.0f}/s   "
            f"(25% of it: {raw_n.rate / 4:,.0f}/s)"
        )
        if args.rounds > 1:
            print(f"  (API figures: the median of {args.rounds} rounds by rate)")
        for (workers, mode), figures in medians.items():
            ratio = figures.rate / raw_n.rate if raw_n.rate else float("nan")
            print(
                f"  API, {workers} worker(s), tracing {mode}, mix {args.mix}: "
                f"{figures.rate:8,.0f} commands/s, p50 {figures.percentile(50) * 1000:.1f} ms, "
                f"p99 {figures.percentile(99) * 1000:.1f} ms, "
                f"API/raw-{n} = {ratio:.1%}   (target >= 25%, p99 < 50 ms)"
            )
        for (workers, mode), found in runs.items():
            offs = runs.get((workers, "off"))
            if mode == "off" or not offs:
                continue
            # Paired by round: the machine's speed drifts over a long run (other tenants, caches), and a
            # run compared with the "off" run just before it shares its conditions.
            losses = sorted(1 - f.rate / o.rate for f, o in zip(found, offs, strict=True) if o.rate)
            figures, off = medians[(workers, mode)], medians[(workers, "off")]
            print(
                f"  tracing {mode}, {workers} worker(s): {figures.rate:,.0f} vs {off.rate:,.0f}"
                f" commands/s off; lost, paired by round: median {losses[(len(losses) - 1) // 2]:.1%}"
                f" (each round: {', '.join(f'{x:.1%}' for x in losses)})   (target < 10%)"
            )
        print(f"  total run time {time.perf_counter() - started:.0f} s")
    finally:
        if pgdata.exists():
            try:
                stop_embedded(pgdata)
            except Exception as e:  # keep going: the temporary directory still has to go
                print(f"could not stop the embedded PostgreSQL: {e}", file=sys.stderr)
        if args.keep:
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
