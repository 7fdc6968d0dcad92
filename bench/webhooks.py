"""Webhook delivery: messages delivered per second to a local receiver, and the time from an order event's
commit to the receiver's 2xx at 50 orders/s (issue 15: p99 under 200 ms).

What it runs, in one go on one embedded PostgreSQL (started in a temporary directory, stopped and removed at
the end, with every process it starts), in the deployed topology: ``backbone api`` and ``backbone webhooks``
as two processes (``WEBHOOK_ALLOW_PRIVATE=1`` in both, so a loopback endpoint is allowed), and a receiver
of this script's own as a third (a raw asyncio HTTP/1.1 server on loopback that notes the arrival time of
every POST and answers 200 at once; ``GET /count`` and ``GET /arrivals`` let the bench read what came).
One partner registers one endpoint (``POST /webhooks``) subscribed to order.created and order.cancelled.

1. Throughput. With the sender not started yet, ``--backlog`` (1000) partner orders are created and
   cancelled through the API (two messages each); then ``backbone webhooks`` starts and drains them. Printed:
   messages/s from the first arrival to the last (and from the process's start, which includes its import
   and the outbox catching up), the connections it opened to the receiver, the CPU of each process and the
   sender's CPU per message (from its first arrival on). Baseline, in the same run: the receiver's own
   capacity, the same bodies and headers POSTed by a plain ``httpx.AsyncClient`` of this process with the
   sender's concurrency (32); the ratio shows what the sender costs beyond the HTTP.
2. Latency. ``--rate`` (50) partner orders/s for ``--seconds`` (30, after ``--warmup`` 3 s), open loop: one
   order.created message each, or two with ``--cancel`` (each order cancelled ``--cancel-after`` 0.5 s
   later). A message's latency is its arrival at the receiver minus the ``timestamp`` in its body (the
   order event's time, taken just before its commit; same machine clock): p50/p95/p99/max. Where the time
   goes, per message, from the sender's own tables: event -> outbox row (``messages.created_at``, the
   outbox's transaction, after the projection runner woke on the store's NOTIFY and read the order),
   outbox row -> attempt start (the outbox's commit, its NOTIFY to the delivery loop, the claim, the
   endpoint read), attempt start -> arrival (signing, connecting, the POST), arrival -> the answer back at
   the sender; then the outbox's batches and the POSTs from the sender's /metrics, and what the sender's
   database sessions were doing (pg_stat_activity sampled every 20 ms: statement, wait event). Baselines:
   the same store's own commit-to-answer, from an event's timestamp to the API's answer reaching this
   client (the answer's ``updated_at``), and the API's latency as this client sees it (with its queueing).
   CPU of each process, and the sender's per message.
3. ``--verify`` (20) messages checked with the ``standardwebhooks`` package and the endpoint's secret.

``--phases throughput`` or ``latency`` runs one; ``--sender-env NAME=VALUE`` sets the sender's environment
(``WEBHOOK_CONCURRENCY=4``, say); ``--profile`` runs the latency phase's sender under cProfile (every
thread) and prints each thread's top functions. Nothing is asserted. Run from the repository root (about
100 s)::

    nice .venv/bin/python bench/webhooks.py
    nice .venv/bin/python bench/webhooks.py --phases latency --cancel --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from backbone.rabbitmq import free_port
from harness import (  # bench/ is on sys.path
    CpuMeter,
    background_cpu,
    cpu_text,
    embedded_postgres,
    healthy,
    part_env,
    percentile,
)
from http_edge.identity import mint_token
from orders_core.lifecycle import Role

SECRET = "webhook-bench-secret-" + "x" * 32
HOST = "127.0.0.1"
PARTNER = "bench-jeweller"
NEW_ORDER = {
    "contact_name": "Ann Example",
    "item_title": "Signet ring",
    "material_code": "AU750",
    "quantity": 1,
}
TYPES = ["order.created", "order.cancelled"]


# --- the receiver (a process of its own: `webhooks.py --receiver PORT`) -------------------------------------


class Receiver:
    """A raw asyncio HTTP/1.1 server: keep-alive, Content-Length bodies; notes every POST and answers 200."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, str, dict[str, str], str]] = []
        """(arrival time.time(), path, the webhook-* headers, body) of every POST."""
        self.connections = 0
        """Connections accepted (a sender that keeps its connections alive opens a few)."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
                if method == "POST":
                    arrived = time.time()
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    hooks = {k: v for k, v in headers.items() if k.startswith("webhook-")}
                    self.arrivals.append((arrived, target, hooks, body.decode()))
                    continue
                if target.startswith("/arrivals"):
                    since = int(target.partition("since=")[2] or 0)
                    payload = json.dumps(self.arrivals[since:]).encode()
                elif target.startswith("/connections"):
                    payload = str(self.connections).encode()
                else:
                    payload = str(len(self.arrivals)).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                    + str(len(payload)).encode()
                    + b"\r\n\r\n"
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def serve(self, port: int) -> None:
        server = await asyncio.start_server(self.handle, HOST, port, backlog=512)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with server:
            await stop.wait()


@contextmanager
def receiver_process() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The receiver as its own process; yields (base URL, process) once it answers."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--receiver", str(port)], start_new_session=True)
    base = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/count", timeout=1)
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the receiver did not start") from None
                time.sleep(0.1)
        yield base, proc
    finally:
        stop(proc)


def arrivals(base: str, since: int = 0) -> list[tuple[float, str, dict[str, str], str]]:
    answer = httpx.get(f"{base}/arrivals?since={since}", timeout=60)
    return [tuple(a) for a in answer.json()]


def count(base: str) -> int:
    return int(httpx.get(f"{base}/count", timeout=10).text)


def connections(base: str) -> int:
    return int(httpx.get(f"{base}/connections", timeout=10).text)


def wait_for_count(base: str, expected: int, patience: float = 30.0) -> int:
    """Wait until the receiver holds `expected` POSTs, or until none arrived for `patience` seconds."""
    seen, deadline = -1, time.monotonic() + patience
    while time.monotonic() < deadline:
        now = count(base)
        if now >= expected:
            return now
        if now != seen:
            seen, deadline = now, time.monotonic() + patience
        time.sleep(0.1)
    return count(base)


# --- the system ---------------------------------------------------------------------------------------------


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def bench_env(dsn: str, home: str) -> dict[str, str]:
    # A line per command and per attempt would bury the figures (and cost the parts CPU to write).
    log_level = os.environ.get("LOG_LEVEL", "WARNING")
    return part_env(dsn, SECRET, home, WEBHOOK_ALLOW_PRIVATE="1", LOG_LEVEL=log_level)


@contextmanager
def part(
    args: Sequence[str], env: dict[str, str], profile: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A `backbone` part as its own process; with `profile`, under cProfile (every thread) into that path."""
    command = [sys.executable, "-m", "backbone.cli", *args]
    if profile is not None:
        command = [sys.executable, __file__, "--profiled", profile, *args]
    proc = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        yield proc
    finally:
        stop(proc)


