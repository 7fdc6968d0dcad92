"""End-to-end pricing latency: from the answer to ``POST /orders/{order_id}/submit`` to PRICE_CALCULATED.

What it measures, for each configuration in ``--configs`` (each in a temporary BACKBONE_HOME, started by
this script and stopped, removed, at the end):

- ``up``: ``backbone up``, one process: API, projections, relay, one pricing worker and the results
  consumer around the in-process broker, on the embedded PostgreSQL;
- ``scaled``: ``backbone up --scaled``, every part its own process (command and read APIs x2 behind a
  gateway, projectors and relays with standbys, 3 pricing workers, the results consumer) on the embedded
  PostgreSQL and a local RabbitMQ node, models read from PostgreSQL (``BLOB_STORE=postgres``).

A customer (a token minted with the ``JWT_SECRET`` given to the system) walks ``--orders`` (40) orders one at
a time, after ``--warmup`` (3) unmeasured ones: ``POST /orders``, ``PUT /orders/{order_id}/model`` (a closed
torus of ``--triangles``, 100,000, as binary STL, uploaded afresh for every order), a pause of ``--pause``
(0.25 s, so the upload's own events are relayed and projected first), then ``POST /orders/{order_id}/submit``.
From the submit's response the order is polled with ``GET /orders/{order_id}`` every ``--poll`` (10 ms) until
its status leaves SUBMITTED: the latency is the time to the response that shows PRICE_CALCULATED (resolution:
the poll interval plus one GET). Printed: p50, p95, max (target of issue 5: p95 under 1 s), beside the
server's own view from the order's history (OrderSubmitted's to PriceCalculated's event timestamp) and the CPU
each part used while the orders were walked, with what other processes on the machine used (another session
busy on the cores distorts every figure).

Nothing is asserted. Run from the repository root::

    .venv/bin/python bench/submit_to_price.py                        # both configurations, ~3 min
    .venv/bin/python bench/submit_to_price.py --configs scaled --orders 50 --triangles 300000
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from backbone.rabbitmq import free_port
from harness import background_cpu, free_block, healthy  # bench/ is on sys.path
from http_edge.identity import mint_token
from orders_core.lifecycle import Role
from quote import torus, write_stl

HOST = "127.0.0.1"
SECRET = "bench-submit-to-price-secret-0123456789"
NEW_ORDER = {"contact_name": "Bench Client", "item_title": "Ring", "material_code": "AU750", "quantity": 1}
CLEARED = ("DATABASE_URL", "AMQP_URL", "BLOB_STORE", "HOST", "PORT", "METRICS_PORT", "JWT_SECRET")


# --- CPU ---------------------------------------------------------------------------------------------------


def part_of(proc: psutil.Process, root: int) -> str:
    """What a process of the system is: `api`, `worker pricing`, `RabbitMQ`... (descendants inherit it)."""
    for p in [proc, *proc.parents()]:
        try:
            parent = p.ppid()
            command = p.cmdline()
        except psutil.Error:
            return "?"
        if p.pid == root:
            return "backbone up"
        if parent == root:
            if "backbone.cli" in command:
                return " ".join(command[command.index("backbone.cli") + 1 :])
            return "RabbitMQ" if any("rabbitmq" in c for c in command) else Path(command[0]).name
    return "?"


class CpuMeter:
    """CPU used by each part of the system, PostgreSQL, this process and the rest of the machine, in cores.

    Processes are sampled by pid at the start and the end of the window; a process that ended inside it is
    counted through its parent's reaped-children times (PostgreSQL's short-lived backends, say).
    """

    def __init__(self, root: int, postmaster: int | None) -> None:
        self.root, self.postmaster = root, postmaster
        self._start: dict[int, tuple[str, float]] = {}
        self._busy = 0.0
        self._wall = 0.0

    def _sample(self) -> tuple[dict[int, tuple[str, float]], float]:
        found: dict[int, tuple[str, float]] = {}
        trees: list[tuple[int, str | None]] = [(self.root, None)]
        if self.postmaster is not None:
            trees.append((self.postmaster, "PostgreSQL"))
        for pid, label in trees:
            try:
                root = psutil.Process(pid)
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            for proc in tree:
                try:
                    t = proc.cpu_times()
                    name = label or part_of(proc, self.root)
                except psutil.Error:
                    continue
                found[proc.pid] = (name, t.user + t.system + t.children_user + t.children_system)
        me = psutil.Process().cpu_times()
        found[os.getpid()] = ("bench (client)", me.user + me.system)
        machine = psutil.cpu_times()
        return found, sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)

    def start(self) -> None:
        self._start, self._busy = self._sample()
        self._wall = time.perf_counter()

    def stop(self) -> dict[str, float]:
        end, busy = self._sample()
        wall = time.perf_counter() - self._wall
        used: dict[str, float] = {}
        for pid, (name, seconds) in end.items():
            used[name] = used.get(name, 0.0) + (seconds - self._start.get(pid, (name, 0.0))[1]) / wall
        cores = dict(sorted(used.items(), key=lambda item: -item[1]))
        cores["other processes"] = max(0.0, (busy - self._busy) / wall - sum(used.values()))
        return cores


# --- the system --------------------------------------------------------------------------------------------


@dataclass
class System:
    """A running `backbone up` (scaled or not)."""

    config: str
    home: Path
    url: str
    process: subprocess.Popen[bytes]

    def postmaster(self) -> int | None:
        pidfile = self.home / "pgdata" / "postmaster.pid"
        return int(pidfile.read_text().split()[0]) if pidfile.exists() else None


@contextmanager
def running(config: str) -> Iterator[System]:
    """`backbone up [--scaled]` in a fresh BACKBONE_HOME; stopped with SIGINT, stragglers killed, removed."""
    home = Path(tempfile.mkdtemp(prefix=f"bench-price-{config}-"))
    port = free_block() if config == "scaled" else free_port()
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update({"BACKBONE_HOME": str(home), "JWT_SECRET": SECRET})
    command = [sys.executable, "-m", "backbone.cli", "up", "--host", HOST, "--port", str(port)]
    if config == "scaled":
        command.append("--scaled")
    with (home / "up.log").open("ab") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)
    url = f"http://{HOST}:{port}"
    try:
        healthy(url, process, 180)
        if config == "scaled":  # both command API replicas, not only the gateway
            for replica in (1, 2):
                healthy(f"http://{HOST}:{port + replica}", process, 180)
        yield System(config, home, url, process)
    except BaseException:
        print((home / "up.log").read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(90)
            except subprocess.TimeoutExpired:
                print("backbone up did not stop within 90 s: killed", file=sys.stderr)
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for proc in leftovers(home):
            print(f"left running by `backbone up`, stopped: {proc.pid} {' '.join(proc.cmdline())}")
            proc.kill()
        shutil.rmtree(home, ignore_errors=True)


def leftovers(home: Path, wait: float = 10.0) -> list[psutil.Process]:
    """Processes still running that name `home` in their command line or environment (after `wait` s)."""
    deadline = time.monotonic() + wait
    while True:
        found = []
        for proc in psutil.process_iter():
            if proc.pid == os.getpid():
                continue
            try:
                text = " ".join(proc.cmdline()) + " " + " ".join(proc.environ().values())
            except psutil.Error:
                continue
            if str(home) in text:
                found.append(proc)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


# --- the customer ------------------------------------------------------------------------------------------


@dataclass
class Figures:
    """Latencies of the measured orders of one configuration."""

    config: str
    latencies: list[float] = field(default_factory=list)
    server: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def percentile(values: list[float], p: float) -> float:
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def line(self, values: list[float]) -> str:
        return (
            f"p50 {self.percentile(values, 50) * 1000:6.0f} ms   "
            f"p95 {self.percentile(values, 95) * 1000:6.0f} ms   "
            f"max {max(values, default=float('nan')) * 1000:6.0f} ms   (n={len(values)})"
        )


def priced(client: httpx.Client, model: bytes, pause: float, poll: float) -> tuple[float, str, str]:
    """Walk one order to its pricing result: (seconds from submit's answer, final status, order id)."""
    created = client.post("/orders", json=NEW_ORDER)
    created.raise_for_status()
    order_id: str = created.json()["order_id"]
    uploaded = client.put(f"/orders/{order_id}/model", content=model, headers={"Content-Type": "model/stl"})
    uploaded.raise_for_status()
    time.sleep(pause)
    client.post(f"/orders/{order_id}/submit").raise_for_status()
    submitted = time.perf_counter()
    deadline = submitted + 120
    while time.perf_counter() < deadline:
        status: str = client.get(f"/orders/{order_id}").json()["status"]
        if status != "SUBMITTED":
            return time.perf_counter() - submitted, status, order_id
        time.sleep(poll)
    return float("inf"), "SUBMITTED after 120 s", order_id


def server_seconds(client: httpx.Client, order_id: str) -> float | None:
    """OrderSubmitted's to PriceCalculated's event timestamp, from the order's history."""
    history: list[dict[str, Any]] = client.get(f"/orders/{order_id}/history").json()
    stamps = {h["event"]: datetime.fromisoformat(h["timestamp"]) for h in history}
    if "OrderSubmitted" in stamps and "PriceCalculated" in stamps:
        return (stamps["PriceCalculated"] - stamps["OrderSubmitted"]).total_seconds()
    return None


def measure(system: System, model: bytes, args: argparse.Namespace) -> Figures:
    figures = Figures(system.config)
    token = mint_token(SECRET, Role.CUSTOMER, "bench-customer")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=system.url, headers=headers, timeout=60) as client:
        for _ in range(args.warmup):  # workers connected, first quote, connection pools filled
            seconds, status, _ = priced(client, model, args.pause, args.poll)
            print(f"  warm-up order: {status} after {seconds * 1000:.0f} ms", flush=True)
        postmaster = system.postmaster()
        meter = CpuMeter(system.process.pid, postmaster)
        meter.start()
        ids = []
        for _ in range(args.orders):
            seconds, status, order_id = priced(client, model, args.pause, args.poll)
            figures.outcomes[status] += 1
            if status == "PRICE_CALCULATED":
                figures.latencies.append(seconds)
                ids.append(order_id)
        figures.cpu = meter.stop()
        for order_id in ids:
            server = server_seconds(client, order_id)
            if server is not None:
                figures.server.append(server)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--configs", nargs="+", choices=["up", "scaled"], default=["up", "scaled"])
    parser.add_argument("--orders", type=int, default=40, help="measured orders per configuration (40)")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured orders first (3)")
    parser.add_argument("--triangles", type=int, default=100_000, help="triangles of the model (100000)")
    parser.add_argument("--pause", type=float, default=0.25, help="seconds from upload to submit (0.25)")
    parser.add_argument("--poll", type=float, default=0.01, help="seconds between GETs (0.01)")
    args = parser.parse_args(argv)

    print(f"background CPU before the run: {background_cpu():.0%} of {os.cpu_count()} cores", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-price-model-") as tmp:
        vertices, faces = torus(args.triangles)
        path = Path(tmp) / "torus.stl"
        write_stl(path, vertices, faces)
        model = path.read_bytes()
    print(
        f"model: torus, {len(faces):,} triangles, binary STL {len(model) / 1e6:.1f} MB; "
        "CPU figures in cores (100% = one core busy)",
        flush=True,
    )
    results = []
    for config in args.configs:
        print(f"\n{config}: starting `backbone up{' --scaled' if config == 'scaled' else ''}`", flush=True)
        with running(config) as system:
            figures = measure(system, model, args)
        results.append(figures)
        odd = {k: v for k, v in figures.outcomes.items() if k != "PRICE_CALCULATED"}
        print(f"  submit -> PRICE_CALCULATED (client):        {figures.line(figures.latencies)}")
        print(f"  OrderSubmitted -> PriceCalculated (events): {figures.line(figures.server)}")
        if odd:
            print(f"  not priced: {odd}")
        print("  CPU: " + ", ".join(f"{k} {v:.0%}" for k, v in figures.cpu.items() if v >= 0.005), flush=True)

    print("\nsummary (target: p95 under 1 s)")
    for figures in results:
        print(f"  {figures.config:<7} {figures.line(figures.latencies)}")
    print(f"  total run time {time.perf_counter() - started:.0f} s")
    print(f"background CPU after the run: {background_cpu():.0%}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
