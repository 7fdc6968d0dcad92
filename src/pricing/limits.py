"""The bounds a quote runs within: file size, triangles, unzipped size, casting flask, wall, time."""

from __future__ import annotations

import time
from dataclasses import dataclass

MiB = 1 << 20


@dataclass(frozen=True, kw_only=True)
class Limits:
    """What the quote engine accepts; each bound keeps one quote's time and memory predictable."""

    max_file_bytes: int = 256 * MiB
    max_triangles: int = 5_000_000
    max_unzipped_bytes: int = 512 * MiB
    """For 3MF: the model parts may unpack to at most this, counted while unpacking (headers can lie)."""
    flask_max_mm: float = 100.0
    """The largest dimension the casting flask takes."""
    min_wall_mm: float = 0.3
    """Below this mean wall thickness (2 x volume / area) a model is too thin to cast; see quote.py."""
    time_limit_s: float = 10.0


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Deadline:
    """A point on the monotonic clock after which a quote gives up.

    The engine checks it between phases (load, measure, closure check), never inside a numpy call, so a
    quote overruns by at most one phase; the triangle and size limits bound how long a phase can take.
    A caller that needs a hard stop runs quotes in a worker process it can kill.
    """

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """The deadline `seconds` from now."""
        return cls(time.monotonic() + seconds)

    def passed(self) -> bool:
        """Whether the time is up."""
        return time.monotonic() > self.at
