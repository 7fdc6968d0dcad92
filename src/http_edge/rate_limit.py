"""Requests a minute per caller of a limited role (partners by default), counted by each API process alone.

The generic cell rate algorithm keeps one number per caller: the time its next request is due if it spread
its allowance evenly. A caller may spend the whole minute's allowance at once; after that one request
more is admitted every `60 / per_minute` seconds. A refused request is not counted, so a client that keeps
retrying still gets its share, and the refusal says exactly how long to wait.

Each process counts on its own (no shared store, no round trip): with N API replicas or workers a caller
may in the worst case get N times the limit, as its requests are spread over them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.exceptions import TooManyRequestsException

from http_edge.auth import actor_from, provide_actor
from orders_core.actors import Actor
from orders_core.lifecycle import Role

LIMITABLE = frozenset({Role.PARTNER, Role.CUSTOMER})
"""Roles a limit may apply to: outside callers. Staff work the console and the service role delivers pricing
results and carrier messages; throttling those would only delay orders."""
FORGET_AFTER = 10_000
"""Callers remembered before those whose allowance has refilled are forgotten (they are as good as new)."""


@dataclass(frozen=True)
class Throttled:
    """A request over the caller's limit: how long until it would be admitted."""

    retry_after_s: float

    @property
    def retry_after_header(self) -> str:
        """Retry-After as HTTP wants it: whole seconds, at least 1."""
        return str(max(1, math.ceil(self.retry_after_s)))


class RateLimiter:
    """Admits at most `per_minute` requests a minute per (role, subject) of the `roles` it limits.

    Not thread-safe, and needs none: it is called from the `actor` dependency, which runs on the event loop.
    """

    def __init__(
        self, per_minute: int, roles: Iterable[Role], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.roles = frozenset(roles)
        if per_minute <= 0:
            raise ValueError(f"a rate limit must be more than 0 requests a minute, not {per_minute}")
        if not self.roles <= LIMITABLE:
            raise ValueError(f"only {sorted(LIMITABLE)} may be rate limited, not {sorted(self.roles)}")
        self.per_minute = per_minute
        self._interval = 60.0 / per_minute
        self._tolerance = 60.0 - self._interval  # a full minute's allowance may come at once
        self._due: dict[tuple[Role, str], float] = {}
        self._forget_at = FORGET_AFTER
        self._clock = clock

    def admit(self, actor: Actor) -> Throttled | None:
        """None if `actor` may make this request now (and it is counted), else how long to wait."""
        if actor.role not in self.roles:
            return None
        now = self._clock()
        key = (actor.role, actor.subject)
        due = max(self._due.get(key, now), now)
        wait = due - now - self._tolerance
        if wait > 0:
            return Throttled(wait)
        self._due[key] = due + self._interval
        if len(self._due) > self._forget_at:
            self._forget(now)
        return None

    def _forget(self, now: float) -> None:
        # A caller due no later than now has its full allowance back: forgetting it changes nothing.
        self._due = {key: due for key, due in self._due.items() if due > now}
        self._forget_at = max(FORGET_AFTER, 2 * len(self._due))  # so pruning stays amortised O(1)


def limiter_from_settings(per_minute: int, roles: Iterable[str]) -> RateLimiter | None:
    """The limiter RATE_LIMIT_PER_MINUTE and RATE_LIMITED_ROLES ask for; None when the limit is off (0)."""
    if per_minute < 0:
        raise ValueError(f"RATE_LIMIT_PER_MINUTE must be 0 (off) or more, not {per_minute}")
    try:
        limited = [Role(r) for r in roles]
    except ValueError as e:
        raise ValueError(f"RATE_LIMITED_ROLES: {e}") from e
    return RateLimiter(per_minute, limited) if per_minute and limited else None


def actor_provider(limiter: RateLimiter | None) -> Callable[[Request[Any, Any, Any]], Awaitable[Actor]]:
    """The `actor` dependency: the token's actor, refused with 429 and Retry-After when over its limit.

    Checked where the token is already resolved, so an unlimited role pays one set lookup and no more.
    """
    if limiter is None:
        return provide_actor

    async def provide_limited_actor(request: Request[Any, Any, Any]) -> Actor:
        actor = actor_from(request)
        throttled = limiter.admit(actor)
        if throttled is not None:
            wait = throttled.retry_after_header
            raise TooManyRequestsException(
                f"more than {limiter.per_minute} requests a minute from {actor.role} {actor.subject!r};"
                f" retry after {wait} s",
                headers={"Retry-After": wait},
                extra={"retry_after": int(wait)},
            )
        return actor

    return provide_limited_actor


def limit_description(limiter: RateLimiter | None) -> str:
    """The rate limit as the OpenAPI description tells a partner's developer."""
    if limiter is None:
        return "No rate limit."
    roles = " and ".join(sorted(limiter.roles))
    return (
        f"Rate limit: {limiter.per_minute} requests a minute per {roles} token subject, counted by each"
        " API process; beyond it 429 with a Retry-After header (seconds)."
    )
