"""Partners' webhook endpoints over real HTTP, on a real PostgreSQL: `backbone api` in its own process, once
as deployed (WEBHOOK_ALLOW_PRIVATE unset) and once beside it as for tests and local trials
(WEBHOOK_ALLOW_PRIVATE=1), both on one event store and each logging to a file of its own, at DEBUG, so the
last test can read every line for a secret.

Secrets are shown once, in the answer to a registration or a rotation; a partner sees only its own
endpoints (another's is a 404); an admin manages any partner's; other roles get 403; bad input is a 400
with a reason, and URLs that lead to loopback, private or link-local addresses are refused unless the
setting allows them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from backbone.migrate import migrate
from orders_core.lifecycle import Role
from orders_core.webhooks import MAX_ENDPOINTS, WebhookEventType
from tests.conftest import PostgresServer, RunningApi, logged

PUBLIC_URL = "https://1.1.1.1/hooks/alexandrite"
"""A public address written as one: accepted without DNS, which the test machines may not have."""
NEW_ENDPOINT = {"url": PUBLIC_URL, "event_types": ["order.shipped", "order.price_calculated"]}
ALL_TYPES = [t.value for t in WebhookEventType]


class Servers:
    def __init__(self, strict: RunningApi, loose: RunningApi, logs: tuple[Path, Path]) -> None:
        self.strict, self.loose, self.logs = strict, loose, logs
        self.secrets_seen: set[str] = set()


@pytest.fixture(scope="module")
def servers(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    url = postgres.create_database("webhooks")
    migrate(url)
    home = tmp_path_factory.mktemp("webhooks-home")
    logs = (home / "strict.log", home / "loose.log")
    with (
        logged("api", url, home, logs[0], WEBHOOK_ALLOW_PRIVATE="0") as strict,
        logged("api", url, home, logs[1], WEBHOOK_ALLOW_PRIVATE="1") as loose,
    ):
        yield Servers(strict, loose, logs)


@pytest.fixture(scope="module")
def api(servers: Servers) -> RunningApi:
    """The API as deployed: private addresses refused."""
    return servers.strict


@pytest.fixture(scope="module")
def acme(api: RunningApi) -> Iterator[httpx.Client]:
    with api.client(Role.PARTNER, "acme") as c:
        yield c


@pytest.fixture(scope="module")
def globex(api: RunningApi) -> Iterator[httpx.Client]:
    with api.client(Role.PARTNER, "globex") as c:
        yield c


@pytest.fixture(scope="module")
def admin(api: RunningApi) -> Iterator[httpx.Client]:
    with api.client(Role.ADMIN, "ada") as c:
        yield c


@pytest.fixture(scope="module")
def standing(acme: httpx.Client, servers: Servers) -> dict[str, Any]:
    """One endpoint of acme's that the refused changes below leave as it is."""
    return register(acme, servers)


@pytest.fixture
def unchanged(api: RunningApi) -> Iterator[None]:
    """Fails the test if the event store moved while it ran."""
    before = httpx.get(f"{api.base_url}/health").json()["position"]
    yield
    assert httpx.get(f"{api.base_url}/health").json()["position"] == before


def register(client: httpx.Client, servers: Servers, **changes: Any) -> dict[str, Any]:
    answer = client.post("/webhooks", json={**NEW_ENDPOINT, **changes})
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    servers.secrets_seen.add(body["secret"])
    return body


def rotate(client: httpx.Client, servers: Servers, endpoint_id: str, **body: Any) -> dict[str, Any]:
    answer = client.post(f"/webhooks/{endpoint_id}/rotate-secret", json=body)
    assert answer.status_code == 200, answer.text
    rotated: dict[str, Any] = answer.json()
    servers.secrets_seen.add(rotated["secret"])
    return rotated


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] and body["detail"], body
    return body


def reason_of(response: httpx.Response) -> str:
    """What a 400 says: its detail and, for a body that failed validation, each problem."""
    body = error_of(response, 400)
    return " ".join([body["detail"], *(str(p) for p in body.get("problems", []))])


# --- register, read, list -------------------------------------------------------------------------------


