"""Take-next under 20 concurrent operators, beside taking a known order, in one run.

What it measures, on one embedded PostgreSQL (started in a temporary directory, stopped and removed at the
end, with the processes it starts):

1. seeds orders in MANUFACTURING_APPROVED straight through ``OrdersApplication`` (initiate with a promised
   date 1-30 days out and one of six materials, model, submit, quote, approve): enough for both ways of
   taking below, and ``--waiting`` (2,000) more that stay in the queue; then starts ``backbone projector
   mes`` and ``backbone api --workers N`` as deployed and waits until the MES view lists every one;
2. the baseline, taking an order by id (``POST /orders/{order_id}/take``, the console's Take button: one
   StartManufacturing) from a list handed out beforehand; then take-next (``POST /orders/take-next``: the
   server picks the most urgent order the operator works from the view and takes it with
   StartManufacturing, skipping orders another took first). Each way runs two phases: ``--alone`` (200)
   presses by one operator, one at a time (the latency of an unloaded server), then ``--bursts`` (50)
   rounds in which ``--operators`` (20) operators, each with its own keep-alive client, press at the same
   moment;
3. prints p50/p95/p99/max of each phase, the ratio of take-next's to the baseline's with 20 at once, the
   CPU of the API, the projector, PostgreSQL (and other processes), and the outcome: every order answered
   once, and no order taken twice on the write side (its ManufacturingStarted events). The target of issue
   17 is take-next p99 under 30 ms with 20 concurrent operators.

Nothing is asserted. Run from the repository root::

    .venv/bin/python bench/take_next.py                      # 20 operators, 1 API worker, ~2 min
    .venv/bin/python bench/take_next.py --workers 2 --bursts 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from uuid import UUID

import httpx
import psycopg

from backbone.database import eventsourcing_env
from backbone.observability import configure_logging
from commands import HOST, api_server  # bench/ is on sys.path
from harness import CpuMeter, background_cpu, cpu_text, embedded_postgres, percentile
from http_edge.identity import mint_token
from lag import CUSTOMER, MATERIALS, lifecycle, projector
from orders_core.actors import Actor
from orders_core.application import OrdersApplication
from orders_core.commands import InitiateOrder
from orders_core.lifecycle import Role
from orders_core.outcomes import Accepted

SECRET = "take-next-bench-secret-of-at-least-32-bytes"
APPROVED_STEPS = 4
"""lag.lifecycle's first steps: model, submit, quote, approve."""


def seed(app: OrdersApplication, count: int, rng: random.Random) -> list[UUID]:
    """`count` orders in MANUFACTURING_APPROVED, promised 1-30 days out."""
    today = date.today()
    made: list[UUID] = []
    nobody = Actor(Role.OPERATOR, "nobody")
    for _ in range(count):
        command = InitiateOrder(
            "shop",
            CUSTOMER.subject,
            "Ann Example",
            "Engagement ring",
            rng.choice(MATERIALS),
            1,
            promised_date=today + timedelta(days=rng.randint(1, 30)),
        )
        outcome = app.initiate(command, CUSTOMER)
        assert isinstance(outcome, Accepted), outcome
        order_id = outcome.value.id
        for step, actor in lifecycle(rng, nobody)[:APPROVED_STEPS]:
            done = app.execute(order_id, step, actor)
            assert isinstance(done, Accepted), done
        made.append(order_id)
    return made


def wait_listed(dsn: str, count: int, seconds: float = 600) -> None:
    """Until the MES view lists `count` approved orders (the projector caught up with the seeding)."""
    deadline = time.monotonic() + seconds
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT count(*) FROM mes.orders WHERE status = 'MANUFACTURING_APPROVED'"
            ).fetchone()
            if row and row[0] >= count:
                # as autovacuum would soon after such a burst of orders: without it the planner took the
                # queue for 23 rows and sorted every approved order on each press
                conn.execute("ANALYZE mes.orders")
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the MES view lists {row[0] if row else 0} of {count} orders")
            time.sleep(0.2)


def clients(base: str, operators: int) -> list[httpx.AsyncClient]:
    return [
        httpx.AsyncClient(
            base_url=base,
            headers={"Authorization": f"Bearer {mint_token(SECRET, Role.OPERATOR, f'op-{i:02d}')}"},
            timeout=60,
        )
        for i in range(operators)
    ]


class Taking:
    """One way of taking an order: by id from a list handed out beforehand, or take-next."""

    def __init__(self, by_id: list[UUID] | None) -> None:
        self._ids = by_id
        self.latencies: list[float] = []
        self.got: dict[int, list[str]] = {}
        self.codes: Counter[int] = Counter()

    async def press(self, operator: int, client: httpx.AsyncClient) -> None:
        """One press of the operator's button; a 503 (the view behind) is pressed again, as a user would."""
        while True:
            sent = time.perf_counter()
            if self._ids is None:
                answer = await client.post("/orders/take-next")
            else:
                answer = await client.post(f"/orders/{self._ids.pop()}/take")
            took = (time.perf_counter() - sent) * 1000
            self.codes[answer.status_code] += 1
            if answer.status_code != 503:
                break
        if answer.status_code == 200:
            self.latencies.append(took)
            self.got.setdefault(operator, []).append(answer.json()["order_id"])


