"""Which approved order an operator should take next: a discrete-event simulation (simpy) of the workshop
under four dispatch policies (issue 17, item 4).

Run: `.venv/bin/python bench/dispatch.py [--days 30] [--seed 1] [--seeds 5] [--operators 5] [--load 0.85]`

Orders are submitted (shop orders one at a time, partners' batches of 10-40 at once), approved by a seller
after a delay (MANUFACTURING_APPROVED), taken by a free operator who handles the order's material
(StartManufacturing), built for the order's manufacturing time (MANUFACTURING_STARTED), then packaged and
shipped. Each policy picks, whenever an operator is free in working hours, the next order among the
approved ones of materials they handle:

- newest-first: the latest approved (the console's queue today);
- fifo: the earliest approved;
- edd: the earliest promised date;
- least-slack: the least working time left before the promised date once the order's expected
  manufacturing time (its material's mean, by quantity) is taken off.

Common random numbers: the orders (arrival, material, quantity, promise, approval, manufacturing time) are
drawn once per seed and every policy runs on the same ones. Orders are counted when submitted within the
`--days` measured after a week's warm-up (the workshop does not start empty); arrivals go on after that
and the run lasts until every counted order has shipped (or `--days` more at most), so each counted order's
wait and lateness are known. Prints, per policy, the mean over the seeds of: counted orders shipped; the
wait in MANUFACTURING_APPROVED (approval to start, clock hours, p50/p95/max); the share of counted orders
shipped after their promised date or still unshipped past it when the run ends (of partners' orders
too); the orders open past their promised date at the end of the measured month (the console's overdue
count that day); the operators' utilisation over the month. The winner has the lowest late share, ties
by the lower p95 wait. Prints figures; asserts nothing.

Assumptions (constants below): operators and sellers work 08:00-17:00 Monday to Friday, and manufacturing,
packaging and approval delays are counted in those working hours (work left at 17:00 goes on the next
working morning); shop orders arrive every day, by hour of the day, more on Mondays; the shop's rate is
set so that the expected work is `--load` of the operators' working hours (partners' batches included).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import simpy

from orders_core.catalog import DEFAULT_MATERIALS
from orders_core.lifecycle import PROMISE_AFTER_SUBMISSION

# --- the calendar: time is in hours from Monday 00:00 of the first simulated week -------------------
WORK_START = 8.0
WORK_END = 17.0
WORK_DAYS_A_WEEK = 5
SHIFT = WORK_END - WORK_START  # 9 working hours a day
WEEK = 7 * 24.0
WORK_A_WEEK = WORK_DAYS_A_WEEK * SHIFT  # 45


def working_hours_at(t: float) -> float:
    """Working hours from time 0 to clock time t (operators' and sellers' hours only)."""
    weeks = math.floor(t / WEEK)
    rest = t - weeks * WEEK
    day = int(rest // 24)
    if day >= WORK_DAYS_A_WEEK:
        within = WORK_A_WEEK
    else:
        within = day * SHIFT + min(max(rest - day * 24 - WORK_START, 0.0), SHIFT)
    return weeks * WORK_A_WEEK + within


def _clock(working: float, finish: bool) -> float:
    """The clock time at which `working` working hours have passed: the earliest such time when finishing
    (a job that ends at the shift's end ends at 17:00), the next shift's start when starting."""
    days = math.ceil(working / SHIFT) - 1 if finish and working > 0 else math.floor(working / SHIFT)
    into = working - days * SHIFT
    weeks, day = divmod(days, WORK_DAYS_A_WEEK)
    return weeks * WEEK + day * 24 + WORK_START + into


def next_work_start(t: float) -> float:
    """t itself in working hours, else the start of the next working day."""
    return _clock(working_hours_at(t), finish=False)


def advance_working(t: float, hours: float) -> float:
    """The clock time when `hours` of working time started at t are done (t itself for none)."""
    if hours <= 0:
        return t
    return _clock(working_hours_at(t) + hours, finish=True)


def working_hours_between(start: float, end: float) -> float:
    """Working hours from start to end (negative when end is earlier)."""
    return working_hours_at(end) - working_hours_at(start)


# --- the workshop's assumptions ---------------------------------------------------------------------


@dataclass(frozen=True)
class MaterialAssumption:
    shop_share: float  # of shop orders
    partner_share: float  # of partners' orders (more silver and 14k gold)
    mean_hours: float  # mean manufacturing time of one piece, working hours
    senior_only: bool = False


# Manufacturing time of one piece: lognormal around the material's mean (sigma LOG_SIGMA, so about two
# thirds of pieces within -40 %/+65 % of the median); each further piece of the same order adds
# EXTRA_PIECE of it (one mould, one casting tree). Platinum and palladium: harder to cast and finish,
# worked only by senior operators. Guesses to be replaced by the workshop's own times.
MATERIALS: dict[str, MaterialAssumption] = {
    "AG925": MaterialAssumption(shop_share=0.22, partner_share=0.40, mean_hours=3.0),
    "AU585": MaterialAssumption(shop_share=0.22, partner_share=0.30, mean_hours=4.5),
    "AU750": MaterialAssumption(shop_share=0.28, partner_share=0.20, mean_hours=5.0),
    "AU750W": MaterialAssumption(shop_share=0.10, partner_share=0.05, mean_hours=5.5),
    "PT950": MaterialAssumption(shop_share=0.12, partner_share=0.03, mean_hours=8.0, senior_only=True),
    "PD950": MaterialAssumption(shop_share=0.06, partner_share=0.02, mean_hours=7.0, senior_only=True),
}
assert {m.code for m in DEFAULT_MATERIALS} == set(MATERIALS), "the seeded catalog's materials changed"
LOG_SIGMA = 0.5
EXTRA_PIECE = 0.5
SHOP_QUANTITIES = {1: 0.80, 2: 0.15, 3: 0.03, 4: 0.02}  # pairs of rings, sets
PARTNER_QUANTITIES = {1: 0.60, 2: 0.25, 3: 0.15}

# Shop orders: any day and hour, by the hour of the day (evenings busiest) and by weekday (a Monday burst,
# quiet weekends whose orders sellers approve on Monday as well). Relative weights, scaled to the load.
SHOP_BY_HOUR = (
    [0.2] * 7  # 00-06
    + [0.6, 0.8, 1.0, 1.1, 1.2, 1.2, 1.1, 1.1, 1.0, 1.0, 1.1, 1.2]  # 07-18
    + [1.4, 1.5, 1.5, 1.2, 0.6]  # 19-23
)
SHOP_BY_WEEKDAY = (1.8, 1.1, 1.0, 1.0, 0.9, 0.6, 0.7)  # Monday .. Sunday

# Partners' batches: a few a month, dropped in working hours, 10-40 orders each, approved together.
PARTNER_BATCHES_A_MONTH = 3.0
PARTNER_BATCH_SIZE = (10, 40)
# Promises: the default PROMISE_AFTER_SUBMISSION (21 days) for shop orders; partners ask for 7-14 days for
# PARTNER_RUSH_SHARE of their orders. An order is late when shipped after the end of its promised day.
PARTNER_RUSH_SHARE = 0.5
PARTNER_RUSH_DAYS = (7, 14)

# Approval: a seller approves within working hours, lognormal median APPROVAL_MEDIAN_HOURS, never later
# than APPROVAL_MAX_HOURS (two working days); a partner's batch at once.
APPROVAL_MEDIAN_HOURS = 3.0
APPROVAL_SIGMA = 1.0
APPROVAL_MAX_HOURS = 2 * SHIFT

# After manufacturing: packaging and the carrier's hand-over, fixed, in working hours (no operator's).
PACKAGING_HOURS = 1.0
SHIPPING_HOURS = 2.0

WARM_UP_DAYS = 7


@dataclass(frozen=True)
class Operator:
    name: str
    materials: frozenset[str]


_ALL = frozenset(MATERIALS)
_GOLD_SILVER = frozenset({"AU585", "AU750", "AU750W", "AG925"})
ROSTER = (
    Operator("olga (senior)", _ALL),
    Operator("ana", _GOLD_SILVER),
    Operator("piotr (senior)", _ALL),
    Operator("ben", _GOLD_SILVER),
    Operator("chen (junior)", frozenset({"AG925", "AU585"})),
    Operator("dora", _GOLD_SILVER),
)
"""`--operators N` takes the first N: two seniors among the first three."""


# --- orders -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Order:
    seq: int
    channel: str  # "shop" or "partner"
    material: str
    quantity: int
    submitted_at: float
    approved_at: float
    due_at: float  # the end of the promised day: shipped later is late
    work_hours: float  # this order's manufacturing time (drawn once, the same under every policy)
    expected_hours: float  # what a planner expects: the material's mean, by quantity
    counted: bool  # submitted within the measured days


def expected_hours(material: str, quantity: int) -> float:
    return MATERIALS[material].mean_hours * (1 + EXTRA_PIECE * (quantity - 1))


def _mean(weights: dict[int, float]) -> float:
    return sum(q * w for q, w in weights.items()) / sum(weights.values())


def _work_per_order(share: Callable[[MaterialAssumption], float], quantities: dict[int, float]) -> float:
    factor = 1 + EXTRA_PIECE * (_mean(quantities) - 1)
    return sum(share(m) * m.mean_hours for m in MATERIALS.values()) * factor


def shop_orders_a_week(operators: int, load: float) -> float:
    """Shop orders a week that, with the partners' batches, make `load` of the operators' working hours."""
    partner_work = (
        PARTNER_BATCHES_A_MONTH
        * (7 / 30)
        * (sum(PARTNER_BATCH_SIZE) / 2)
        * _work_per_order(lambda m: m.partner_share, PARTNER_QUANTITIES)
    )
    shop_work = load * operators * WORK_A_WEEK - partner_work
    if shop_work <= 0:
        raise ValueError(f"partners' batches alone exceed a load of {load} for {operators} operators")
    return shop_work / _work_per_order(lambda m: m.shop_share, SHOP_QUANTITIES)


def generate_orders(seed: int, days: float, operators: int, load: float) -> list[Order]:
    """Every order of a run, drawn once from the seed: WARM_UP_DAYS, the measured `days`, then `days` more
    of arrivals while the counted orders finish. The same list goes to every policy."""
    rng = np.random.default_rng(seed)
    start, end = WARM_UP_DAYS * 24.0, (WARM_UP_DAYS + days) * 24.0
    total_hours = (WARM_UP_DAYS + 2 * days) * 24.0
    codes = list(MATERIALS)
    shop_p = np.array([MATERIALS[c].shop_share for c in codes])
    partner_p = np.array([MATERIALS[c].partner_share for c in codes])
    draws: list[tuple[str, str, int, float, float, float]] = []  # channel, material, qty, sub, appr, due

    # shop orders: a Poisson count each clock hour, by hour and weekday
    profile = np.array([SHOP_BY_WEEKDAY[d] * SHOP_BY_HOUR[h] for d in range(7) for h in range(24)])
    per_hour = shop_orders_a_week(operators, load) * profile / profile.sum()
    hours = int(total_hours)
    counts = rng.poisson(per_hour[np.arange(hours) % 168])
    for hour in np.repeat(np.arange(hours), counts):
        submitted = float(hour + rng.random())
        material = codes[rng.choice(len(codes), p=shop_p)]
        quantity = int(rng.choice(list(SHOP_QUANTITIES), p=list(SHOP_QUANTITIES.values())))
        approved = advance_working(submitted, _approval_delay(rng))
        due = _end_of_promised_day(submitted, PROMISE_AFTER_SUBMISSION.days)
        draws.append(("shop", material, quantity, submitted, approved, due))

    # partners' batches: in working hours, the gaps between them uniform within half to one and a half times
    # their mean (steadier than a Poisson count, whose months would range from one batch to six)
    gap = 30 / 7 * WORK_A_WEEK / PARTNER_BATCHES_A_MONTH
    at = float(rng.uniform(0, gap))
    while at < working_hours_at(total_hours):
        submitted = _clock(at, finish=False)
        at += float(rng.uniform(gap / 2, 1.5 * gap))
        approved = advance_working(submitted, _approval_delay(rng))
        low, high = PARTNER_BATCH_SIZE
        for _ in range(int(rng.integers(low, high + 1))):
            material = codes[rng.choice(len(codes), p=partner_p)]
            quantity = int(rng.choice(list(PARTNER_QUANTITIES), p=list(PARTNER_QUANTITIES.values())))
            rush = rng.random() < PARTNER_RUSH_SHARE
            promise = int(rng.integers(PARTNER_RUSH_DAYS[0], PARTNER_RUSH_DAYS[1] + 1))
            days_promised = promise if rush else PROMISE_AFTER_SUBMISSION.days
            draws.append(
                (
                    "partner",
                    material,
                    quantity,
                    submitted,
                    approved,
                    _end_of_promised_day(submitted, days_promised),
                )
            )

    draws.sort(key=lambda d: (d[3], d[0]))
    orders = []
    for seq, (channel, material, quantity, submitted, approved, due) in enumerate(draws):
        expected = expected_hours(material, quantity)
        # a lognormal with mean `expected`: its median is expected * exp(-sigma^2 / 2)
        work = float(expected * rng.lognormal(-(LOG_SIGMA**2) / 2, LOG_SIGMA))
        orders.append(
            Order(
                seq,
                channel,
                material,
                quantity,
                submitted,
                approved,
                due,
                work,
                expected,
                start <= submitted < end,
            )
        )
    return orders


def _approval_delay(rng: np.random.Generator) -> float:
    return float(min(APPROVAL_MEDIAN_HOURS * rng.lognormal(0, APPROVAL_SIGMA), APPROVAL_MAX_HOURS))


def _end_of_promised_day(submitted: float, days: int) -> float:
    return (math.floor(submitted / 24) + days + 1) * 24.0


# --- policies ---------------------------------------------------------------------------------------

Key = Callable[[Order, float], tuple[float, ...]]
"""A policy: the order with the smallest key at time `now` is taken first (seq breaks ties)."""


def least_slack(order: Order, now: float) -> tuple[float, ...]:
    """Working hours left before the promised day ends, less the expected manufacturing time."""
    return (working_hours_between(now, order.due_at) - order.expected_hours, order.approved_at, order.seq)


POLICIES: dict[str, Key] = {
    "newest-first": lambda o, now: (-o.approved_at, -o.seq),
    "fifo": lambda o, now: (o.approved_at, o.seq),
    "edd": lambda o, now: (o.due_at, o.approved_at, o.seq),
    "least-slack": least_slack,
}


def choose(queue: Sequence[Order], materials: frozenset[str], key: Key, now: float) -> Order | None:
    """The approved order an operator who handles `materials` takes next under the policy, if any."""
    eligible = [o for o in queue if o.material in materials]
    return min(eligible, key=lambda o: key(o, now)) if eligible else None


# --- the simulation ---------------------------------------------------------------------------------


@dataclass
class Run:
    """What happened to each order under one policy (clock hours; None: not by the end of the run)."""

    orders: list[Order]
    started: dict[int, float] = field(default_factory=dict)
    shipped: dict[int, float] = field(default_factory=dict)
    jobs: list[tuple[float, float]] = field(default_factory=list)  # manufacturing, in working hours
    ended_at: float = 0.0


def simulate(orders: Sequence[Order], operators: Sequence[Operator], policy: str, cap: float) -> Run:
    """Runs the workshop on these orders under the policy until every counted order has shipped, or cap."""
    env = simpy.Environment()
    key = POLICIES[policy]
    run = Run(list(orders))
    queue: list[Order] = []
    changed = [env.event()]
    left = [sum(o.counted for o in orders)]
    all_shipped = env.event()

    def approvals() -> simpy.events.ProcessGenerator:
        for order in sorted(orders, key=lambda o: (o.approved_at, o.seq)):
            if order.approved_at > env.now:
                yield env.timeout(order.approved_at - env.now)
            queue.append(order)
            if not changed[0].triggered:
                changed[0].succeed()
                changed[0] = env.event()

    def ship(order: Order, done: float) -> simpy.events.ProcessGenerator:
        shipped = advance_working(done, PACKAGING_HOURS + SHIPPING_HOURS)
        yield env.timeout(shipped - env.now)
        run.shipped[order.seq] = shipped
        if order.counted:
            left[0] -= 1
            if left[0] == 0:
                all_shipped.succeed()

    def operator(op: Operator) -> simpy.events.ProcessGenerator:
        while True:
            start = next_work_start(env.now)
            if start > env.now:
                yield env.timeout(start - env.now)
                continue
            order = choose(queue, op.materials, key, env.now)
            if order is None:
                shift_end = _clock((math.floor(working_hours_at(env.now) / SHIFT) + 1) * SHIFT, finish=True)
                yield changed[0] | env.timeout(shift_end - env.now)
                continue
            queue.remove(order)
            run.started[order.seq] = env.now
            began = working_hours_at(env.now)
            run.jobs.append((began, began + order.work_hours))
            done = advance_working(env.now, order.work_hours)
            yield env.timeout(done - env.now)
            env.process(ship(order, done))

    env.process(approvals())
    for op in operators:
        env.process(operator(op))
    if left[0] == 0:
        all_shipped.succeed()
    env.run(until=all_shipped | env.timeout(cap))
    run.ended_at = env.now
    return run


# --- figures ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    shipped: int
    counted: int
    wait_p50: float
    wait_p95: float
    wait_max: float
    late: float  # share of counted orders shipped after their promise or unshipped past it at the end
    partner_late: float
    overdue_at_month_end: int
    utilisation: float


def figures(run: Run, month: tuple[float, float], operators: int) -> Figures:
    counted = [o for o in run.orders if o.counted]
    waits = []
    late = {"shop": 0, "partner": 0}
    for o in counted:
        # an order never started by the end waited at least until then: counted as that
        waits.append(run.started.get(o.seq, run.ended_at) - o.approved_at)
        shipped = run.shipped.get(o.seq)
        if (shipped if shipped is not None else run.ended_at) > o.due_at:
            late[o.channel] += 1
    partners = sum(o.channel == "partner" for o in counted)
    month_start, month_end = month
    overdue = sum(
        o.submitted_at <= month_end and run.shipped.get(o.seq, math.inf) > month_end and o.due_at < month_end
        for o in run.orders
    )
    w0, w1 = working_hours_at(month_start), working_hours_at(month_end)
    busy = sum(max(0.0, min(end, w1) - max(begin, w0)) for begin, end in run.jobs)
    p50, p95 = np.percentile(waits, [50, 95]) if waits else (0.0, 0.0)
    return Figures(
        shipped=sum(o.seq in run.shipped for o in counted),
        counted=len(counted),
        wait_p50=float(p50),
        wait_p95=float(p95),
        wait_max=max(waits, default=0.0),
        late=sum(late.values()) / max(len(counted), 1),
        partner_late=late["partner"] / max(partners, 1),
        overdue_at_month_end=overdue,
        utilisation=busy / (operators * (w1 - w0)),
    )


def compare(
    seed: int,
    days: float,
    operators: Sequence[Operator],
    load: float,
    policies: Sequence[str] = tuple(POLICIES),
) -> dict[str, Figures]:
    """Every policy on the same orders (common random numbers)."""
    orders = generate_orders(seed, days, len(operators), load)
    month = (WARM_UP_DAYS * 24.0, (WARM_UP_DAYS + days) * 24.0)
    cap = (WARM_UP_DAYS + 2 * days) * 24.0
    return {p: figures(simulate(orders, operators, p, cap), month, len(operators)) for p in policies}


def winner(results: dict[str, Figures]) -> str:
    """The lowest late share (to a tenth of a percent), ties by the lower p95 wait."""
    return min(results, key=lambda p: (round(results[p].late, 3), results[p].wait_p95))


def mean_figures(runs: Sequence[Figures]) -> Figures:
    def mean(name: str) -> float:
        return statistics.fmean(float(getattr(f, name)) for f in runs)

    return Figures(
        shipped=round(mean("shipped")),
        counted=round(mean("counted")),
        wait_p50=mean("wait_p50"),
        wait_p95=mean("wait_p95"),
        wait_max=mean("wait_max"),
        late=mean("late"),
        partner_late=mean("partner_late"),
        overdue_at_month_end=round(mean("overdue_at_month_end")),
        utilisation=mean("utilisation"),
    )


def parse_operators(text: str) -> list[Operator]:
    """`5` (the first five of ROSTER) or `name=AU750+AG925,name2=all,...`."""
    if text.isdigit():
        return list(ROSTER[: int(text)])
    crew = []
    for part in text.split(","):
        name, _, materials = part.partition("=")
        crew.append(Operator(name, _ALL if materials == "all" else frozenset(materials.split("+"))))
    return crew


def table(results: dict[str, Figures], best: str) -> str:
    lines = [
        "| policy | shipped / counted | wait p50 h | wait p95 h | wait max h | late | partners' late "
        "| overdue on the last day | utilisation |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, f in results.items():
        mark = " (winner)" if name == best else ""
        lines.append(
            f"| {name}{mark} | {f.shipped} / {f.counted} | {f.wait_p50:.0f} | {f.wait_p95:.0f} "
            f"| {f.wait_max:.0f} | {f.late:.1%} | {f.partner_late:.1%} | {f.overdue_at_month_end} "
            f"| {f.utilisation:.0%} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=float, default=30, help="measured days (after a week's warm-up)")
    parser.add_argument("--seed", type=int, default=1, help="the first seed")
    parser.add_argument(
        "--seeds", type=int, default=5, help="seeds run (seed, seed+1, ...); figures are means"
    )
    parser.add_argument(
        "--operators", default="5", help="N (the first N of the roster) or name=AU750+AG925,..."
    )
    parser.add_argument("--load", type=float, default=0.85, help="expected work / operators' working hours")
    args = parser.parse_args()
    crew = parse_operators(args.operators)
    started = time.process_time()

    print(
        f"{args.days:g} days measured after {WARM_UP_DAYS} of warm-up; "
        f"seeds {args.seed}..{args.seed + args.seeds - 1}; load {args.load:.0%}: "
        f"{shop_orders_a_week(len(crew), args.load):.1f} shop orders a week, {PARTNER_BATCHES_A_MONTH:g} "
        f"partner batches of {PARTNER_BATCH_SIZE[0]}-{PARTNER_BATCH_SIZE[1]} a month"
    )
    print(f"operators ({WORK_START:02.0f}:00-{WORK_END:02.0f}:00, Monday-Friday):")
    for op in crew:
        print(f"  {op.name}: {'all' if op.materials == _ALL else '+'.join(sorted(op.materials))}")
    print(
        "manufacturing, mean working hours a piece: "
        + ", ".join(f"{c} {m.mean_hours:g}" for c, m in MATERIALS.items())
        + f" (lognormal sigma {LOG_SIGMA}, +{EXTRA_PIECE:.0%} a further piece)"
    )
    print(
        f"promise: {PROMISE_AFTER_SUBMISSION.days} days; {PARTNER_RUSH_SHARE:.0%} of partners' orders "
        f"{PARTNER_RUSH_DAYS[0]}-{PARTNER_RUSH_DAYS[1]} days\n"
    )

    per_seed: list[dict[str, Figures]] = []
    for seed in range(args.seed, args.seed + args.seeds):
        results = compare(seed, args.days, crew, args.load)
        per_seed.append(results)
        lates = ", ".join(f"{p} {f.late:.1%}" for p, f in results.items())
        counted = next(iter(results.values())).counted
        print(f"seed {seed}: {counted} orders; late {lates}; winner {winner(results)}")

    means = {p: mean_figures([r[p] for r in per_seed]) for p in POLICIES}
    best = winner(means)
    wins = [winner(r) for r in per_seed]
    print(f"\nmeans over {args.seeds} seeds (waits in clock hours from approval to start):\n")
    print(table(means, best))
    lowest = {
        p: sum(round(r[p].late, 3) == min(round(f.late, 3) for f in r.values()) for r in per_seed)
        for p in POLICIES
    }
    print(
        f"\nwinner: {best} (per seed: {', '.join(wins)}; {wins.count(best)} of {len(wins)}); "
        "lowest late share (ties count for each) in "
        + ", ".join(f"{p} {n}" for p, n in lowest.items())
        + f" of {len(per_seed)} seeds; CPU {time.process_time() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