def test_a_partner_registers_an_endpoint_and_gets_its_secret_once(
    acme: httpx.Client, servers: Servers
) -> None:
    answer = acme.post("/webhooks", json={**NEW_ENDPOINT, "description": "order updates"})
    assert answer.status_code == 201, answer.text
    assert int(answer.headers["X-Position"]) > 0
    created = answer.json()
    servers.secrets_seen.add(created["secret"])
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", created["secret"])
    Webhook(created["secret"])  # a secret the Standard Webhooks library takes
    assert created["partner_id"] == "acme" and created["url"] == PUBLIC_URL and created["enabled"]
    assert created["event_types"] == ["order.price_calculated", "order.shipped"]
    assert created["description"] == "order updates"
    assert created["previous_secret_valid_until"] is None

    read = acme.get(f"/webhooks/{created['endpoint_id']}")
    assert read.status_code == 200, read.text
    assert "secret" not in read.json() and created["secret"] not in read.text
    assert read.json() == {k: v for k, v in created.items() if k != "secret"}
    listed = acme.get("/webhooks")
    assert listed.status_code == 200 and created["secret"] not in listed.text
    assert created["endpoint_id"] in [e["endpoint_id"] for e in listed.json()]
    assert all("secret" not in e for e in listed.json())


def test_a_partner_lists_its_endpoints_oldest_first(api: RunningApi, servers: Servers) -> None:
    with api.client(Role.PARTNER, "initech") as initech:
        assert initech.get("/webhooks").json() == []
        ids = [register(initech, servers)["endpoint_id"] for _ in range(3)]
        assert [e["endpoint_id"] for e in initech.get("/webhooks").json()] == ids


def test_every_event_type_can_be_subscribed_to(acme: httpx.Client, servers: Servers) -> None:
    created = register(acme, servers, event_types=list(reversed(ALL_TYPES)))
    assert created["event_types"] == sorted(ALL_TYPES)


def test_a_repeated_event_type_counts_once(acme: httpx.Client, servers: Servers) -> None:
    created = register(acme, servers, event_types=["order.closed", "order.closed"])
    assert created["event_types"] == ["order.closed"]


# --- update, disable, enable, delete --------------------------------------------------------------------


def test_a_partner_updates_what_it_names_and_keeps_the_rest(acme: httpx.Client, servers: Servers) -> None:
    created = register(acme, servers, description="first")
    endpoint = f"/webhooks/{created['endpoint_id']}"
    moved = acme.patch(endpoint, json={"url": "https://8.8.8.8/new", "event_types": ["order.cancelled"]})
    assert moved.status_code == 200, moved.text
    assert moved.json()["url"] == "https://8.8.8.8/new"
    assert moved.json()["event_types"] == ["order.cancelled"]
    assert moved.json()["description"] == "first"
    described = acme.patch(endpoint, json={"description": ""}).json()
    assert (described["url"], described["description"]) == ("https://8.8.8.8/new", "")
    assert acme.get(endpoint).json() == described
    assert "secret" not in described


def test_a_partner_disables_and_enables_an_endpoint(acme: httpx.Client, servers: Servers) -> None:
    endpoint = f"/webhooks/{register(acme, servers)['endpoint_id']}"
    off = acme.post(f"{endpoint}/disable")
    assert off.status_code == 200 and off.json()["enabled"] is False
    assert acme.post(f"{endpoint}/disable").json()["enabled"] is False  # again: still off, no error
    assert acme.get(endpoint).json()["enabled"] is False
    on = acme.post(f"{endpoint}/enable")
    assert on.status_code == 200 and on.json()["enabled"] is True


def test_a_partner_removes_an_endpoint_for_good(acme: httpx.Client, servers: Servers) -> None:
    endpoint_id = register(acme, servers)["endpoint_id"]
    removed = acme.delete(f"/webhooks/{endpoint_id}")
    assert removed.status_code == 204 and int(removed.headers["X-Position"]) > 0
    error_of(acme.get(f"/webhooks/{endpoint_id}"), 404)
    assert endpoint_id not in [e["endpoint_id"] for e in acme.get("/webhooks").json()]
    error_of(acme.delete(f"/webhooks/{endpoint_id}"), 404)
    error_of(acme.post(f"/webhooks/{endpoint_id}/enable"), 404)


