"""Schemathesis against each API's own live OpenAPI schema: no 5xx in at least 1,000 requests per API.

The command API (`backbone api`) and the read API (`backbone read-api`) run as their own processes beside
`backbone up`, on its database and blob directory, so the orders seeded here are priced and projected and
the read API has rows to show. Every operation is fuzzed with valid (positive) and invalid (negative)
inputs, each from a fixed Hypothesis seed and with no example database: CI replays the same requests.

schemathesis.pytest.from_fixture, the documented way to test a schema served by a fixture, fails under
pytest 9.2 (it sets `Function._nodeid`, which pytest 9.2 no longer has), so the tests drive the
documented Python API instead: `APIOperation.as_strategy` with `@given`, `Case.call`,
`Case.validate_response`.

Each request goes out with a bearer token of a role picked from the request itself (so every role meets
every operation), and most generated order ids are swapped for seeded orders, so the commands reach the
aggregate and its rules instead of ending at "no such order".
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from prometheus_client.parser import text_string_to_metric_families
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err, Ok
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from http_edge.identity import mint_token
from orders_core.lifecycle import Role
from tests.conftest import JWT_SECRET, RunningApi
from tests.journeys import NEW_ORDER, answered, submit
from tests.meshes import cube_stl
from tests.security.servers import backbone, position

ORDER_ACTIONS = ("submit", "approve", "take", "complete", "package", "ship", "close", "cancel")
SEED = 20_260_701
MIN_REQUESTS = 1000
COMMAND_EXAMPLES = 50
"""Examples per command API operation and generation mode (27 operations, 3 without any input)."""
READ_EXAMPLES = 120
"""Per read API operation and mode: it has fewer operations (7 fuzzed, 3 without any input)."""

COMMAND_ROUTES = {
    "POST /orders",
    "GET /orders/{order_id}",
    "GET /orders/{order_id}/history",
    "PUT /orders/{order_id}/model",
    *(f"POST /orders/{{order_id}}/{action}" for action in ORDER_ACTIONS),
    "POST /webhooks",
    "GET /webhooks",
    "GET /webhooks/{endpoint_id}",
    "PATCH /webhooks/{endpoint_id}",
    "DELETE /webhooks/{endpoint_id}",
    *(f"POST /webhooks/{{endpoint_id}}/{action}" for action in ("disable", "enable", "rotate-secret")),
}
READ_ROUTES = {"GET /shop/catalog", "GET /shop/orders", "GET /shop/orders/{order_id}", "GET /mes/orders"}
READ_ROUTES |= {"GET /mes/stats", "GET /mes/stream"}

CUSTOMER, PARTNER = "fuzz-customer", "fuzz-partner"
WEBHOOK_ENDPOINT = {"url": "https://1.1.1.1/fuzz", "event_types": ["order.shipped"]}
CALLERS = (
    (Role.CUSTOMER, CUSTOMER),
    (Role.PARTNER, PARTNER),
    (Role.SELLER, "fuzz-seller"),
    (Role.OPERATOR, "fuzz-operator"),
    (Role.ADMIN, "fuzz-admin"),
    (Role.SERVICE, "fuzz-service"),
    (Role.CUSTOMER, "fuzz-stranger"),
)
TOKENS = {caller: mint_token(JWT_SECRET, *caller) for caller in CALLERS}
SETTINGS = hypothesis.settings(
    database=None,  # nothing carried over between runs: CI replays exactly what the seeds generate
    deadline=None,  # each example is an HTTP round trip, slower than Hypothesis' default deadline
    suppress_health_check=list(hypothesis.HealthCheck),
    print_blob=False,
)


@dataclass
class Tally:
    """What one API was sent and how it answered, counted as the requests go out."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failing_responses: int = 0
    """Responses that failed a check, shrinking's replays included."""
    failures: list[str] = field(default_factory=list)
    """One per operation and mode that failed: the smallest failing case Hypothesis found."""


