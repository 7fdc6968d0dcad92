"""The per-caller rate limiter on a clock the test moves."""

from __future__ import annotations

import pytest

from http_edge import rate_limit
from http_edge.rate_limit import RateLimiter, Throttled, limiter_from_settings
from orders_core.actors import Actor
from orders_core.lifecycle import Role

ACME = Actor(Role.PARTNER, "acme")
GLOBEX = Actor(Role.PARTNER, "globex")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def admitted(limiter: RateLimiter, actor: Actor, times: int) -> int:
    return sum(limiter.admit(actor) is None for _ in range(times))


def test_a_minutes_allowance_may_come_at_once_and_no_more() -> None:
    clock = Clock()
    limiter = RateLimiter(60, {Role.PARTNER}, clock)
    assert admitted(limiter, ACME, 60) == 60
    refused = limiter.admit(ACME)
    assert isinstance(refused, Throttled) and refused.retry_after_s == pytest.approx(1.0)
    assert refused.retry_after_header == "1"


def test_the_allowance_refills_evenly() -> None:
    clock = Clock()
    limiter = RateLimiter(6, {Role.PARTNER}, clock)  # one request every 10 s
    assert admitted(limiter, ACME, 10) == 6
    clock.now += 9.5
    refused = limiter.admit(ACME)
    assert refused is not None and refused.retry_after_header == "1"
    clock.now += 0.5
    assert admitted(limiter, ACME, 3) == 1
    clock.now += 60
    assert admitted(limiter, ACME, 10) == 6


def test_refused_requests_do_not_count() -> None:
    clock = Clock()
    limiter = RateLimiter(6, {Role.PARTNER}, clock)
    admitted(limiter, ACME, 6)
    for _ in range(100):
        limiter.admit(ACME)
    clock.now += 10
    assert limiter.admit(ACME) is None


def test_callers_are_counted_apart_and_unlimited_roles_not_at_all() -> None:
    limiter = RateLimiter(5, {Role.PARTNER}, Clock())
    assert admitted(limiter, ACME, 10) == 5
    assert admitted(limiter, GLOBEX, 5) == 5
    assert admitted(limiter, Actor(Role.CUSTOMER, "acme"), 50) == 50
    assert admitted(limiter, Actor(Role.SELLER, "s"), 50) == 50
    assert admitted(limiter, Actor(Role.SERVICE, "pricing"), 50) == 50


def test_callers_with_their_allowance_back_are_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rate_limit, "FORGET_AFTER", 10)
    clock = Clock()
    limiter = RateLimiter(60, {Role.PARTNER}, clock)
    for i in range(10):
        limiter.admit(Actor(Role.PARTNER, f"p{i}"))
    clock.now += 2  # each is due again after 1 s
    limiter.admit(ACME)
    limiter.admit(GLOBEX)
    assert len(limiter._due) <= 2


def test_settings() -> None:
    assert limiter_from_settings(0, ["partner"]) is None
    assert limiter_from_settings(10, []) is None
    limiter = limiter_from_settings(10, ["partner", "customer"])
    assert limiter is not None and limiter.roles == {Role.PARTNER, Role.CUSTOMER}
    for per_minute, roles in ((-1, ["partner"]), (10, ["seller"]), (10, ["service"]), (10, ["nobody"])):
        with pytest.raises(ValueError):
            limiter_from_settings(per_minute, roles)
