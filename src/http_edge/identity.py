"""Bearer tokens: HS256 JWTs carrying a subject and one role; minted for local use, verified at every edge."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import jwt

from orders_core.contracts import Actor, Role

AUDIENCE = "alexandrite-backbone"
ALGORITHM = "HS256"  # pinned: a token naming another algorithm (or none) is refused
VERIFIED_TOKENS_CACHED = 4096
"""Tokens whose signature and claims were checked, remembered with their expiry (one client sends one
token with every request, and checking it again costs as much as the rest of a small command)."""


class TokenError(Exception):
    """A bearer token that cannot be trusted; the message says why, for the 401 body."""


def mint_token(secret: str, role: Role, subject: str, ttl: timedelta = timedelta(days=30)) -> str:
    """A signed token for `subject` acting as `role`."""
    now = datetime.now(UTC)
    claims = {"sub": subject, "role": role.value, "aud": AUDIENCE, "iat": now, "exp": now + ttl}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str) -> Actor:
    """The actor a token names, or TokenError saying what is wrong with it."""
    actor, expires_at = _verified(secret, token)
    # A remembered token is only as good as its expiry; it was valid when checked, the rest cannot change.
    if time.time() >= expires_at:
        raise TokenError("the token has expired")
    return actor


@lru_cache(maxsize=VERIFIED_TOKENS_CACHED)  # refusals raise, so they are never remembered
def _verified(secret: str, token: str) -> tuple[Actor, float]:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": ["exp", "sub", "role", "aud"]},
        )
    except jwt.ExpiredSignatureError as e:
        raise TokenError("the token has expired") from e
    except jwt.InvalidTokenError as e:
        raise TokenError(f"invalid token: {e}") from e
    try:
        role = Role(claims["role"])
    except ValueError as e:
        raise TokenError(f"unknown role {claims['role']!r}") from e
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject.strip():
        raise TokenError("the token's subject is empty")
    return Actor(role, subject), float(claims["exp"])


def actor_from_authorization(secret: str, header: str | None) -> Actor:
    """The actor of an `Authorization: Bearer <token>` header, or TokenError saying what is missing."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenError("send 'Authorization: Bearer <token>'")
    return verify_token(secret, token.strip())