# --- secrets --------------------------------------------------------------------------------------------


def test_a_rotation_shows_the_new_secret_once_and_keeps_the_old_one_for_the_overlap(
    acme: httpx.Client, servers: Servers
) -> None:
    created = register(acme, servers)
    endpoint = f"/webhooks/{created['endpoint_id']}"
    rotated = rotate(acme, servers, created["endpoint_id"])
    assert rotated["secret"] != created["secret"] and rotated["secret"].startswith("whsec_")
    rotated_at = datetime.fromisoformat(rotated["updated_at"])
    until = datetime.fromisoformat(rotated["previous_secret_valid_until"])
    assert until - rotated_at == timedelta(hours=24)  # the default overlap
    read = acme.get(endpoint)
    assert read.json()["previous_secret_valid_until"] == rotated["previous_secret_valid_until"]
    assert created["secret"] not in read.text and rotated["secret"] not in read.text

    short = rotate(acme, servers, created["endpoint_id"], overlap_seconds=600)
    short_until = datetime.fromisoformat(short["previous_secret_valid_until"])
    assert short_until - datetime.fromisoformat(short["updated_at"]) == timedelta(minutes=10)
    leaked = rotate(acme, servers, created["endpoint_id"], overlap_seconds=0)
    assert leaked["previous_secret_valid_until"] is None
    assert len({created["secret"], rotated["secret"], short["secret"], leaked["secret"]}) == 4


# --- who may --------------------------------------------------------------------------------------------


def test_another_partners_endpoint_is_not_found(
    acme: httpx.Client, globex: httpx.Client, servers: Servers, api: RunningApi
) -> None:
    created = register(acme, servers)
    endpoint = f"/webhooks/{created['endpoint_id']}"
    before = httpx.get(f"{api.base_url}/health").json()["position"]
    answers = [
        globex.get(endpoint),
        globex.patch(endpoint, json={"description": "mine now"}),
        globex.post(f"{endpoint}/disable"),
        globex.post(f"{endpoint}/enable"),
        globex.post(f"{endpoint}/rotate-secret", json={}),
        globex.delete(endpoint),
        globex.get(endpoint, params={"partner_id": "acme"}),
        globex.post(f"{endpoint}/disable", params={"partner_id": "acme"}),
    ]
    for answer in answers:
        body = error_of(answer, 404)
        assert "acme" not in answer.text and created["url"] not in answer.text, body
    assert created["endpoint_id"] not in globex.get("/webhooks").text
    error_of(globex.get("/webhooks", params={"partner_id": "acme"}), 403)
    error_of(globex.post("/webhooks", json={**NEW_ENDPOINT, "partner_id": "acme"}), 403)
    assert httpx.get(f"{api.base_url}/health").json()["position"] == before
    assert acme.get(endpoint).json()["enabled"] is True


def test_an_admin_manages_any_partners_endpoints(
    acme: httpx.Client, admin: httpx.Client, servers: Servers
) -> None:
    created = register(admin, servers, partner_id="acme", description="set up by support")
    assert created["partner_id"] == "acme"
    assert created["endpoint_id"] in [e["endpoint_id"] for e in acme.get("/webhooks").json()]
    mine = register(acme, servers)
    endpoint, own = f"/webhooks/{mine['endpoint_id']}", {"partner_id": "acme"}
    assert admin.get(endpoint, params=own).json()["url"] == PUBLIC_URL
    assert admin.post(f"{endpoint}/disable", params=own).json()["enabled"] is False
    assert (
        admin.patch(endpoint, params=own, json={"description": "by admin"}).json()["description"]
        == "by admin"
    )
    rotate_answer = admin.post(f"{endpoint}/rotate-secret", params=own, json={"overlap_seconds": 60})
    assert rotate_answer.status_code == 200
    servers.secrets_seen.add(rotate_answer.json()["secret"])
    listed = admin.get("/webhooks", params=own)
    assert {created["endpoint_id"], mine["endpoint_id"]} <= {e["endpoint_id"] for e in listed.json()}
    assert admin.delete(endpoint, params=own).status_code == 204
    error_of(acme.get(endpoint), 404)


