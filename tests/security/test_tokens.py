"""Bearer tokens that must not be trusted get a 401 that says why, on both APIs, never a 500.

tests/e2e/test_bad_input.py already refuses, on the command API, a missing token, garbage, an expired
token, another key's signature, `alg: none` and an unknown role. Here: the audience, the algorithm pinned
to HS256 (a token signed by the right secret with HS384/HS512, or naming RS256/ES256), the required
claims, malformed Authorization headers, and all of it on the read API's routes as well.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest

from http_edge.identity import AUDIENCE, mint_token
from orders_core.lifecycle import Role
from tests.conftest import JWT_SECRET, RunningApi
from tests.journeys import NEW_ORDER
from tests.security.servers import position

# The secret is fine for HS256; pyjwt only warns that it is short for HS512, which these tests misuse.
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
NOW = int(time.time())
VALID_CLAIMS: dict[str, Any] = {"sub": "mallory", "role": "admin", "aud": AUDIENCE, "exp": NOW + 3600}


def signed(claims: dict[str, Any], algorithm: str = "HS256", key: str = JWT_SECRET) -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], claims: dict[str, Any] = VALID_CLAIMS, signature: bytes = b"") -> str:
    """A token put together by hand: any header, any signature bytes."""
    parts = [json.dumps(header).encode(), json.dumps(claims).encode()]
    return ".".join([*(b64(p) for p in parts), b64(signature)])


def without(*names: str) -> dict[str, Any]:
    return {k: v for k, v in VALID_CLAIMS.items() if k not in names}


BAD_TOKENS: dict[str, Callable[[], str]] = {
    "expired": lambda: mint_token(JWT_SECRET, Role.ADMIN, "mallory", ttl=timedelta(seconds=-1)),
    "wrong audience": lambda: signed({**VALID_CLAIMS, "aud": "another-service"}),
    "audience list without ours": lambda: signed({**VALID_CLAIMS, "aud": ["a", "b"]}),
    "no audience": lambda: signed(without("aud")),
    "no expiry": lambda: signed(without("exp")),
    "no subject": lambda: signed(without("sub")),
    "blank subject": lambda: signed({**VALID_CLAIMS, "sub": "   "}),
    "no role": lambda: signed(without("role")),
    "role not a string": lambda: signed({**VALID_CLAIMS, "role": ["admin"]}),
    "not valid yet": lambda: signed({**VALID_CLAIMS, "nbf": NOW + 3600}),
    "HS384 with the right secret": lambda: signed(VALID_CLAIMS, "HS384"),
    "HS512 with the right secret": lambda: signed(VALID_CLAIMS, "HS512"),
    # No RSA or EC library is installed here, and none is needed: a pinned algorithm refuses the token
    # from its header, before any signature is looked at.
    "RS256": lambda: forged({"alg": "RS256", "typ": "JWT"}, signature=os.urandom(256)),
    "ES256": lambda: forged({"alg": "ES256", "typ": "JWT"}, signature=os.urandom(64)),
    "alg none, upper case": lambda: forged({"alg": "NONE", "typ": "JWT"}),
    "alg none with a signature": lambda: forged({"alg": "none"}, signature=os.urandom(32)),
    "HS256 header, signature stripped": lambda: signed(VALID_CLAIMS).rsplit(".", 1)[0] + ".",
    "HS256 header, another token's signature": lambda: (
        signed(VALID_CLAIMS).rsplit(".", 1)[0] + "." + signed(without("role")).rsplit(".", 1)[1]
    ),
    "claims not JSON": lambda: ".".join([b64(b'{"alg":"HS256"}'), b64(b"\xff\xfe"), b64(b"x")]),
    "header not JSON": lambda: ".".join([b64(b"{alg"), b64(b"{}"), b64(b"x")]),
    "two parts": lambda: signed(VALID_CLAIMS).rsplit(".", 1)[0],
    "four parts": lambda: signed(VALID_CLAIMS) + ".e30",
    "a very long token": lambda: signed(
        {**VALID_CLAIMS, "pad": "x" * 6000}, key="another-secret-" + "y" * 40
    ),
}
BAD_HEADERS: dict[str, bytes] = {
    "Bearer and nothing": b"Bearer",
    "Bearer and empty segments": b"Bearer ..",
    "Basic credentials": b"Basic " + base64.b64encode(b"admin:admin"),
    "another scheme": b"Token " + signed(VALID_CLAIMS).encode(),
    "two tokens": b"Bearer " + signed(VALID_CLAIMS).encode() + b" " + signed(VALID_CLAIMS).encode(),
    "bytes that are not text": b"Bearer \xe9\xff\xfe.\x80.\x81",
    "control characters": b"Bearer a\tb.c\td.e",
}
# One route of each authenticated kind: a command, a write-side read, the shop view, the MES view.
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/orders", NEW_ORDER),
    ("GET", "/orders/00000000-0000-4000-8000-000000000000", None),
    ("GET", "/shop/orders", None),
    ("GET", "/mes/orders", None),
]


@pytest.fixture(scope="module")
def anyone(system: RunningApi) -> Iterator[httpx.Client]:
    """No credentials of its own: each test sends the Authorization header it tries."""
    with system.anonymous() as client:
        yield client


@pytest.fixture
def still(system: RunningApi) -> Iterator[None]:
    before = position(system)
    yield
    assert position(system) == before


def send(client: httpx.Client, endpoint: tuple[str, str, Any], authorization: bytes) -> httpx.Response:
    method, path, body = endpoint
    return client.request(method, path, json=body, headers={"Authorization": authorization})


def unauthorized(response: httpx.Response) -> str:
    """Asserts a 401 with a reason and a Bearer challenge; returns the reason."""
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["error"] == "unauthorized" and body["detail"], body
    assert response.headers["www-authenticate"].startswith("Bearer"), response.headers
    detail: str = body["detail"]
    return detail


@pytest.mark.usefixtures("still")
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[f"{m} {p.split('/')[1]}" for m, p, _ in ENDPOINTS])
class TestRefused:
    @pytest.mark.parametrize("name", list(BAD_TOKENS))
    def test_a_token_that_cannot_be_trusted_is_401(
        self, anyone: httpx.Client, endpoint: tuple[str, str, Any], name: str
    ) -> None:
        unauthorized(send(anyone, endpoint, b"Bearer " + BAD_TOKENS[name]().encode()))

    @pytest.mark.parametrize("name", list(BAD_HEADERS))
    def test_a_malformed_authorization_header_is_401(
        self, anyone: httpx.Client, endpoint: tuple[str, str, Any], name: str
    ) -> None:
        unauthorized(send(anyone, endpoint, BAD_HEADERS[name]))


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("expired", "expired"),
        ("wrong audience", "audience"),
        ("no expiry", "exp"),
        ("HS512 with the right secret", "alg"),
        ("RS256", "alg"),
        ("blank subject", "subject"),
    ],
)
def test_the_reason_names_what_is_wrong(anyone: httpx.Client, name: str, words: str) -> None:
    for endpoint in (ENDPOINTS[0], ENDPOINTS[2]):
        reason = unauthorized(send(anyone, endpoint, b"Bearer " + BAD_TOKENS[name]().encode()))
        assert words in reason.lower(), reason


def test_the_same_claims_pass_when_signed_as_pinned(anyone: httpx.Client) -> None:
    """The control: what the tests above refuse is the token, not the claims or the route."""
    token = signed({**VALID_CLAIMS, "role": "seller"}).encode()
    for endpoint in ENDPOINTS[2:]:
        response = send(anyone, endpoint, b"Bearer " + token)
        assert response.status_code != 401, response.text
        assert response.status_code < 500
