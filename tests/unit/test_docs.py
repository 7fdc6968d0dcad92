"""The repository explains itself: docs/architecture.md's lifecycle table is the one in lifecycle.py,
docs/pricing.md and docs/operators.md state the rules the code applies, and nothing in the repository
cites a document outside it."""

from __future__ import annotations

import re
import subprocess

from orders_core.api.take_next import PAGE, PAGES, RECENT_SECONDS
from orders_core.commands import HOLD_REASON_MAX
from orders_core.lifecycle import EXPECTED_MANUFACTURING, HOLDABLE, TRANSITIONS, Party, Status
from orders_core.operators import MAX_DECLARED
from orders_core.values import MIN_WALL_BY_FAMILY, MIN_WALL_OTHERWISE, QUOTE_VALIDITY
from orders_core.webhooks import WebhookEventType
from pricing.geometry import MERGE_MAX_MM, MERGE_RELATIVE
from pricing.limits import DEFAULT_LIMITS
from pricing.quote import THIN_SHARE
from pricing.thickness import MAX_MEASURED, UNRELIABLE_SHARE
from projectors.measured import ENOUGH_COMPLETIONS, LATEST_COMPLETIONS, ROUNDING
from read_models.mes import MesOrderSort
from tests.conftest import ROOT

ARCHITECTURE = ROOT / "docs" / "architecture.md"
WHO = {
    Party.OWNER: "owner",
    Party.OWNER_BEFORE_APPROVAL: "owner before approval",
    Party.SELLER: "seller",
    Party.OPERATOR: "operator",
    Party.TAKER: "taker",
    Party.PRICING: "pricing",
    Party.CARRIER: "carrier",
}
ENDPOINTS = {
    "InitiateOrder": "`POST /orders`",
    "AttachModel": "`PUT /orders/{order_id}/model`",
    "RecordQuote": "(pricing result)",
    "RejectModel": "(pricing result)",
}


def lifecycle_table() -> str:
    """The lifecycle table as docs/architecture.md shows it, rendered from TRANSITIONS."""
    lines = ["| command | event | from | to | who may | endpoint |", "|---|---|---|---|---|---|"]
    for t in TRANSITIONS:
        sources = ", ".join(sorted(s.value for s in t.sources)) or "(new)"
        who = ", ".join(sorted(WHO[p] for p in t.parties))
        endpoint = f"`POST /orders/{{order_id}}/{t.action}`" if t.action else ENDPOINTS[t.command]
        target = t.target.value if t.target else "(the same)"
        lines.append(f"| {t.command} | {t.event} | {sources} | {target} | {who} | {endpoint} |")
    return "\n".join(lines)


def test_the_architecture_page_shows_the_lifecycle_table_of_the_code() -> None:
    text = ARCHITECTURE.read_text()
    shown = text.split("<!-- lifecycle table: generated from TRANSITIONS -->\n", 1)[1]
    shown = shown.split("\n<!-- end of lifecycle table -->", 1)[0]
    assert shown == lifecycle_table()


def test_nothing_in_the_repository_cites_a_document_outside_it() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    citing = [
        path
        for path in tracked.stdout.splitlines()
        if (ROOT / path).is_file()
        and path != "tests/unit/test_docs.py"
        and re.search(r"DESIGN\.md|\.\./shared/", (ROOT / path).read_text(errors="replace"))
    ]
    assert citing == []


def test_the_pricing_page_states_the_rules_the_code_applies() -> None:
    text = " ".join((ROOT / "docs" / "pricing.md").read_text().split())
    names = {"AU": "gold", "AG": "silver", "PT": "platinum", "PD": "palladium"}
    for family, wall in MIN_WALL_BY_FAMILY.items():
        assert f"{names[family]} (`{family}`) {wall:g} mm" in text, family
    assert f"anything else {MIN_WALL_OTHERWISE:g} mm" in text
    assert f"more than {THIN_SHARE * 100:g} % of its surface below it" in text
    assert f"more than {UNRELIABLE_SHARE * 100:g} % of the area with no proper exit" in text
    assert f"closer than {MERGE_RELATIVE:g} of the bounding box's diagonal" in text
    assert f"never more than {MERGE_MAX_MM:g} mm apart" in text
    assert f"mean wall (2 x volume / area) at least {DEFAULT_LIMITS.min_wall_mm:g} mm" in text
    assert f"`QUOTE_VALID_HOURS` ({QUOTE_VALIDITY.total_seconds() / 3600:g})" in text
    assert f"more than {MAX_MEASURED:,}".replace("1,000,000", "a million") in text


def test_the_webhooks_guide_lists_every_event_type() -> None:
    text = (ROOT / "docs" / "webhooks.md").read_text()
    missing = [t.value for t in WebhookEventType if f"| `{t.value}` |" not in text]
    assert not missing, f"docs/webhooks.md's table of event types lacks {missing}"


def test_the_operators_page_states_the_rules_the_code_applies() -> None:
    text = " ".join((ROOT / "docs" / "operators.md").read_text().split())
    missing = [s.value for s in MesOrderSort if f"| `{s.value}` |" not in text]
    assert not missing, f"docs/operators.md's table of sorts lacks {missing}"
    assert f"3. otherwise {EXPECTED_MANUFACTURING.days:g} days.".replace("2 days", "two days") in text
    assert f"reads the first {PAGE} candidates from the MES view" in text
    assert f"for a moment; for at most {RECENT_SECONDS:g} seconds)" in text
    assert f"If {PAGES} reads in a row".replace("5 reads", "five reads") in text
    assert text.count(f"(at most {MAX_DECLARED}") == 2
    assert f"1 to {HOLD_REASON_MAX} characters" in text
    held = ", ".join(s.value for s in sorted(HOLDABLE, key=list(Status).index))
    assert f"held in {held.replace(', MANUFACTURING_STARTED', ' or MANUFACTURING_STARTED')};" in text
    assert f"the median of the material's latest {LATEST_COMPLETIONS} completions" in text
    assert f"at least {ENOUGH_COMPLETIONS}, rounded up to a whole {ROUNDING.seconds // 60} minutes" in text
