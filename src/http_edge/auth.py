"""Bearer-token authentication as a Litestar dependency: handlers that name `actor` require a token."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.exceptions import NotAuthorizedException

from http_edge.identity import TokenError, actor_from_authorization
from orders_core.actors import Actor

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="alexandrite"'}


def actor_from(request: Request[Any, Any, Any]) -> Actor:
    """The actor the request's bearer token names; 401 with the reason otherwise."""
    try:
        return actor_from_authorization(request.app.state.jwt_secret, request.headers.get("authorization"))
    except TokenError as e:
        raise NotAuthorizedException(str(e), headers=CHALLENGE) from e


async def provide_actor(request: Request[Any, Any, Any]) -> Actor:
    """Litestar dependency for `actor`."""
    return actor_from(request)
