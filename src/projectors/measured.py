"""A material's manufacturing estimate: its catalog's figure, else what its orders measured, else two days.

A completion is an order that left MANUFACTURING_STARTED for its next status; its time is the sum of its
stays there not on hold (a hold waits for a stone or an answer, not for the work). The measured estimate
is the median of a material's latest 200 completions (a few slow or fast pieces move it little, and the
latest follow changes of process), only once there are 20 (fewer say more about luck than about the
material), rounded UP to a whole 15 minutes (a cautious figure, and start_by does not move at every
completion). Three completions of 2 h, 2 h 5 min and 3 h, with enough others alike, give 2 h 15 min.

Pure: no I/O, so the live projection and a replay decide alike (projectors/mes.py does the reading).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from datetime import timedelta
from typing import Literal

from orders_core.lifecycle import EXPECTED_MANUFACTURING

LATEST_COMPLETIONS = 200
"""How many of a material's completions, the latest by when they finished, its measured estimate is
taken from."""
ENOUGH_COMPLETIONS = 20
"""Fewer completions than this give no measured estimate: the material takes the default."""
ROUNDING = timedelta(minutes=15)
"""A measured estimate is a whole number of these, rounded up."""

Source = Literal["catalog", "measured", "default"]
CATALOG: Source = "catalog"
MEASURED: Source = "measured"
DEFAULT: Source = "default"


def measured_estimate(seconds: Sequence[int]) -> timedelta | None:
    """The measured estimate from completions' times in seconds, the latest first (only the first
    LATEST_COMPLETIONS count); None below ENOUGH_COMPLETIONS."""
    latest = seconds[:LATEST_COMPLETIONS]
    if len(latest) < ENOUGH_COMPLETIONS:
        return None
    step = int(ROUNDING.total_seconds())
    # the median of integers is a whole or a half second: exact in a float, so ceil rounds only up
    return timedelta(seconds=math.ceil(statistics.median(latest) / step) * step)


def estimate_for(catalog: timedelta | None, measured: timedelta | None) -> tuple[timedelta, Source]:
    """The estimate in use and where it comes from: the catalog's, else the measured one, else the default
    (EXPECTED_MANUFACTURING)."""
    if catalog is not None:
        return catalog, CATALOG
    if measured is not None:
        return measured, MEASURED
    return EXPECTED_MANUFACTURING, DEFAULT
