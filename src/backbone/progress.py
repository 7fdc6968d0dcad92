"""A one-line progress bar for long CLI work: done/total, events per second and time left."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Counts events towards `total` and redraws itself at most ten times a second."""

    def __init__(self, label: str, total: int, out: TextIO = sys.stderr, width: int = 30) -> None:
        self.label, self.total, self.out, self.width = label, max(total, 1), out, width
        self.done_events = 0
        self.started = time.monotonic()
        self._drawn = 0.0

    def advance(self, events: int, position: int) -> None:
        """Record `events` more, the last at `position`."""
        self.done_events += events
        now = time.monotonic()
        if now - self._drawn >= 0.1:
            self._drawn = now
            self._draw(position)

    def done(self) -> None:
        """Draw the final state and end the line."""
        self._draw(self.total)
        self.out.write("\n")

    def _draw(self, position: int) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done_events / elapsed
        share = min(position / self.total, 1.0)
        left = (self.total - position) / rate if rate > 0 and position < self.total else 0.0
        bar = "#" * int(share * self.width)
        self.out.write(
            f"\r{self.label} [{bar:<{self.width}}] {share:6.1%} {self.done_events:,} events "
            f"{rate:,.0f}/s ETA {left:,.0f}s"
        )
        self.out.flush()
