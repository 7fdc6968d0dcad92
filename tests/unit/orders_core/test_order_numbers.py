"""Order numbers come from blocks this process reserved: in order, never twice, a new block when needed."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from orders_core.numbers import OrderNumbers, local_blocks


def test_numbers_are_handed_out_in_order_from_each_block_and_a_new_block_is_reserved_when_one_runs_out() -> (
    None
):
    blocks = iter([range(100, 103), range(200, 202)])
    numbers = OrderNumbers(lambda: next(blocks))
    assert numbers.at_hand() is None  # nothing reserved yet
    assert [numbers.next() for _ in range(5)] == ["A-100", "A-101", "A-102", "A-200", "A-201"]


def test_a_number_at_hand_never_waits_for_a_block() -> None:
    reserving = threading.Event()
    release = threading.Event()

    def slow_block() -> range:
        reserving.set()
        release.wait(5)
        return range(1, 3)

    numbers = OrderNumbers(slow_block)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(numbers.next)
        reserving.wait(5)
        assert numbers.at_hand() is None  # another thread is reserving: do not wait for it
        release.set()
        assert first.result(5) == "A-1"
    assert numbers.at_hand() == "A-2"


def test_concurrent_callers_never_get_the_same_number() -> None:
    numbers = OrderNumbers(local_blocks(first=1))
    with ThreadPoolExecutor(8) as pool:
        handed = list(pool.map(lambda _: numbers.next(), range(2000)))
    assert len(set(handed)) == 2000
