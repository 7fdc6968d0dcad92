"""Rebuild throughput of the MES projection over a million stored events, beside the raw read rate.

What it measures, in one run on one embedded PostgreSQL (started in a temporary directory, stopped and
removed at the end):

1. fills ``crm.orders_events`` with ``--events`` (1,000,000) real stored events: a few thousand orders are
   driven through their lifecycle by the real ``Order`` aggregate and commands (closed, cancelled,
   rejected and stalled paths) and encoded by the application's own mapper; copies of those event
   sequences, each under a fresh order id and number, are interleaved as a busy store would hold them
   (about ``--open`` orders in flight at any point) and written with COPY;
2. the raw rate of reading the same events with one SELECT (``notification_id, originator_id,
   originator_version, topic, state ... ORDER BY notification_id``), fetched fully by psycopg: with
   ``fetchall``, streamed through a server-side cursor, and the way the rebuild itself reads (binary rows,
   the id cast to text, libpq's chunked rows); the best of them is the raw rate;
3. the rebuild throughput of ``projectors.replay.replay(dsn, "mes", ...)`` (fresh ``mes_next`` schema,
   the MES loader's one pass over the log grouped by order, index builds, swap) in events/s, for each
   ``--batch-sizes`` value, with the CPU the bench process (the projector) and PostgreSQL used, and the
   ratio rebuild/raw, to the best raw read and to the ``fetchall`` one. The target of issue 4 is at least
   25% of the raw read rate;
4. with ``--profile``, one more rebuild under cProfile, with its top functions.

The CPU other processes used meanwhile is printed beside each figure (other sessions share this machine).
Nothing is asserted. Run from the repository root::

    .venv/bin/python bench/replay.py                       # 1,000,000 events, batch sizes 1000 5000 20000
    .venv/bin/python bench/replay.py --events 200000 --batch-sizes 5000 --profile
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import psycopg

from backbone.database import eventsourcing_env
from backbone.wiring import projection_runner
from harness import CpuMeter, cpu_text, embedded_postgres  # bench/ is on sys.path
from orders_core.actors import Actor
from orders_core.application import OrdersApplication
from orders_core.commands import (
    ApproveManufacturing,
    AttachModel,
    CancelOrder,
    CloseOrder,
    Command,
    CompleteManufacturing,
    InitiateOrder,
    RecordQuote,
    RejectModel,
    ShipOrder,
    StartManufacturing,
    StartPackaging,
    SubmitOrder,
)
from orders_core.contracts import MeshFigures, ModelFile, Quote, QuoteLine
from orders_core.lifecycle import Role
from orders_core.order import Order
from projectors.replay import replay

# --- the embedded server and CPU figures (as bench/commands.py) ---------------------------------------------


# --- the events ---------------------------------------------------------------------------------------------

CUSTOMER = Actor(Role.CUSTOMER, "cust-1")
PRICING = Actor(Role.SERVICE, "pricing")
SELLER = Actor(Role.SELLER, "seller-1")
OPERATORS = [Actor(Role.OPERATOR, f"op-{i:02d}") for i in range(1, 51)]
MATERIALS = ("AU750", "AU585", "AG925", "AU750W", "PT950", "PD950")
NAMES = ("Ann Example", "Lars Berg", "Maria Rossi", "Jonas Keller", "Sofia Lindqvist", "Hugo Dubois")
TITLES = ("Engagement ring", "Wedding band with engraving", "Drop pendant", "Signet ring", "Stud earrings")


def model_file(rng: random.Random) -> ModelFile:
    sha = f"{rng.getrandbits(256):064x}"
    return ModelFile(sha256=sha, filename="ring.stl", format="stl", size_bytes=rng.randrange(10**4, 10**7))


def quote_for(model: ModelFile, material: str, total: int) -> Quote:
    metal = total * 2 // 3
    return Quote(
        model_sha256=model.sha256,
        material_code=material,
        quantity=1,
        currency="EUR",
        lines=(
            QuoteLine(code="METAL", label="Metal", amount_minor=metal),
            QuoteLine(code="FINISHING", label="Finishing", amount_minor=total - metal),
        ),
        total_minor=total,
        figures=MeshFigures(
            volume_mm3=812.5, area_mm2=930.0, mass_g=12.6, triangle_count=24_000, bbox_mm=(21.0, 21.0, 6.0)
        ),
    )


def lifecycle(rng: random.Random, number: int) -> Order:
    """One order driven by the real aggregate along a random path; its events are still pending."""
    material = rng.choice(MATERIALS)
    command = InitiateOrder(
        "shop", CUSTOMER.subject, rng.choice(NAMES), rng.choice(TITLES), material, rng.choice((1, 1, 1, 2))
    )
    order = Order.initiate(uuid.uuid4(), f"A-{number}", command, CUSTOMER)
    assert isinstance(order, Order), order
    operator = rng.choice(OPERATORS)
    model = model_file(rng)
    fate = rng.random()
    steps: list[tuple[Command, Actor]] = [(AttachModel(model), CUSTOMER)]
    if rng.random() < 0.1:  # a second upload replaces the first
        model = model_file(rng)
        steps.append((AttachModel(model), CUSTOMER))
    steps.append((SubmitOrder(), CUSTOMER))
    if fate < 0.04:
        steps.append((RejectModel(model.sha256, "the model is not watertight"), PRICING))
    else:
        steps.append((RecordQuote(quote_for(model, material, rng.randrange(5_000, 900_000))), PRICING))
        if fate < 0.16:
            steps.append((CancelOrder("customer asked"), SELLER))
        else:
            steps += [
                (ApproveManufacturing(), SELLER),
                (StartManufacturing(), operator),
                (CompleteManufacturing(), operator),
                (StartPackaging(), operator),
                (ShipOrder("DHL", f"JD{number:012d}"), operator),
                (CloseOrder(), SELLER),
            ]
    if fate >= 0.97:  # stalled: the last steps never came
        steps = steps[: rng.randrange(0, len(steps))]
    for step, actor in steps:
        refusal = order.execute(step, actor)
        assert refusal is None, refusal
    return order


@dataclass
class Template:
    """One order's stored events: (version, topic, state), and the number to replace in copies."""

    number: bytes
    events: list[tuple[int, str, bytes]]