def test_an_admin_must_name_the_partner(admin: httpx.Client, acme: httpx.Client, servers: Servers) -> None:
    endpoint_id = register(acme, servers)["endpoint_id"]
    before = acme.get("/webhooks").headers["X-Position"]
    for answer in (
        admin.post("/webhooks", json=NEW_ENDPOINT),
        admin.get("/webhooks"),
        admin.get(f"/webhooks/{endpoint_id}"),
        admin.post(f"/webhooks/{endpoint_id}/disable"),
    ):
        assert "partner_id" in reason_of(answer)
    assert acme.get("/webhooks").headers["X-Position"] == before


def test_an_admin_naming_the_wrong_partner_finds_nothing(
    admin: httpx.Client, acme: httpx.Client, servers: Servers
) -> None:
    endpoint_id = register(acme, servers)["endpoint_id"]
    error_of(admin.get(f"/webhooks/{endpoint_id}", params={"partner_id": "globex"}), 404)


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("role", [Role.CUSTOMER, Role.SELLER, Role.OPERATOR, Role.SERVICE])
def test_other_roles_are_forbidden_on_every_route(
    role: Role, api: RunningApi, acme: httpx.Client, servers: Servers
) -> None:
    endpoint = f"/webhooks/{uuid4()}"
    with api.client(role, "acme") as caller:  # even with the partner's name as their own
        answers = [
            caller.post("/webhooks", json=NEW_ENDPOINT),
            caller.get("/webhooks"),
            caller.get(endpoint),
            caller.patch(endpoint, json={"description": "x"}),
            caller.post(f"{endpoint}/disable"),
            caller.post(f"{endpoint}/enable"),
            caller.post(f"{endpoint}/rotate-secret", json={}),
            caller.delete(endpoint),
        ]
    for answer in answers:
        assert "may not manage webhook endpoints" in error_of(answer, 403)["detail"]


@pytest.mark.usefixtures("unchanged")
def test_without_a_token_every_route_is_401(api: RunningApi) -> None:
    with api.anonymous() as anonymous:
        error_of(anonymous.get("/webhooks"), 401)
        error_of(anonymous.post("/webhooks", json=NEW_ENDPOINT), 401)


# --- bad input ------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"url": "ftp://hooks.example/", "event_types": ["order.created"]}, "https://"),
        ({"url": "not a url", "event_types": ["order.created"]}, "spaces"),
        ({"url": "https://user:pw@1.1.1.1/", "event_types": ["order.created"]}, "password"),
        ({"url": "https://1.1.1.1/#x", "event_types": ["order.created"]}, "fragment"),
        ({"url": "", "event_types": ["order.created"]}, "url"),
        ({"url": "https://1.1.1.1/" + "x" * 2048, "event_types": ["order.created"]}, "url"),
        ({"url": PUBLIC_URL, "event_types": ["order.teleported"]}, "order.teleported"),
        ({"url": PUBLIC_URL, "event_types": ["OrderShipped"]}, "OrderShipped"),
        ({"url": PUBLIC_URL, "event_types": []}, "event_types"),
        ({"url": PUBLIC_URL, "event_types": "order.created"}, "event_types"),
        ({"url": PUBLIC_URL, "event_types": ["order.created"], "description": "x" * 501}, "description"),
        ({"url": PUBLIC_URL, "event_types": ["order.created"], "colour": "rose"}, "colour"),
        ({"url": PUBLIC_URL, "event_types": ["order.created"], "secret": "whsec_mine"}, "secret"),
        ({"event_types": ["order.created"]}, "url"),
        ({"url": PUBLIC_URL}, "event_types"),
    ],
)
def test_a_bad_registration_is_a_400_with_a_reason(
    acme: httpx.Client, body: dict[str, Any], why: str
) -> None:
    assert why in reason_of(acme.post("/webhooks", json=body))