def sender_active(dsn: str, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    """Wait until the `backbone webhooks` process holds the delivery loop's lock."""
    deadline = time.monotonic() + seconds
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"backbone webhooks exited with {proc.returncode}")
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'webhook sender pid %'"
            ).fetchone()
            if row and row[0]:
                return
            time.sleep(0.05)
    raise RuntimeError("the webhook sender did not become active")


def client(base: str, role: Role, subject: str, connections: int = 64) -> httpx.AsyncClient:
    token = mint_token(SECRET, role, subject)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30, limits=limits
    )


def scrape(port: int) -> dict[str, float]:
    """The sender's /metrics as {sample name with labels: value}."""
    samples: dict[str, float] = {}
    for line in httpx.get(f"http://{HOST}:{port}/metrics", timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


class ActivitySampler:
    """Samples what the sender's database sessions are doing (pg_stat_activity, every 20 ms): which
    statement, and what it waits on, as shares of the samples."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.seen: dict[str, int] = {}
        self.samples = 0
        self.halt = asyncio.Event()

    async def run(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            while not self.halt.is_set():
                rows = await (
                    await conn.execute(
                        "SELECT coalesce(wait_event_type || ':' || wait_event, 'on CPU'), "
                        "regexp_replace(left(query, 60), '\\s+', ' ', 'g') FROM pg_stat_activity "
                        "WHERE state <> 'idle' AND pid <> pg_backend_pid() AND query ILIKE '%webhooks%'"
                    )
                ).fetchall()
                self.samples += 1
                for wait, query in rows:
                    key = f"{wait:<28} {query}"
                    self.seen[key] = self.seen.get(key, 0) + 1
                await asyncio.sleep(0.02)

    def report(self) -> None:
        print(f"  the sender's busy database sessions ({self.samples} samples of pg_stat_activity):")
        for key, n in sorted(self.seen.items(), key=lambda kv: -kv[1])[:8]:
            print(f"    {n / max(1, self.samples):5.2f} sessions  {key}")


def histogram(before: dict[str, float], after: dict[str, float], name: str, labels: str = "") -> str:
    """Count, mean and bucket shares of a histogram between two scrapes."""
    sel = f"{{{labels}}}" if labels else ""
    n = after.get(f"{name}_count{sel}", 0.0) - before.get(f"{name}_count{sel}", 0.0)
    total = after.get(f"{name}_sum{sel}", 0.0) - before.get(f"{name}_sum{sel}", 0.0)
    buckets = []
    for key, value in after.items():
        if key.startswith(f"{name}_bucket{{") and (not labels or labels in key):
            le = key.partition('le="')[2].partition('"')[0]
            within = value - before.get(key, 0.0)
            if le != "+Inf" and 0 < within < n:
                buckets.append(f"<={float(le) * 1000:g} ms {within / n:.0%}")
    mean = total / n * 1000 if n else float("nan")
    return f"{n:,.0f}, mean {mean:.1f} ms; " + ", ".join(buckets)


# --- figures ------------------------------------------------------------------------------------------------


def ms(values: Sequence[float]) -> str:
    return (
        f"p50 {percentile(values, 50) * 1000:6.1f}  p95 {percentile(values, 95) * 1000:6.1f}  "
        f"p99 {percentile(values, 99) * 1000:6.1f}  max {max(values, default=float('nan')) * 1000:6.1f} ms"
        f"  (n={len(values):,})"
    )


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


# --- 1. throughput ------------------------------------------------------------------------------------------


async def create_and_cancel(base: str, orders: int, concurrency: int = 16) -> int:
    """`orders` partner orders created and cancelled, `concurrency` at a time; how many were."""
    done = 0
    async with client(base, Role.PARTNER, PARTNER) as partner:
        queue = iter(range(orders))

        async def worker() -> None:
            nonlocal done
            for _ in queue:
                created = await partner.post("/orders", json=NEW_ORDER)
                order_id = created.json()["order_id"]
                cancelled = await partner.post(f"/orders/{order_id}/cancel", json={"reason": "bench"})
                done += cancelled.status_code == 200

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


async def post_all(url: str, messages: Sequence[tuple[dict[str, str], str]], concurrency: int) -> float:
    """The receiver's capacity: `messages` POSTed by a plain httpx client; seconds taken."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        work = iter(messages)

        async def worker() -> None:
            for headers, body in work:
                answer = await http.post(
                    url, content=body.encode(), headers={**headers, "content-type": "application/json"}
                )
                answer.raise_for_status()

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - began


@dataclass
class Throughput:
    rate: float
    baseline: float
    cpu_per_message: float


def throughput(
    args: argparse.Namespace, api: str, receiver: str, dsn: str, env: dict[str, str]
) -> Throughput:
    print(
        f"\n=== throughput: a backlog of {args.backlog:,} orders created and cancelled, then the sender ==="
    )
    began = time.perf_counter()
    made = asyncio.run(create_and_cancel(api, args.backlog))
    expected = 2 * made
    print(f"backlog: {made:,} orders created and cancelled in {time.perf_counter() - began:.1f} s")
    postmaster = int((Path(args.pgdata) / "postmaster.pid").read_text().split()[0])
    opened, before = connections(receiver), count(receiver)
    with part(["webhooks"], env) as sender:
        started = time.time()
        meter = CpuMeter({"webhooks": sender.pid, "PostgreSQL": postmaster, "receiver": args.receiver_pid})
        # Metered from the first arrival: the sender's import and start-up are not a message's cost.
        while count(receiver) == before and sender.poll() is None and time.time() - started < 60:
            time.sleep(0.02)
        first = count(receiver)
        meter.start()
        metered = time.perf_counter()
        got = wait_for_count(receiver, before + expected)
        cpu = meter.stop()
        metered = time.perf_counter() - metered
        came = [a for a in arrivals(receiver, before) if a[1] == "/hook"]
        times = sorted(a[0] for a in came)
        drained = max(times[-1] - times[0], 1e-9)
        rate = len(came) / drained
        with psycopg.connect(dsn) as conn:
            row = conn.execute(
                "SELECT extract(epoch FROM max(created_at) - min(created_at)), "
                "count(*) FILTER (WHERE status = 'delivered'), sum(attempts) FROM webhooks.messages"
            ).fetchone()
        assert row is not None
        ids = [a[2].get("webhook-id") for a in came]
        print(
            f"delivered {got - before:,} of {expected:,} messages ({len(set(ids)):,} distinct webhook-ids; "
            f"{row[1]:,} delivered in webhooks.messages after {row[2]:,} attempts)"
        )
        print(
            f"  sender: {rate:,.0f} messages/s from the first arrival to the last ({drained:.1f} s); "
            f"{len(came) / (times[-1] - started):,.0f}/s from `backbone webhooks` starting "
            f"(first arrival after {times[0] - started:.1f} s)"
        )
        print(f"  the outbox wrote its rows over {float(row[0] or 0):.1f} s")
        print(f"  connections the sender opened to the receiver: {connections(receiver) - opened:,}")
        metered_messages = max(1, got - first)
        sender_cpu = cpu["webhooks"] * metered / metered_messages
        print(f"  CPU from the first arrival to the last: {cpu_text(cpu)}")
        print(
            f"  sender CPU per message: {sender_cpu * 1000:.2f} ms "
            f"({cpu['webhooks'] * metered:.1f} s for {metered_messages:,} messages)"
        )
    # Baseline: the receiver's capacity for the same messages, from a plain client.
    sample = [(a[2], a[3]) for a in came]
    seconds = asyncio.run(post_all(f"{receiver}/baseline", sample, args.concurrency))
    baseline = len(sample) / seconds
    print(
        f"  baseline: the receiver takes {baseline:,.0f} messages/s from a plain httpx.AsyncClient "
        f"({args.concurrency} at once, same bodies and headers)"
    )
    print(f"  ratio sender / baseline: {rate / baseline:.2f}")
    return Throughput(rate, baseline, sender_cpu)


# --- 2. latency ---------------------------------------------------------------------------------------------


@dataclass
class Load:
    """What the load did: API latencies, and event time -> answer at the client, per command."""

    api: list[float] = field(default_factory=list)
    visible: list[float] = field(default_factory=list)
    late: int = 0
    errors: list[str] = field(default_factory=list)
    orders: int = 0
    measured_from: float = 0.0
    measured_to: float = 0.0


async def drive(args: argparse.Namespace, api: str) -> Load:
    """`args.rate` partner orders a second on a fixed schedule, each cancelled `args.cancel_after` later."""
    load = Load()
    interval = 1 / args.rate
    begin = time.time() + 0.2
    load.measured_from = begin + args.warmup
    load.measured_to = load.measured_from + args.seconds
    tasks: list[asyncio.Task[None]] = []
    async with client(api, Role.PARTNER, PARTNER, connections=128) as partner:

        async def command(path: str, body: dict[str, Any], at: float) -> str | None:
            sent = time.time()
            if sent - at > 0.05:
                load.late += 1
            try:
                answer = await partner.post(path, json=body)
            except httpx.HTTPError as e:
                load.errors.append(f"{path}: {type(e).__name__}: {e}")
                return None
            done = time.time()
            if answer.status_code not in (200, 201):
                load.errors.append(f"{path}: {answer.status_code} {answer.text[:200]}")
                return None
            data = answer.json()
            if load.measured_from <= at < load.measured_to:
                load.api.append(done - sent)
                load.visible.append(done - epoch(data["updated_at"]))
            order_id: str = data["order_id"]
            return order_id

        async def order(at: float) -> None:
            order_id = await command("/orders", NEW_ORDER, at)
            load.orders += 1
            if order_id is None or not args.cancel:
                return
            when = at + args.cancel_after
            await asyncio.sleep(max(0.0, when - time.time()))
            await command(f"/orders/{order_id}/cancel", {"reason": "bench"}, when)

        slot = begin
        while slot < load.measured_to:
            await asyncio.sleep(max(0.0, slot - time.time()))
            tasks.append(asyncio.create_task(order(slot)))
            slot += interval
        await asyncio.gather(*tasks)
    return load


async def sampled(work: Any, sampler: ActivitySampler) -> Load:
    task = asyncio.create_task(sampler.run())
    try:
        result: Load = await work
    finally:
        sampler.halt.set()
        await task
    return result


@dataclass
class Latency:
    p50: float
    p99: float
    visible_p99: float
    sender_cpu: float
    per_message_ms: float


def latency(args: argparse.Namespace, api: str, receiver: str, dsn: str, env: dict[str, str]) -> Latency:
    per_order = 2 if args.cancel else 1
    print(
        f"\n=== latency: {args.rate:g} partner orders/s for {args.seconds:g} s (+{args.warmup:g} s warm-up)"
        + (f", each cancelled {args.cancel_after:g} s later" if args.cancel else "")
        + f": {args.rate * per_order:g} messages/s ==="
    )
    postmaster = int((Path(args.pgdata) / "postmaster.pid").read_text().split()[0])
    metrics_port = free_port()
    env = {**env, "METRICS_PORT": str(metrics_port)}
    profile = str(Path(tempfile.mkdtemp(prefix="webhooks-profile-")) / "sender") if args.profile else None
    with part(["webhooks"], env, profile) as sender:
        sender_active(dsn, sender)
        before, opened = count(receiver), connections(receiver)
        time.sleep(1.0)  # let the outbox's first catch-up settle
        meter = CpuMeter(
            {
                "api": args.api_pid,
                "webhooks": sender.pid,
                "PostgreSQL": postmaster,
                "receiver": args.receiver_pid,
            },
            own="bench (load)",
        )
        scraped = scrape(metrics_port)
        sampler = ActivitySampler(dsn)
        meter.start()
        load = asyncio.run(sampled(drive(args, api), sampler))
        cpu = meter.stop()
        window = load.measured_to - load.measured_from + args.warmup
        got = wait_for_count(receiver, before + load.orders * per_order, patience=10)
        came = [a for a in arrivals(receiver, before) if a[1] == "/hook"]
        rescraped = scrape(metrics_port)
        opened = connections(receiver) - opened
    lags: list[float] = []
    measured: dict[str, float] = {}
    for arrived, _, headers, body in came:
        event_at = epoch(json.loads(body)["timestamp"])
        if load.measured_from <= event_at < load.measured_to:
            lags.append(arrived - event_at)
            measured[headers["webhook-id"]] = arrived
    print(
        f"orders {load.orders:,} ({load.late:,} commands started >50 ms late, {len(load.errors)} errors); "
        f"messages arrived {got - before:,} of {load.orders * per_order:,}"
    )
    for error in load.errors[:3]:
        print(f"  error: {error}")
    print(f"  connections the sender opened to the receiver: {opened:,}")
    print(f"  event -> receiver (commit to 2xx):      {ms(lags)}")
    print(f"  baseline: event -> API answer at client: {ms(load.visible)}")
    print(f"  baseline: API latency (send to answer):  {ms(load.api)}")
    breakdown(dsn, measured)
    batches = histogram(scraped, rescraped, "backbone_projection_batch_seconds", 'projection="webhooks"')
    events = rescraped.get('backbone_projection_events_total{projection="webhooks"}', 0.0) - scraped.get(
        'backbone_projection_events_total{projection="webhooks"}', 0.0
    )
    print(f"    outbox batches (apply and commit): {batches}; {events:,.0f} events")
    posts = histogram(scraped, rescraped, "backbone_webhook_attempt_seconds")
    print(f"    POSTs (the sender's attempt_seconds): {posts}")
    sampler.report()
    print(f"  CPU: {cpu_text(cpu)}")
    messages = len(lags) / args.seconds
    sender_ms = cpu["webhooks"] / max(messages, 1e-9) * 1000
    print(f"  sender CPU: {cpu['webhooks']:.0%} of a core, {sender_ms:.2f} ms a message ({window:.0f} s)")
    if profile is not None:
        show_profile(profile)
    return Latency(
        percentile(lags, 50), percentile(lags, 99), percentile(load.visible, 99), cpu["webhooks"], sender_ms
    )


def breakdown(dsn: str, measured: dict[str, float]) -> None:
    """Where each message's time went, from the sender's tables (PostgreSQL's clock is this machine's)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT m.message_id, extract(epoch FROM m.occurred_at), extract(epoch FROM m.created_at), "
            "extract(epoch FROM a.attempted_at), a.latency_ms, m.attempts FROM webhooks.messages m "
            "JOIN webhooks.attempts a USING (message_id) "
            "WHERE m.message_id = ANY(%s) AND a.status_code = 200",
            (list(measured),),
        ).fetchall()
    outbox, claim, post, record = [], [], [], []
    retried = 0
    for message_id, occurred, created, attempted, latency_ms, attempts in rows:
        occurred, created, attempted = float(occurred), float(created), float(attempted)
        started = attempted - latency_ms / 1000
        arrived = measured[message_id]
        outbox.append(created - occurred)
        claim.append(started - created)
        post.append(arrived - started)
        record.append(attempted - arrived)
        retried += attempts > 1
    print("  where the time goes (from webhooks.messages and webhooks.attempts):")
    print(f"    event -> outbox row (runner wake-up, read):  {ms(outbox)}")
    print(f"    outbox row -> attempt start (commit, NOTIFY, claim, endpoint read): {ms(claim)}")
    print(f"    attempt start -> arrival (sign, POST):      {ms(post)}")
    print(f"    arrival -> 2xx back at the sender:          {ms(record)}")
    if retried:
        print(f"    {retried} messages needed more than one attempt")


# --- 3. signatures ------------------------------------------------------------------------------------------


def verify(receiver: str, secret: str, sample: int) -> None:
    came = [a for a in arrivals(receiver) if a[1] == "/hook"]
    step = max(1, len(came) // max(1, sample))
    checked = came[::step][:sample]
    bad = 0
    for _, _, headers, body in checked:
        try:
            Webhook(secret).verify(body, headers)
        except WebhookVerificationError:
            bad += 1
    print(f"\nsignatures: {len(checked) - bad} of {len(checked)} sampled messages verify (standardwebhooks)")


# --- profiling the sender -----------------------------------------------------------------------------------


def run_profiled(out: str, argv: list[str]) -> int:
    """`backbone *argv` with every thread under cProfile; stats into `out`.<thread> when it exits."""
    import cProfile
    import threading

    from backbone.cli import main as backbone

    profiles: list[tuple[str, cProfile.Profile]] = []
    original = threading.Thread.run

    def profiled(self: threading.Thread) -> None:
        profile = cProfile.Profile()
        profiles.append((self.name.split("_")[0].split(" ")[0], profile))
        profile.enable()
        try:
            original(self)
        finally:
            profile.disable()

    threading.Thread.run = profiled  # type: ignore[method-assign]
    main = cProfile.Profile()
    profiles.append(("main", main))
    main.enable()
    try:
        return backbone(argv)
    finally:
        main.disable()
        for name in {n for n, _ in profiles}:
            stats = [p for n, p in profiles if n == name]
            first = pstats.Stats(stats[0])
            for more in stats[1:]:
                first.add(pstats.Stats(more))
            first.dump_stats(f"{out}.{name}")


def show_profile(out: str) -> None:
    """The profiled sender's busiest functions per thread (cProfile's overhead inflates the times)."""
    for path in sorted(Path(out).parent.glob(f"{Path(out).name}.*")):
        stats = pstats.Stats(str(path))
        total = getattr(stats, "total_tt", 0.0)
        if total < 0.2:
            continue
        print(
            f"\n  profile of the sender's thread(s) {path.suffix[1:]!r}: {total:.1f} s in all; "
            "top by cumulative"
        )
        stats.sort_stats("cumulative").print_stats(22)


# --- main ---------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--backlog", type=int, default=1000, help="orders in the throughput backlog (1000)")
    parser.add_argument("--rate", type=float, default=50.0, help="new partner orders per second (50)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds of load (30)")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first (3)")
    parser.add_argument(
        "--cancel",
        action="store_true",
        help="cancel each order --cancel-after s later: two messages an order",
    )
    parser.add_argument("--cancel-after", type=float, default=0.5, help="seconds to each cancel (0.5)")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="the baseline client's (the sender's, 32)"
    )
    parser.add_argument("--verify", type=int, default=20, help="messages whose signature is checked (20)")
    parser.add_argument(
        "--profile", action="store_true", help="run the latency phase's sender under cProfile, print its top"
    )
    parser.add_argument(
        "--phases", nargs="+", choices=["throughput", "latency"], default=["throughput", "latency"]
    )
    parser.add_argument(
        "--sender-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for `backbone webhooks` (WEBHOOK_CONCURRENCY=8, say); repeatable",
    )
    parser.add_argument("--receiver", type=int, default=None, help=argparse.SUPPRESS)
    if argv is None and sys.argv[1:2] == ["--profiled"]:
        return run_profiled(sys.argv[2], sys.argv[3:])
    args = parser.parse_args(argv)
    if args.receiver is not None:
        asyncio.run(Receiver().serve(args.receiver))
        return 0
    started = time.perf_counter()
    print(f"other processes on the machine: {background_cpu():.0%} of a core; {os.cpu_count()} cores")
    with embedded_postgres() as (dsn, pgdata), receiver_process() as (receiver, receiver_proc):
        args.pgdata, args.receiver_pid = str(pgdata), receiver_proc.pid
        env = bench_env(dsn, tempfile.mkdtemp(prefix="backbone-webhooks-bench-"))
        port = free_port()
        api = f"http://{HOST}:{port}"
        with part(["api", "--host", HOST, "--port", str(port)], env) as api_proc:
            healthy(api, api_proc)
            args.api_pid = api_proc.pid

            async def register() -> dict[str, Any]:
                async with client(api, Role.PARTNER, PARTNER) as partner:
                    answer = await partner.post(
                        "/webhooks", json={"url": f"{receiver}/hook", "event_types": TYPES}
                    )
                    answer.raise_for_status()
                    endpoint: dict[str, Any] = answer.json()
                    return endpoint

            endpoint = asyncio.run(register())
            print(f"endpoint {endpoint['endpoint_id']} -> {receiver}/hook, subscribed to {', '.join(TYPES)}")
            sender_env = {**env, **dict(v.split("=", 1) for v in args.sender_env)}
            if args.sender_env:
                print(f"the sender's environment adds {', '.join(args.sender_env)}")
            through = lat = None
            if "throughput" in args.phases:
                through = throughput(args, api, receiver, dsn, sender_env)
            if "latency" in args.phases:
                lat = latency(args, api, receiver, dsn, sender_env)
            verify(receiver, endpoint["secret"], args.verify)
    print("\nsummary:")
    if through is not None:
        print(
            f"  throughput {through.rate:,.0f} messages/s; receiver baseline {through.baseline:,.0f}/s; "
            f"ratio {through.rate / through.baseline:.2f}; "
            f"sender CPU {through.cpu_per_message * 1000:.2f} ms a message"
        )
    if lat is not None:
        verdict = "met" if lat.p99 < 0.2 else "missed"
        print(
            f"  at {args.rate:g} orders/s: commit -> 2xx p50 {lat.p50 * 1000:.0f} ms, "
            f"p99 {lat.p99 * 1000:.0f} ms (target p99 < 200 ms: {verdict}); "
            f"baseline event -> API answer p99 {lat.visible_p99 * 1000:.0f} ms, "
            f"ratio {lat.p99 / lat.visible_p99:.1f}; sender CPU {lat.sender_cpu:.0%} of a core "
            f"({lat.per_message_ms:.2f} ms a message)"
        )
    print(f"total run time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