def templates(app: OrdersApplication, count: int, seed: int) -> list[Template]:
    rng = random.Random(seed)
    found = []
    for i in range(count):
        number = 900_000_000 + i
        order = lifecycle(rng, number)
        events = [app.mapper.to_stored_event(e) for e in order.collect_events()]
        found.append(
            Template(
                f'"A-{number}"'.encode(), [(e.originator_version, e.topic, bytes(e.state)) for e in events]
            )
        )
    return found


def event_stream(
    templates: Sequence[Template], total: int, open_orders: int, seed: int
) -> Iterator[tuple[uuid.UUID, int, str, bytes]]:
    """`total` events of copies of `templates`, about `open_orders` orders interleaved at any point."""
    rng = random.Random(seed)
    numbers = iter(range(100_001, 10**9))
    active: list[tuple[uuid.UUID, list[tuple[int, str, bytes]], int]] = []
    emitted = 0

    def start() -> tuple[uuid.UUID, list[tuple[int, str, bytes]], int]:
        template = rng.choice(templates)
        number = f'"A-{next(numbers)}"'.encode()
        first_version, topic, state = template.events[0]
        events = [(first_version, topic, state.replace(template.number, number)), *template.events[1:]]
        return uuid.UUID(int=rng.getrandbits(128), version=4), events, 0

    while emitted < total:
        if len(active) < open_orders:
            active.append(start())
            continue
        i = rng.randrange(len(active))
        order_id, events, done = active[i]
        version, topic, state = events[done]
        yield order_id, version, topic, state
        emitted += 1
        if done + 1 == len(events):
            active[i] = start()
        else:
            active[i] = (order_id, events, done + 1)