def test_a_partner_has_at_most_so_many_endpoints(api: RunningApi, servers: Servers) -> None:
    with api.client(Role.PARTNER, "hoarder") as hoarder:
        for _ in range(MAX_ENDPOINTS):
            register(hoarder, servers)
        refused = error_of(hoarder.post("/webhooks", json=NEW_ENDPOINT), 409)
        assert f"at most {MAX_ENDPOINTS}" in refused["detail"]
        first = hoarder.get("/webhooks").json()[0]["endpoint_id"]
        assert hoarder.delete(f"/webhooks/{first}").status_code == 204
        register(hoarder, servers)


@pytest.mark.usefixtures("unchanged")
def test_a_body_that_is_not_json_is_a_400(acme: httpx.Client) -> None:
    answer = acme.post("/webhooks", content=b"{not json", headers={"Content-Type": "application/json"})
    error_of(answer, 400)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"overlap_seconds": -1}, "overlap_seconds"),
        ({"overlap_seconds": 7 * 24 * 3600 + 1}, "overlap_seconds"),
        ({"overlap_seconds": "a day"}, "overlap_seconds"),
        ({"overlap": 60}, "overlap"),
    ],
)
@pytest.mark.usefixtures("unchanged")
def test_a_bad_rotation_is_a_400_with_a_reason(
    acme: httpx.Client, standing: dict[str, Any], body: dict[str, Any], why: str
) -> None:
    endpoint_id = standing["endpoint_id"]
    assert why in reason_of(acme.post(f"/webhooks/{endpoint_id}/rotate-secret", json=body))


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"url": "http://1.1.1.1/"}, "https://"),
        ({"url": "https://10.0.0.1/"}, "10.0.0.1"),
        ({"event_types": []}, "event_types"),
        ({"event_types": ["order.unknown"]}, "order.unknown"),
        ({"description": "x" * 501}, "description"),
        ({"enabled": False}, "enabled"),
    ],
)
@pytest.mark.usefixtures("unchanged")
def test_a_bad_update_is_a_400_with_a_reason(
    acme: httpx.Client, standing: dict[str, Any], body: dict[str, Any], why: str
) -> None:
    endpoint = f"/webhooks/{standing['endpoint_id']}"
    assert why in reason_of(acme.patch(endpoint, json=body))
    assert acme.get(endpoint).json()["url"] == PUBLIC_URL


@pytest.mark.usefixtures("unchanged")
def test_a_malformed_endpoint_id_is_a_4xx(acme: httpx.Client) -> None:
    answer = acme.get("/webhooks/not-an-id")
    assert 400 <= answer.status_code < 500


# --- server-side request forgery ------------------------------------------------------------------------

LOOPBACK_HTTP = ["http://127.0.0.1/hook", "http://[::1]/hook", "http://localhost:9/hook"]
PRIVATE_HTTPS = [
    "https://127.0.0.1/hook",
    "https://[::1]/hook",
    "https://localhost/hook",
    "https://10.0.0.1/hook",
    "https://192.168.1.20/hook",
    "https://169.254.169.254/latest/meta-data",
    "https://[fe80::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://[::ffff:10.0.0.1]/hook",
]
PRIVATE_HTTP = ["http://10.0.0.1/hook", "http://169.254.169.254/latest/meta-data"]
NEVER = ["https://0.0.0.0/hook", "https://224.0.0.1/hook", "https://[ff02::1]/hook", "https://240.0.0.1/"]


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("url", LOOPBACK_HTTP + PRIVATE_HTTPS + PRIVATE_HTTP + NEVER)
def test_a_url_that_leads_inside_is_refused(acme: httpx.Client, url: str) -> None:
    reason = reason_of(acme.post("/webhooks", json={**NEW_ENDPOINT, "url": url}))
    assert re.search(
        r"resolves to .*\((loopback|private|link-local|multicast|reserved|unspecified)\)", reason
    )


@pytest.mark.usefixtures("unchanged")
def test_a_host_that_does_not_resolve_is_refused(acme: httpx.Client) -> None:
    answer = acme.post("/webhooks", json={**NEW_ENDPOINT, "url": "https://no-such-host.invalid/hook"})
    assert "does not resolve" in reason_of(answer)


