"""schemathesis from its command line against `backbone up`, the way a user's engineer runs it.

A stock run (all phases, against /schema/openapi.json, a seller's token) once froze the shop view: its
stateful phase sends several catalog changes close together (issue 12). Here the same command line runs
against a fresh `backbone up` on real PostgreSQL, as the seller of that report and as a customer, and then
the system must still be whole: the MES and shop views reach the event store's head, the shop lists every
order the fuzzer created, and `backbone audit` finds nothing lost, doubled or left behind (the relay's
part included). On the code before the fix (4f73c51^) the shop view stops within the first seconds of the
seller's run and the last two tests fail; the fuzzer itself reports nothing, as it did for the user.

The stateful phase follows the OpenAPI links: `GET /catalog` to `POST /orders` with a material of the
catalog, and the new order's `order_id` to each of its commands and reads (orders_core/api/orders.py,
catalog.py). The HAR report of each run shows it reaching the orders it created.

Bounded: each operation gets at most MAX_EXAMPLES cases a cycle, and `--max-time` ends the run (the
fuzzing and stateful phases repeat until the budget is spent); the seed is fixed and no example database
is kept, so CI replays the same generation. What the command line leaves to a file is in
schemathesis_cli.toml beside this one, with the reason for each setting.

One worker: with several, Hypothesis parses lambdas with `ast` on concurrent threads, which CPython 3.11
can fail with a spurious "AST constructor recursion depth mismatch" (python/cpython#106905), reported as a
schemathesis runtime error.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from http_edge.identity import mint_token
from orders_core.lifecycle import BY_ACTION, Role, Status
from tests.conftest import JWT_SECRET, RunningApi
from tests.journeys import answered, submit
from tests.meshes import cube_stl
from tests.security.servers import position

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CONFIG = Path(__file__).with_name("schemathesis_cli.toml")
SEED = 20_261_202
MAX_EXAMPLES = 20
SELLER = (Role.SELLER, "cli-seller")
CUSTOMER = (Role.CUSTOMER, "cli-customer")
CUSTOMER_OPERATIONS = r"^/(orders|catalog$|shop/)"
"""What a customer may use: the MES and the catalog's changes would only answer 403."""
PARTNER = (Role.PARTNER, "cli-partner")
PARTNER_OPERATIONS = r"^/(orders|catalog$|webhooks)"
"""What a partner's engineer points the fuzzer at: its orders, and its webhook endpoints and their log."""
ORDER_COMMAND = re.compile(r"/orders/([0-9a-f-]{36})/(\w+)$")


@dataclass(frozen=True)
class Run:
    """One `schemathesis run`: how it ended, what it printed and every exchange it recorded."""

    name: str
    returncode: int
    output: str
    exchanges: list[dict[str, Any]]
    seconds: float

    def created_orders(self, owner_id: str | None = None) -> set[str]:
        """Ids of the orders that `POST /orders` answered with (only those of `owner_id`, if given)."""
        created = (
            json.loads(e["response"]["content"]["text"])
            for e in self.exchanges
            if e["request"]["method"] == "POST"
            and urlsplit(e["request"]["url"]).path == "/orders"
            and e["response"]["status"] in (200, 201)
        )
        return {o["order_id"] for o in created if owner_id is None or o["owner_id"] == owner_id}

    def commands_decided(self) -> list[tuple[str, str, int]]:
        """(order id, action, status) of each command on an order this run created that the order's own
        rules answered (done, or refused in its status), rather than the routing or a 404."""
        created = self.created_orders()
        decided = []
        for e in self.exchanges:
            found = ORDER_COMMAND.match(urlsplit(e["request"]["url"]).path)
            status = e["response"]["status"]
            if found and found.group(1) in created and found.group(2) in BY_ACTION and status in (200, 409):
                decided.append((found.group(1), found.group(2), status))
        return decided

    def links_covered(self) -> int:
        found = re.search(r"API Links:\s+(\d+) covered", self.output)
        return int(found.group(1)) if found else 0

    def summary(self) -> str:
        decided = self.commands_decided()
        return (
            f"schemathesis CLI as {self.name}: exit {self.returncode} in {self.seconds:.0f} s, "
            f"{len(self.exchanges)} requests, {self.links_covered()} links covered, "
            f"{len(self.created_orders())} orders created, {len(decided)} commands on them decided "
            f"({len({action for _, action, _ in decided})} kinds)"
        )


COMMAND_LINE = (
    "{schemathesis} --config-file {config} run {base}/schema/openapi.json"
    " --phases examples,coverage,fuzzing,stateful --header 'Authorization: Bearer {token}'"
    " --seed {seed} --max-examples {max_examples} --max-time {max_time} --workers 1 --request-timeout 30"
    " --generation-database none --report har --report-har-path {har} --no-color"
)
"""The run as a user types it; CUSTOMER's adds `--include-path-regex`."""


