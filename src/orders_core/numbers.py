"""Order numbers (A-100001, ...): handed out from blocks that this process alone reserves.

Gaps are fine, repeats are not. The application is given an `OrderNumbers` over a block source: the
PostgreSQL sequence `crm.order_numbers` (migration 0004 steps it by the block size, so one `nextval`
reserves a whole block) or, for an application on an in-memory store, a counter of its own.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the adapter only calls it; importing it would load psycopg
    from eventsourcing.postgres import PostgresDatastore

NumberBlocks = Callable[[], Iterable[int]]
"""Reserves the next block of numbers for this process."""


class OrderNumbers:
    """The next order number, from the block at hand or a newly reserved one."""

    def __init__(self, blocks: NumberBlocks) -> None:
        self._blocks = blocks
        self._numbers: Iterator[int] = iter(())
        self._lock = threading.Lock()

    def next(self) -> str:
        """The next number, reserving a block first if the one at hand is used up (a database read)."""
        with self._lock:
            number = next(self._numbers, None)
            if number is None:
                self._numbers = iter(self._blocks())
                number = next(self._numbers)
        return f"A-{number}"

    def at_hand(self) -> str | None:
        """The next number if one is at hand, without waiting; None if a block must be reserved (or
        another thread is reserving one)."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            number = next(self._numbers, None)
        finally:
            self._lock.release()
        return None if number is None else f"A-{number}"


def sequence_blocks(datastore: PostgresDatastore) -> NumberBlocks:
    """Blocks from the sequence crm.order_numbers; its step (read with it) is the block size, so a sequence
    still stepping by 1 yields blocks of 1."""

    def reserve() -> range:
        with datastore.cursor() as cursor:
            cursor.execute(
                "SELECT nextval('crm.order_numbers') AS first, seqincrement AS size"
                " FROM pg_sequence WHERE seqrelid = 'crm.order_numbers'::regclass"
            )
            row = cursor.fetchone()
        assert row is not None
        first, size = int(row["first"]), int(row["size"])
        return range(first, first + size)

    return reserve


def local_blocks(first: int = 100001) -> NumberBlocks:
    """Numbers of this process alone (an application on an in-memory store, as in unit tests)."""
    counter = itertools.count(first)
    return lambda: counter