@dataclass(frozen=True)
class Seeded:
    """Orders in several statuses, and the event store position once they exist."""

    order_ids: tuple[str, ...]
    position: int
    endpoint_ids: tuple[str, ...] = ()
    """Webhook endpoints of the fuzzing partner."""


@pytest.fixture(scope="module")
def seeded(system: RunningApi) -> Seeded:
    """Orders of the fuzzing customer and partner: initiated, with a model, priced; the partner's webhook
    endpoints."""
    ids: list[str] = []
    with system.client(Role.CUSTOMER, CUSTOMER) as customer, system.client(Role.PARTNER, PARTNER) as partner:
        for client in (customer, partner):
            for _ in range(2):
                created = client.post("/orders", json=NEW_ORDER)
                assert created.status_code == 201, created.text
                ids.append(created.json()["order_id"])
            uploaded = submit(client, cube_stl())
            ids.append(uploaded)
            priced = submit(client, cube_stl())
            assert answered(client, priced)["status"] == "PRICE_CALCULATED"
            ids.append(priced)
        endpoints = [partner.post("/webhooks", json=WEBHOOK_ENDPOINT) for _ in range(2)]
        assert all(e.status_code == 201 for e in endpoints), [e.text for e in endpoints]
    return Seeded(tuple(ids), position(system), tuple(e.json()["endpoint_id"] for e in endpoints))


@pytest.fixture(scope="module")
def command_api(system: RunningApi, seeded: Seeded) -> Iterator[RunningApi]:
    """`backbone api` alone, writing to the same event store as `system`."""
    with backbone("api", system.database_url, system.home) as api:
        yield api


@pytest.fixture(scope="module")
def read_api(system: RunningApi, seeded: Seeded) -> Iterator[RunningApi]:
    """`backbone read-api` alone, reading the views that `system`'s projections keep."""
    with backbone("read-api", system.database_url, system.home) as api:
        caught_up = httpx.get(f"{api.base_url}/shop/catalog", params={"min_position": seeded.position})
        assert caught_up.status_code == 200, caught_up.text
        yield api


def load(api: RunningApi) -> schemathesis.BaseSchema:
    """The API's live schema; a schemathesis.toml found on the way up cannot change what is generated."""
    return schemathesis.openapi.from_url(f"{api.base_url}/schema/openapi.json", config=schemathesis.Config())


@pytest.fixture
def command_schema(command_api: RunningApi) -> schemathesis.BaseSchema:
    return load(command_api)


@pytest.fixture
def read_schema(read_api: RunningApi) -> schemathesis.BaseSchema:
    # Server-Sent Events never end, so a generated request would wait forever for the body;
    # test_ownership.py checks who may open the stream.
    return load(read_api).exclude(path="/mes/stream")


def digest(case: schemathesis.Case) -> int:
    """A number that depends only on what was generated, so the choices made from it are reproducible."""
    generated = [
        case.method,
        case.path,
        case.path_parameters,
        case.query,
        dict(case.headers or {}),
        case.body,
    ]
    text = json.dumps(generated, sort_keys=True, default=lambda o: type(o).__name__)
    return zlib.crc32(text.encode())


