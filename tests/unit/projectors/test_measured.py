"""The measured manufacturing estimate and which estimate a material takes (hypothesis where it helps)."""

from __future__ import annotations

import statistics
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from orders_core.lifecycle import EXPECTED_MANUFACTURING
from projectors.measured import (
    ENOUGH_COMPLETIONS,
    LATEST_COMPLETIONS,
    ROUNDING,
    estimate_for,
    measured_estimate,
)

HOUR = 3600
times = st.integers(1, 30 * 24 * HOUR)


def test_nineteen_completions_give_no_estimate_and_twenty_do() -> None:
    assert ENOUGH_COMPLETIONS == 20
    assert measured_estimate([2 * HOUR] * 19) is None
    assert measured_estimate([2 * HOUR] * 20) == timedelta(hours=2)


def test_the_median_is_rounded_up_to_a_whole_fifteen_minutes() -> None:
    assert measured_estimate([2 * HOUR + 1] * 20) == timedelta(hours=2, minutes=15)
    assert measured_estimate([2 * HOUR + 15 * 60] * 20) == timedelta(hours=2, minutes=15)
    # an even count: the mean of the middle two, 2 h 0 min 0.5 s, rounds up too
    assert measured_estimate([2 * HOUR] * 10 + [2 * HOUR + 1] * 10) == timedelta(hours=2, minutes=15)
    assert measured_estimate([1] * 20) == timedelta(minutes=15)


def test_a_few_slow_pieces_do_not_move_the_median() -> None:
    assert measured_estimate([3 * HOUR] * 15 + [40 * HOUR] * 5) == timedelta(hours=3)


def test_only_the_latest_two_hundred_count() -> None:
    assert LATEST_COMPLETIONS == 200
    latest_first = [HOUR] * 200 + [50 * HOUR] * 300
    assert measured_estimate(latest_first) == timedelta(hours=1)


@given(st.lists(times, min_size=ENOUGH_COMPLETIONS, max_size=300))
def test_the_estimate_is_the_least_whole_quarter_hour_at_or_above_the_median(seconds: list[int]) -> None:
    estimate = measured_estimate(seconds)
    assert estimate is not None
    median = statistics.median(seconds[:LATEST_COMPLETIONS])
    assert estimate % ROUNDING == timedelta(0)
    assert estimate.total_seconds() >= median > (estimate - ROUNDING).total_seconds()


@given(st.lists(times, max_size=ENOUGH_COMPLETIONS - 1))
def test_fewer_than_enough_give_none(seconds: list[int]) -> None:
    assert measured_estimate(seconds) is None


def test_the_catalog_wins_then_the_measured_estimate_then_the_default() -> None:
    catalog, measured = timedelta(hours=7), timedelta(hours=3)
    assert estimate_for(catalog, measured) == (catalog, "catalog")
    assert estimate_for(catalog, None) == (catalog, "catalog")
    assert estimate_for(None, measured) == (measured, "measured")
    assert estimate_for(None, None) == (EXPECTED_MANUFACTURING, "default") == (timedelta(days=2), "default")