@pytest.mark.parametrize("url", LOOPBACK_HTTP + PRIVATE_HTTPS)
def test_with_private_allowed_loopback_and_private_urls_are_accepted(servers: Servers, url: str) -> None:
    with servers.loose.client(Role.PARTNER, "trial") as trial:
        created = register(trial, servers, url=url)
    assert created["url"] == url


@pytest.mark.parametrize("url", PRIVATE_HTTP)
def test_with_private_allowed_plain_http_is_still_only_for_loopback(servers: Servers, url: str) -> None:
    with servers.loose.client(Role.PARTNER, "trial") as trial:
        assert "https://" in reason_of(trial.post("/webhooks", json={**NEW_ENDPOINT, "url": url}))


@pytest.mark.parametrize("url", NEVER)
def test_with_private_allowed_multicast_reserved_and_unspecified_are_still_refused(
    servers: Servers, url: str
) -> None:
    with servers.loose.client(Role.PARTNER, "trial") as trial:
        reason_of(trial.post("/webhooks", json={**NEW_ENDPOINT, "url": url}))


@pytest.mark.usefixtures("unchanged")
def test_an_update_to_a_url_inside_is_refused_too(acme: httpx.Client, standing: dict[str, Any]) -> None:
    endpoint_id = standing["endpoint_id"]
    for url in ("https://localhost/hook", "https://169.254.169.254/"):
        assert "resolves to" in reason_of(acme.patch(f"/webhooks/{endpoint_id}", json={"url": url}))


# --- the document and the logs --------------------------------------------------------------------------


def test_every_webhook_operation_is_tagged_named_and_documents_its_errors(api: RunningApi) -> None:
    doc = httpx.get(f"{api.base_url}/schema/openapi.json").json()
    operations = {
        op["operationId"]: op
        for path, item in doc["paths"].items()
        if path.startswith("/webhooks")
        for op in item.values()
        if isinstance(op, dict) and "responses" in op
    }
    assert set(operations) == {
        "RegisterWebhookEndpoint",
        "ListWebhookEndpoints",
        "ReadWebhookEndpoint",
        "UpdateWebhookEndpoint",
        "DisableWebhookEndpoint",
        "EnableWebhookEndpoint",
        "RotateWebhookSecret",
        "RemoveWebhookEndpoint",
        "ListWebhookAttempts",
        "ListWebhookMessages",
        "ReplayWebhookMessage",
        "ReplayWebhookMessages",
    }
    error = {"$ref": "#/components/schemas/Error"}
    for op_id, op in operations.items():
        assert op["tags"] == ["webhooks"], op_id
        for status in ("400", "401", "403", "404"):
            assert op["responses"][status]["content"]["application/json"]["schema"] == error, op_id
    for body in ("NewWebhookEndpoint", "WebhookEndpointChanges", "SecretRotation", "WebhookReplay"):
        assert doc["components"]["schemas"][body]["additionalProperties"] is False
    assert set(doc["components"]["schemas"]["WebhookEventType"]["enum"]) == set(ALL_TYPES)
    assert "secret" not in doc["components"]["schemas"]["WebhookEndpointView"]["properties"]
    assert "content" not in doc["paths"]["/webhooks/{endpoint_id}"]["delete"]["responses"]["204"]
    assert "public addresses only" in doc["info"]["description"]


def test_no_secret_is_in_the_document_or_any_log_line(servers: Servers) -> None:
    """Last in the module: every secret the tests above were shown, looked for everywhere but the answers
    that showed them."""
    assert len(servers.secrets_seen) > 20
    for api in (servers.strict, servers.loose):
        doc = httpx.get(f"{api.base_url}/schema/openapi.json").text
        assert not re.search(r"whsec_[A-Za-z0-9+/]{20,}", doc)
    strict_log = servers.logs[0].read_text(errors="replace")
    assert '"webhooks command"' in strict_log and "RotateWebhookSecret" in strict_log  # logged ...
    for log in servers.logs:
        text = log.read_text(errors="replace")
        for secret in servers.secrets_seen:  # ... and none of their secrets
            assert secret not in text and secret.removeprefix("whsec_") not in text
