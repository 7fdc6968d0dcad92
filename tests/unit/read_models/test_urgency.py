"""The words and slack of an order's urgency (pure)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from read_models.urgency import Urgency, span, urgency_of

PROMISED = date(2026, 12, 10)
DUE = datetime(2026, 12, 11, tzinfo=UTC)  # the end of the promised day


def at(**before_due: float) -> datetime:
    return DUE - timedelta(**before_due)


@pytest.mark.parametrize(
    ("now", "needs", "expected"),
    [
        (at(days=9), timedelta(days=2), Urgency(7 * 86400, "due in 9 d")),
        (at(hours=30), timedelta(hours=20), Urgency(10 * 3600, "due in 30 h")),
        (at(hours=5), timedelta(days=2), Urgency(-43 * 3600, "due in 5 h, needs 2 d")),
        (at(minutes=20), timedelta(hours=1), Urgency(-40 * 60, "due in 20 min, needs 1 h")),
        (at(days=-2), timedelta(days=2), Urgency(-4 * 86400, "overdue 2 d")),
        (DUE, timedelta(hours=3), Urgency(-3 * 3600, "overdue 1 min")),
    ],
)
def test_an_order_says_how_urgent_it_is(now: datetime, needs: timedelta, expected: Urgency) -> None:
    assert urgency_of(PROMISED, DUE - needs, now) == expected


def test_an_order_without_an_open_promise_has_no_urgency() -> None:
    assert urgency_of(None, None, DUE) is None
    assert urgency_of(PROMISED, None, DUE) is None


def test_spans_read_as_minutes_then_hours_then_days() -> None:
    assert [span(timedelta(seconds=s)) for s in (0, 59, 3599, 3600, 47 * 3600, 48 * 3600, -5)] == [
        "1 min",
        "1 min",
        "59 min",
        "1 h",
        "47 h",
        "2 d",
        "1 min",
    ]