async def phases(taking: Taking, operators: list[httpx.AsyncClient], alone: int, bursts: int) -> list[str]:
    """`alone` presses by one operator, one at a time; then `bursts` rounds in which every operator presses
    at the same moment (each round starts when the last has its answer). Lines of figures."""
    lines = []
    began = time.perf_counter()
    for _ in range(alone):
        await taking.press(0, operators[0])
    lines.append(figures("one at a time", taking.latencies, time.perf_counter() - began))
    first = len(taking.latencies)
    began = time.perf_counter()
    for _ in range(bursts):
        await asyncio.gather(*(taking.press(i, c) for i, c in enumerate(operators)))
    lines.append(figures(f"{len(operators)} at once", taking.latencies[first:], time.perf_counter() - began))
    return lines


def figures(name: str, latencies: list[float], seconds: float) -> str:
    return (
        f"  {name:<14} {len(latencies):>5} taken {len(latencies) / seconds:>6.1f}/s"
        f"   p50 {percentile(latencies, 50):6.1f}"
        f"  p95 {percentile(latencies, 95):6.1f}  p99 {percentile(latencies, 99):6.1f}"
        f"  max {max(latencies, default=float('nan')):6.1f} ms"
    )


def started_per_order(dsn: str, ids: list[UUID]) -> Counter[str]:
    """ManufacturingStarted events per order on the write side."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT originator_id::text, count(*) FROM crm.orders_events "
            "WHERE topic LIKE %s AND originator_id = ANY(%s) GROUP BY 1",
            ("%ManufacturingStarted", ids),
        ).fetchall()
    return Counter({r[0]: int(r[1]) for r in rows})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alone", type=int, default=200, help="presses by one operator, one at a time")
    parser.add_argument("--bursts", type=int, default=50, help="rounds of every operator pressing at once")
    parser.add_argument("--operators", type=int, default=20)
    parser.add_argument("--waiting", type=int, default=2000, help="orders left waiting after the run")
    parser.add_argument("--workers", type=int, default=1, help="API processes (uvicorn workers)")
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    configure_logging(level="WARNING")
    rng = random.Random(args.seed)
    print(f"other processes before the run: {background_cpu():.0%} of a core")
    with embedded_postgres() as (dsn, pgdata):
        postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
        home = Path(tempfile.mkdtemp(prefix="backbone-bench-"))
        os.environ.update({"DATABASE_URL": dsn, "JWT_SECRET": SECRET, "LOG_LEVEL": "WARNING"})
        app = OrdersApplication(env=eventsourcing_env(dsn, pool_size=4))
        began = time.perf_counter()
        each = args.alone + args.bursts * args.operators
        orders = seed(app, 2 * each + args.waiting, rng)
        app.close()
        print(f"seeded {len(orders):,} approved orders in {time.perf_counter() - began:.0f} s")
        known, rest = orders[:each], orders[each:]
        with projector(dsn, home, 500) as projector_pid:
            wait_listed(dsn, len(orders))
            with api_server(home, args.workers, {"RATE_LIMIT_PER_MINUTE": "0"}) as (port, api_pid):
                groups = {"api": api_pid, "projector": projector_pid, "PostgreSQL": postmaster}
                base = f"http://{HOST}:{port}"

                async def run() -> None:
                    operators = clients(base, args.operators)
                    try:
                        runs = {"take by id (baseline)": Taking(list(known)), "take-next": Taking(None)}
                        for name, taking in runs.items():
                            meter = CpuMeter(groups)
                            meter.start()
                            lines = await phases(taking, operators, args.alone, args.bursts)
                            print(f"{name}: answers {dict(sorted(taking.codes.items()))}")
                            print("\n".join(lines))
                            print(f"  cpu: {cpu_text(meter.stop())}")
                        by_id, nexts = (t.latencies[args.alone :] for t in runs.values())
                        for p in (50, 95, 99):
                            ratio = percentile(nexts, p) / percentile(by_id, p)
                            print(f"take-next / take by id, {args.operators} at once, p{p}: {ratio:.2f}x")
                        got = runs["take-next"].got
                        answered = [o for ids in got.values() for o in ids]
                        started = started_per_order(dsn, rest)
                        print(
                            f"outcome of take-next: {len(answered):,} answered, "
                            f"{len(set(answered)):,} distinct; "
                            f"on the write side {len(started):,} taken, "
                            f"{sum(1 for n in started.values() if n > 1)} taken twice"
                        )
                    finally:
                        for client in operators:
                            await client.aclose()

                asyncio.run(run())


if __name__ == "__main__":
    main()