def fill_store(dsn: str, total: int, open_orders: int, seed: int) -> None:
    t0 = time.perf_counter()
    app = OrdersApplication(env=eventsourcing_env(dsn, pool_size=1))
    try:
        made = templates(app, 3000, seed)
    finally:
        app.close()
    per_order = sum(len(t.events) for t in made) / len(made)
    print(
        f"  {len(made):,} orders through the real aggregate and mapper ({per_order:.1f} events each): "
        f"{time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    t0 = time.perf_counter()
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY crm.orders_events (originator_id, originator_version, topic, state) "
            "FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["uuid", "int8", "text", "bytea"])
            for event in event_stream(made, total, open_orders, seed):
                copy.write_row(event)
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE crm.orders_events")
        row = conn.execute(
            "SELECT count(*), count(DISTINCT originator_id), pg_size_pretty(pg_total_relation_size("
            "'crm.orders_events')) FROM crm.orders_events"
        ).fetchone()
    assert row is not None
    print(
        f"  COPY {total:,} events (store now {row[0]:,} events of {row[1]:,} aggregates, {row[2]}): "
        f"{time.perf_counter() - t0:.1f} s",
        flush=True,
    )


# --- measuring ----------------------------------------------------------------------------------------------

RAW_QUERY = (
    "SELECT notification_id, originator_id, originator_version, topic, state "
    "FROM crm.orders_events ORDER BY notification_id"
)
STREAM_QUERY = (
    "SELECT notification_id, originator_id::text, originator_version, topic, state "
    "FROM crm.orders_events WHERE notification_id > 0 ORDER BY notification_id"
)
"""The query of the rebuild's own read (ProjectorRunner._stream_log)."""

RAW_READS = {
    "fetchall": "fetchall, text rows",
    "server-side": "server-side cursor, fetchmany(10000), text rows",
    "stream": "binary rows, chunked stream(size=5000): the rebuild's own read",
}


def raw_read(dsn: str, meter: CpuMeter, how: str) -> tuple[int, float, dict[str, float]]:
    """Events read by one SELECT (`how`: a key of RAW_READS), the seconds it took, and the CPU used."""
    with psycopg.connect(dsn) as conn:
        meter.start()
        t0 = time.perf_counter()
        count = 0
        if how == "server-side":
            with conn.cursor(name="raw_read") as cur:
                cur.itersize = 10_000
                cur.execute(RAW_QUERY)
                while rows := cur.fetchmany(10_000):
                    count += len(rows)
        elif how == "stream":
            with conn.cursor(binary=True) as cur:
                for _ in cur.stream(STREAM_QUERY, size=5000):
                    count += 1
        else:
            count = len(conn.execute(RAW_QUERY).fetchall())
        seconds = time.perf_counter() - t0
        return count, seconds, meter.stop()


def rebuild(
    dsn: str, batch_size: int, meter: CpuMeter, quiet: bool = False
) -> tuple[int, float, dict[str, float]]:
    """One replay of the MES projection; (events applied, seconds, CPU)."""
    applied = 0
    next_report = 0.0
    t0 = time.perf_counter()

    def progress(events: int, position: int) -> None:
        nonlocal applied, next_report
        applied += events
        elapsed = time.perf_counter() - t0
        if not quiet and elapsed >= next_report:
            print(f"    ... {applied:,} events, {applied / elapsed:,.0f}/s", flush=True)
            next_report = elapsed + 15

    meter.start()
    replay(dsn, "mes", lambda schema: projection_runner("mes", dsn, schema, batch_size), progress)
    return applied, time.perf_counter() - t0, meter.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000, help="stored events to create (1,000,000)")
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[1000, 5000, 20000], help="one rebuild per value"
    )
    parser.add_argument("--open", type=int, default=20_000, help="orders in flight at once in the store")
    parser.add_argument("--seed", type=int, default=4, help="random seed")
    parser.add_argument(
        "--profile", action="store_true", help="one more rebuild (first batch size) under cProfile"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    with embedded_postgres(args.keep) as (dsn, pgdata):
        with psycopg.connect(dsn) as conn:
            version = conn.execute("SHOW server_version").fetchone()
        print(f"PostgreSQL {version[0] if version else '?'} (embedded); {os.cpu_count()} CPU(s)", flush=True)
        print(f"creating {args.events:,} stored events ...", flush=True)
        fill_store(dsn, args.events, args.open, args.seed)
        meter = CpuMeter({"PostgreSQL": int((pgdata / "postmaster.pid").read_text().split()[0])})

        raws: dict[str, float] = {}
        for how in ("fetchall", *RAW_READS):  # the first read warms the cache
            count, seconds, cpu = raw_read(dsn, meter, how)
            print(
                f"raw SELECT ({RAW_READS[how]}): {count:,} events in {seconds:.2f} s = "
                f"{count / seconds:,.0f}/s   CPU: {cpu_text(cpu)}",
                flush=True,
            )
            raws[how] = max(raws.get(how, 0.0), count / seconds)
        raw = max(raws.values())

        results = []
        for batch_size in args.batch_sizes:
            print(f"rebuild (replay of 'mes'), batch_size {batch_size}:", flush=True)
            applied, seconds, cpu = rebuild(dsn, batch_size, meter)
            rate = applied / seconds
            results.append((batch_size, rate, cpu))
            print(
                f"  {applied:,} events in {seconds:.1f} s = {rate:,.0f}/s = {rate / raw:.1%} of raw   "
                f"CPU: {cpu_text(cpu)}",
                flush=True,
            )

        if args.profile:
            batch_size = args.batch_sizes[0]
            print(f"\nprofile of one rebuild, batch_size {batch_size} (cProfile slows the Python side)")
            profiler = cProfile.Profile()
            profiler.enable()
            applied, seconds, cpu = rebuild(dsn, batch_size, meter, quiet=True)
            profiler.disable()
            print(f"  {applied:,} events in {seconds:.1f} s under the profiler   CPU: {cpu_text(cpu)}")
            for key in ("tottime", "cumulative"):
                out = io.StringIO()
                pstats.Stats(profiler, stream=out).sort_stats(key).print_stats(25)
                text = out.getvalue()
                print(text[text.find("   ncalls") :].rstrip() + "\n")

        print("\nsummary")
        for how, rate in raws.items():
            print(f"  raw read, {RAW_READS[how]}: {rate:,.0f} events/s")
        print(f"  raw read, the best of those: {raw:,.0f} events/s (25% of it: {raw / 4:,.0f}/s)")
        for batch_size, rate, cpu in results:
            print(
                f"  rebuild, batch_size {batch_size:>6}: {rate:9,.0f} events/s = {rate / raw:6.1%} of the "
                f"best raw read ({rate / raws['fetchall']:.1%} of fetchall)  CPU: {cpu_text(cpu)}"
            )
        print(f"  total run time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