def fuzz(api: RunningApi, caller: tuple[Role, str], workdir: Path, max_time: int, *options: str) -> Run:
    """`schemathesis run` with `caller`'s bearer token, all phases, bounded by MAX_EXAMPLES and `max_time`."""
    har = workdir / f"{caller[1]}.har"
    line = COMMAND_LINE.format(
        schemathesis=shlex.quote(str(SCHEMATHESIS)),
        config=shlex.quote(str(CONFIG)),
        base=api.base_url,
        token=mint_token(JWT_SECRET, *caller),
        seed=SEED,
        max_examples=MAX_EXAMPLES,
        max_time=max_time,
        har=shlex.quote(str(har)),
    )
    command = [*shlex.split(line), *options]
    # Nothing of the developer's own schemathesis settings: the run is the one written here.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEMATHESIS_")}
    started = time.monotonic()
    done = subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=max_time + 180, check=False
    )
    exchanges = json.loads(har.read_text())["log"]["entries"] if har.exists() else []
    return Run(caller[1], done.returncode, done.stdout + done.stderr, exchanges, time.monotonic() - started)


@dataclass(frozen=True)
class Fuzzed:
    """Both runs, and the order that existed before them."""

    runs: tuple[Run, ...]
    seeded_order: str
    partner: Run
    """The partner's run, over its orders and its webhook endpoints (no links lead into webhooks, so it is
    not among the runs whose stateful phase is checked)."""


@pytest.fixture(scope="module")
def fuzzed(system: RunningApi, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    """A priced order of the customer, then the seller's run (the report's) and the customer's."""
    with system.client(*CUSTOMER) as customer:
        seeded = submit(customer, cube_stl())
        assert answered(customer, seeded)["status"] == Status.PRICE_CALCULATED
    workdir = tmp_path_factory.mktemp("schemathesis")
    seller = fuzz(system, SELLER, workdir, 60)
    own = fuzz(system, CUSTOMER, workdir, 30, "--include-path-regex", CUSTOMER_OPERATIONS)
    partner = fuzz(system, PARTNER, workdir, 45, "--include-path-regex", PARTNER_OPERATIONS)
    yield Fuzzed((seller, own), seeded, partner)


def test_a_stock_fuzzer_finds_no_failure(fuzzed: Fuzzed, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print("", *(run.summary() for run in (*fuzzed.runs, fuzzed.partner)), sep="\n")
    for run in (*fuzzed.runs, fuzzed.partner):
        assert run.returncode == 0, f"{run.summary()}\n{run.output[-20_000:]}"


def test_the_stateful_phase_follows_the_links_into_new_orders(fuzzed: Fuzzed) -> None:
    for run in fuzzed.runs:
        assert "Stateful (in" in run.output, run.output[-5000:]
        assert run.links_covered() > 0, run.summary()
        assert run.commands_decided(), run.summary()
    moved = [status for run in fuzzed.runs for _, _, status in run.commands_decided() if status == 200]
    assert moved, "no command moved an order the fuzzer created"


def test_every_view_reaches_the_head_and_shows_what_the_fuzzer_did(
    system: RunningApi, fuzzed: Fuzzed
) -> None:
    head = position(system)
    with system.client(Role.OPERATOR, "cli-operator") as operator:
        for path in ("/mes/stats", "/shop/catalog"):
            assert reached(operator, path, head), f"{path} never reached position {head}"
        cancelled = operator.get(
            "/mes/orders", params={"status": "CANCELLED", "sort": "created", "limit": 200}
        )
    fuzzed_orders = set().union(*(run.created_orders() for run in (*fuzzed.runs, fuzzed.partner)))
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["items"], "no order the fuzzer cancelled reached the MES view"
    assert {i["order_id"] for i in cancelled.json()["items"]} <= fuzzed_orders
    # The customer's own orders, and those the seller's run created for the customer: the fuzzer reuses
    # the owner_id it read in answers (the create body and the order name the owner alike).
    theirs = set().union(*(run.created_orders(owner_id=CUSTOMER[1]) for run in fuzzed.runs))
    with system.client(*CUSTOMER) as customer:
        listed = shop_orders(customer, head)
    assert listed == fuzzed.runs[1].created_orders() | theirs | {fuzzed.seeded_order}


def test_the_audit_is_clean_after_fuzzing(system: RunningApi, fuzzed: Fuzzed) -> None:
    done = system.backbone("audit", "--settle", "30")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no discrepancies" in done.stdout


def reached(client: httpx.Client, path: str, head: int, seconds: float = 60) -> bool:
    """Whether the view behind `path` answers for `head` within `seconds` (each try waits up to 5 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        answer = client.get(path, params={"min_position": head})
        if answer.status_code == 200:
            return True
        assert answer.status_code == 503, answer.text
    return False


def shop_orders(client: httpx.Client, head: int) -> set[str]:
    """Ids of every order the shop view lists for the caller, once it has reached `head`."""
    ids: set[str] = set()
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {
            "limit": 200,
            "min_position": head,
            **({"cursor": cursor} if cursor else {}),
        }
        page = client.get("/shop/orders", params=params)
        assert page.status_code == 200, page.text
        ids |= {item["order_id"] for item in page.json()["items"]}
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return ids
