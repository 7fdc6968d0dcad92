"""Whole-system load: simulated shop customers, partners, sellers and operators against `backbone up` (one
process) and `backbone up --scaled` (compose.yaml's topology as local processes), for a fixed time each.

For each setup, on a fresh database of one embedded PostgreSQL (and a local RabbitMQ node for the scaled
one): `--users` concurrent order journeys (bench/workload.py: 90% walk the whole lifecycle, 5% are
cancelled once priced, 5% upload a model pricing rejects and then a good one; customers read their order
from the shop view, operators list the MES), started for `--seconds`, then finished. The scaled setup's
requests go to its API replicas directly, balanced by the client as compose's nginx would, or with
`--via-gateway` through `up --scaled`'s own Python gateway. Printed per setup: orders and requests per
second, p50/p99 per endpoint, retries, errors, the CPU each side used, and the result of `backbone audit`
(nothing lost, doubled or left unconsumed). Then the scaled/single throughput ratio; the target of issue 7
is zero errors and zero lost orders at 2x the single process's throughput. Nothing is asserted. Run from
the repository root::

    .venv/bin/python bench/load.py                    # 32 users, 60 s per setup
    .venv/bin/python bench/load.py --users 48 --seconds 120 --setups scaled
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psutil
import psycopg

from backbone.migrate import migrate
from backbone.rabbitmq import RabbitMQ, free_port
from harness import (  # bench/ is on sys.path
    CpuMeter,
    background_cpu,
    cpu_text,
    embedded_postgres,
    free_block,
    healthy,
    part_env,
)
from workload import Workload, summary

SECRET = "load-bench-secret-" + "x" * 32
HOST = "127.0.0.1"


def new_database(server_dsn: str, name: str) -> str:
    """A fresh, migrated database on the server of `server_dsn`."""
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    host = psycopg.conninfo.conninfo_to_dict(server_dsn)["host"]
    dsn = f"postgresql://postgres@/{name}?host={host}"
    migrate(dsn)
    return dsn


@contextmanager
def system(setup: str, dsn: str, amqp: str | None) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """`backbone up` or `backbone up --scaled` on `dsn`; yields (port, process) once all APIs answer."""
    port = free_block()
    env = part_env(dsn, SECRET, tempfile.mkdtemp(prefix=f"backbone-load-{setup}-"))
    args = ["up", "--host", HOST, "--port", str(port)]
    if setup == "scaled":
        assert amqp is not None
        env["AMQP_URL"] = amqp
        args.append("--scaled")
    proc = subprocess.Popen([sys.executable, "-m", "backbone.cli", *args], env=env, start_new_session=True)
    try:
        replicas = range(1, 5) if setup == "scaled" else range(0, 1)
        for replica in replicas:
            healthy(f"http://{HOST}:{port + replica}", proc)
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def parts_of(proc: subprocess.Popen[bytes]) -> dict[str, list[int]]:
    """The processes of a `backbone up` by part (`api`, `projector mes`, `worker pricing`...): its children
    that run a `backbone.cli` subcommand (none for the single process: it is one part of its own)."""
    parts: dict[str, list[int]] = {}
    for child in psutil.Process(proc.pid).children():
        try:
            args = child.cmdline()
        except psutil.Error:
            continue
        if "backbone.cli" in args:
            rest = args[args.index("backbone.cli") + 1 :]
            part = " ".join(itertools.takewhile(lambda a: not a.startswith("-"), rest))
            parts.setdefault(part, []).append(child.pid)
    return parts


def audit(dsn: str, amqp: str | None) -> tuple[int, str]:
    """`backbone audit` on the database (and broker) just loaded: exit code and its report."""
    env = {**os.environ, "DATABASE_URL": dsn, "JWT_SECRET": SECRET}
    if amqp:
        env["AMQP_URL"] = amqp
    done = subprocess.run(
        [sys.executable, "-m", "backbone.cli", "audit", "--grace", "0", "--settle", "120"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return done.returncode, done.stdout.strip() or done.stderr.strip()


def run_setup(
    setup: str,
    server_dsn: str,
    amqp: str | None,
    users: int,
    seconds: float,
    seed: int,
    via_gateway: bool,
    servers: dict[str, list[int]],
) -> float:
    """Load one setup; prints its figures and returns its orders per second."""
    dsn = new_database(server_dsn, f"load_{setup}_{uuid.uuid4().hex[:6]}")
    with system(setup, dsn, amqp) as (port, proc):
        target: str | tuple[list[str], list[str]] = f"http://{HOST}:{port}"
        if setup == "scaled" and not via_gateway:
            # The replicas' own ports, balanced by the client as compose's nginx does: the Python gateway
            # of `up --scaled` is a laptop convenience that costs more CPU per request than the API behind it.
            target = (
                [f"http://{HOST}:{port + i}" for i in (1, 2)],
                [f"http://{HOST}:{port + i}" for i in (3, 4)],
            )
        workload = Workload(target, SECRET, seed, concurrency=users, read_every=2)
        meter = CpuMeter({"system": proc.pid}, own="load generator")
        # The servers too: the database server's CPU per order is where the single primary's limit shows.
        parts = CpuMeter({**parts_of(proc), **servers}, own="-")
        meter.start()
        parts.start()
        began = time.monotonic()
        journeys = asyncio.run(workload.run(seconds=seconds))
        took = time.monotonic() - began
        cpu = meter.stop()
        per_part = parts.stop()
        code, report = audit(dsn, amqp)
    finished = [j for j in journeys if j.final_status is not None]
    requests = workload.stats.requests()
    route = " through its gateway" if setup == "scaled" and via_gateway else ""
    print(f"\n== {setup}{route}: {users} users, {seconds:.0f} s of new orders, finished after {took:.0f} s")
    print(
        f"orders finished {len(finished)} ({len(finished) / took:.1f}/s), requests {requests} "
        f"({requests / took:.0f}/s), outcomes {summary(journeys)}, errors {len(workload.stats.errors)}"
    )
    for error in workload.stats.errors[:5]:
        print(f"  error: {error}")
    print(f"CPU: {cpu_text(cpu)}")
    if finished and setup == "scaled":
        # CPU seconds an order costs each part: what docs/scaling.md sizes replicas from.
        costs = {
            name: used * took / len(finished) * 1000
            for name, used in per_part.items()
            if name not in ("-", "other processes")
        }
        print("CPU per finished order: " + ", ".join(f"{n} {ms:.0f} ms" for n, ms in sorted(costs.items())))
    print(workload.stats.table())
    print(f"audit (exit {code}):\n{report}")
    return len(finished) / took


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=32, help="concurrent order journeys")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long new journeys start, per setup")
    parser.add_argument("--setups", nargs="+", default=["single", "scaled"], choices=["single", "scaled"])
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument(
        "--via-gateway",
        action="store_true",
        help="send the scaled setup's requests through `up --scaled`'s gateway instead of to the replicas",
    )
    args = parser.parse_args(argv)
    print(f"other processes on the machine: {background_cpu():.0%} of a core; {os.cpu_count()} cores")
    rates: dict[str, float] = {}
    with embedded_postgres() as (server_dsn, pgdata):
        rabbit = None
        servers = {"PostgreSQL": [int((pgdata / "postmaster.pid").read_text().split()[0])]}
        try:
            if "scaled" in args.setups:
                rabbit = RabbitMQ(Path(tempfile.mkdtemp(prefix="backbone-load-rabbit-")), free_port(), "load")
                rabbit.start()
                if rabbit.process is not None:
                    servers["RabbitMQ"] = [rabbit.process.pid]
            for setup in args.setups:
                rates[setup] = run_setup(
                    setup,
                    server_dsn,
                    rabbit.url if rabbit else None,
                    args.users,
                    args.seconds,
                    args.seed,
                    args.via_gateway,
                    servers,
                )
        finally:
            if rabbit is not None:
                rabbit.stop()
                rabbit.stop_epmd()
    if len(rates) == 2:
        ratio = rates["scaled"] / rates["single"]
        print(
            f"\nthroughput: single {rates['single']:.1f} orders/s, scaled {rates['scaled']:.1f} orders/s, "
            f"ratio {ratio:.2f} (target 2.00)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