def aim(case: schemathesis.Case, seeded: Seeded) -> dict[str, str]:
    """Point most cases at seeded orders and webhook endpoints, a known material and reachable positions; the
    headers of the caller picked."""
    number = digest(case)
    order_id = (case.path_parameters or {}).get("order_id")
    if isinstance(order_id, str) and len(order_id) == 36 and number % 4:
        case.path_parameters["order_id"] = seeded.order_ids[number % len(seeded.order_ids)]
    endpoint_id = (case.path_parameters or {}).get("endpoint_id")
    if isinstance(endpoint_id, str) and len(endpoint_id) == 36 and number % 4:
        case.path_parameters["endpoint_id"] = seeded.endpoint_ids[number % len(seeded.endpoint_ids)]
    if isinstance(case.query, dict) and isinstance(case.query.get("partner_id"), str) and number % 3 == 0:
        case.query["partner_id"] = PARTNER  # an admin's view of the fuzzing partner's endpoints
    if isinstance(case.body, dict) and isinstance(case.body.get("material_code"), str) and number % 4:
        # a known material, so that more of the generated orders and products get past the catalog
        case.body["material_code"] = "AU750"
    if "min_position" in (case.query or {}):
        # A position the views will never reach is a deliberate 503 after a 5 s wait; test_read_api.py
        # covers it, and here it would only cost time. Negative cases may repeat the parameter.
        wait = case.query["min_position"]
        reachable = [reachable_position(w, seeded) for w in wait] if isinstance(wait, list) else None
        case.query["min_position"] = reachable or reachable_position(wait, seeded)
    caller = CALLERS[(number >> 8) % len(CALLERS)]
    return {"Authorization": f"Bearer {TOKENS[caller]}"}


def reachable_position(value: object, seeded: Seeded) -> object:
    """`value` made a position the views have reached, if it is one at all."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value >= 0:
        return value % (seeded.position + 1)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return str(int(value) % (seeded.position + 1))
    return value


def not_a_server_error_but_behind(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """No 5xx, except the read API's deliberate 503 for a `min_position` its views have not reached.

    `aim` keeps the positions it can see reachable, but negative cases also smuggle numbers in through
    nested values that end up as a repeated parameter; the server then rightly answers "not yet".
    """
    behind = (
        response.status_code == 503
        and "min_position=" in str(response.request.url)
        and bool(response.headers.get("retry-after"))
        and response.json().get("error") == "unavailable"
    )
    if not behind:
        not_a_server_error(ctx, response, case)


def errors_have_the_system_shape(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """Every 4xx is `{"error": code, "detail": text, ...}` (docs/architecture.md, "The order lifecycle")."""
    if 400 <= response.status_code < 500 and case.method.upper() != "HEAD":
        body = response.json()
        assert isinstance(body, dict), f"{response.status_code} body is not an object: {response.text[:200]}"
        assert isinstance(body.get("error"), str) and body["error"], f"no error code: {response.text[:200]}"
        assert isinstance(body.get("detail"), str) and body["detail"], f"no detail: {response.text[:200]}"


DOCUMENTED_ERRORS = ("/orders", "/catalog", "/webhooks", "/shop", "/mes")
"""Where the OpenAPI documents say what each error answer looks like (http_edge/error_contract.py)."""


def responses_conform(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """Bodies and content types match the schema: every answer of the order, catalog, shop and MES routes,
    and 2xx elsewhere.
    """
    documented = case.path.startswith(DOCUMENTED_ERRORS) and case.method.upper() != "HEAD"
    if documented or 200 <= response.status_code < 300:
        response_schema_conformance(ctx, response, case)
        content_type_conformance(ctx, response, case)


CHECKS = [not_a_server_error_but_behind, errors_have_the_system_shape, responses_conform]


def call_and_check(case: schemathesis.Case, seeded: Seeded, tally: Tally) -> None:
    headers = aim(case, seeded)
    response = case.call(headers=headers, timeout=30)
    tally.requests += 1
    tally.statuses[response.status_code] += 1
    try:
        case.validate_response(response, checks=CHECKS, headers=headers)
    except (Exception, FailureGroup):
        tally.failing_responses += 1
        raise


def fuzz(schema: schemathesis.BaseSchema, seeded: Seeded, examples: int) -> Tally:
    """Every operation in both generation modes, each with its own fixed seed; failures are collected so
    one run names them all."""
    tally = Tally()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()  # an operation it cannot read must not go untested
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            label = f"{operation.label} ({mode.value})"

            @hypothesis.seed(SEED ^ zlib.crc32(label.encode()))
            @hypothesis.settings(SETTINGS, max_examples=examples)
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case) -> None:
                call_and_check(case, seeded, tally)

            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                # nothing to make invalid: the operation takes no parameters and no body
                assert mode is GenerationMode.NEGATIVE and not operation_inputs(operation), label
            except (Exception, FailureGroup) as e:  # the shrunk failing case; the others still run
                tally.failures.append(f"{label}: {str(e).strip()[:2000]}")
    return tally


def operation_inputs(operation: schemathesis.APIOperation) -> list[Any]:
    """What a request to `operation` can carry: parameters and bodies."""
    return [*operation.iter_parameters(), *operation.body]


def test_the_schemas_load_without_errors(command_api: RunningApi, read_api: RunningApi) -> None:
    """The routes of both APIs are in the schemas fuzzed below, all readable by schemathesis."""
    for api, expected in ((command_api, COMMAND_ROUTES), (read_api, READ_ROUTES)):
        operations = list(load(api).get_all_operations())
        assert not [o.err() for o in operations if isinstance(o, Err)]
        assert expected <= {o.ok().label for o in operations if isinstance(o, Ok)}


def test_command_api_never_answers_5xx(
    command_schema: schemathesis.BaseSchema,
    command_api: RunningApi,
    read_api: RunningApi,
    seeded: Seeded,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert_fuzzed("command", fuzz(command_schema, seeded, COMMAND_EXAMPLES), command_api, capsys)
    # Whatever the fuzzing got accepted, the projections must digest it: an event they cannot store
    # would stop the shop and MES views for good, with no 5xx anywhere to show for it.
    reached = position(command_api)
    for _ in range(6):
        caught_up = httpx.get(
            f"{read_api.base_url}/mes/stats",
            params={"min_position": reached},
            headers={"Authorization": f"Bearer {TOKENS[Role.OPERATOR, 'fuzz-operator']}"},
            timeout=30,
        )
        if caught_up.status_code != 503:
            break
    assert caught_up.status_code == 200, caught_up.text
    shop = httpx.get(f"{read_api.base_url}/shop/catalog", params={"min_position": reached}, timeout=30)
    assert shop.status_code == 200, shop.text


def test_metrics_are_served_but_not_part_of_the_api_schemas(
    command_schema: schemathesis.BaseSchema, read_schema: schemathesis.BaseSchema, read_api: RunningApi
) -> None:
    for schema in (command_schema, read_schema):
        assert "/metrics" not in schema.raw_schema["paths"]
    assert "backbone_http_requests_total" in httpx.get(f"{read_api.base_url}/metrics", timeout=10).text


def test_read_api_never_answers_5xx(
    read_schema: schemathesis.BaseSchema,
    read_api: RunningApi,
    seeded: Seeded,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert_fuzzed("read", fuzz(read_schema, seeded, READ_EXAMPLES), read_api, capsys)


def served(api: RunningApi) -> Counter[int]:
    """Requests the server itself counted, by status: includes those that checks sent on their own."""
    counted: Counter[int] = Counter()
    text = httpx.get(f"{api.base_url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "backbone_http_requests_total":
                counted[int(sample.labels["status_code"])] += int(sample.value)
    return counted


def assert_fuzzed(name: str, tally: Tally, api: RunningApi, capsys: pytest.CaptureFixture[str]) -> None:
    """Enough requests, no failed check, and no 5xx by the server's own count (but the 503s that the
    checks accepted as "not yet"); the totals are printed."""
    server = served(api)
    server_errors = sum(n for status, n in server.items() if status >= 500) - tally.statuses[503]
    summary = (
        f"schemathesis {name} API: {tally.requests} requests, {len(tally.failures)} failures "
        f"({tally.failing_responses} failing responses); the server's /metrics counted "
        f"{sum(server.values())} requests on its routes, {server_errors} of them 5xx; "
        f"statuses {dict(sorted(tally.statuses.items()))}"
    )
    with capsys.disabled():
        print(f"\n{summary}")
    assert tally.requests >= MIN_REQUESTS, summary
    assert not tally.failures, "\n\n".join(tally.failures)
    assert server_errors == 0, summary
