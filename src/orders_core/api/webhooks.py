"""Webhook endpoints: partners register, read, change, switch off and on, remove them and rotate their
signing secrets; an admin does the same for any partner, naming it with `partner_id`.

Reads are served from the partner's aggregate through the application, as `GET /orders/{id}` is: all of a
partner's endpoints are one aggregate (orders_core/webhooks.py), so a list is one read of the event store
and a projection would add a view, a lag and a `min_position` to wait on for nothing.

Secrets appear in two answers only, each once: the registration's and the rotation's (each its new secret).
Where a URL leads is checked here, where the host is resolved (`Resolve`), with the pure rule of
orders_core/webhook_urls.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any
from uuid import UUID, uuid4

import anyio.to_thread
from litestar import Request, Response, Router, delete, get, patch, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import ClientException
from litestar.openapi.spec import Link, OpenAPIResponse, Operation
from litestar.params import FromPath, JSONBody, QueryParameter

from http_edge.errors import error_body
from http_edge.position import POSITION, documented_position
from orders_core.actors import Actor
from orders_core.api.orders import ErrorAnswer, provide_orders, refused, request_meta, send_error_answer
from orders_core.api.schemas import (
    NewWebhookEndpoint,
    SecretRotation,
    WebhookEndpointChanges,
    WebhookEndpointView,
    WebhookEndpointWithSecret,
    webhook_endpoint_view,
    webhook_endpoint_with_secret,
)
from orders_core.application import OrdersApplication
from orders_core.lifecycle import Role
from orders_core.outcomes import Accepted, Refusal, Refused
from orders_core.resolver import Resolve
from orders_core.webhook_urls import destination_refusal, parse_webhook_url
from orders_core.webhooks import (
    EndpointSettings,
    PartnerWebhooks,
    WebhookEndpoint,
    new_signing_secret,
)

Change = Callable[[PartnerWebhooks], Refusal | None]

PartnerParam = Annotated[
    str | None,
    QueryParameter(
        min_length=1,
        max_length=128,
        pattern=r"^[\w.@:+-]+$",
        description="The partner whose endpoints these are: required of an admin; a partner's are its own",
    ),
]


def partner_of(actor: Actor, named: str | None) -> str:
    """Whose endpoints `actor` asks for: a partner its own, an admin the partner it names."""
    if actor.role is Role.PARTNER:
        if named not in (None, actor.subject):
            raise refused(Refusal(Refused.FORBIDDEN, "a partner manages only its own webhook endpoints"))
        return actor.subject
    if actor.role is Role.ADMIN:
        if named is None:
            raise ClientException("an admin names the partner whose webhook endpoints these are: partner_id")
        return named
    raise refused(Refusal(Refused.FORBIDDEN, f"a {actor.role} may not manage webhook endpoints"))


async def checked_url(url: str, state: State) -> str:
    """`url` if a webhook may be sent there, else a 400 that says why (its form, or where its host leads)."""
    target = parse_webhook_url(url)
    if isinstance(target, str):
        raise _bad_url(target)
    resolve: Resolve = state.resolve_webhook_host
    addresses = await resolve(target.host, target.port)
    if isinstance(addresses, str):
        raise _bad_url(addresses)
    refusal = destination_refusal(target, addresses, allow_private=state.allow_private_webhooks)
    if refusal is not None:
        raise _bad_url(refusal)
    return url


def _bad_url(reason: str) -> ErrorAnswer:
    return ErrorAnswer(Response(error_body("bad_request", reason, field="url"), status_code=400))


def _decided(result: Accepted[PartnerWebhooks] | Refusal) -> Accepted[PartnerWebhooks]:
    if isinstance(result, Refusal):
        raise refused(result)
    return result


def _endpoint_of(result: Accepted[PartnerWebhooks], endpoint_id: UUID) -> WebhookEndpoint:
    return result.value.endpoints[endpoint_id]


async def _change(
    request: Request[Any, Any, State],
    command: str,
    partner_id: str,
    change: Change,
    actor: Actor,
    endpoint_id: UUID,
) -> Accepted[PartnerWebhooks]:
    orders = provide_orders(request.app.state)
    meta = request_meta(request)
    result = await anyio.to_thread.run_sync(
        lambda: orders.change_webhooks(command, partner_id, change, actor, meta, endpoint_id)
    )
    return _decided(result)


ON_ONE_ENDPOINT = (
    "ReadWebhookEndpoint", "UpdateWebhookEndpoint", "DisableWebhookEndpoint", "EnableWebhookEndpoint",
    "RotateWebhookSecret", "RemoveWebhookEndpoint", "ListWebhookAttempts", "ListWebhookMessages",
    "ReplayWebhookMessages",
)  # fmt: skip


@dataclass
class RegisterEndpointOperation(Operation):
    """`POST /webhooks` in the OpenAPI document: its 201 links to every operation on the endpoint it made,
    so a generated client, or a fuzzer's stateful phase, learns where `endpoint_id` goes."""

    def __post_init__(self) -> None:
        answer = (self.responses or {}).get("201")
        if isinstance(answer, OpenAPIResponse):
            answer.links = {
                target: Link(operation_id=target, parameters={"endpoint_id": "$response.body#/endpoint_id"})
                for target in ON_ONE_ENDPOINT
            }


@post(
    "/",
    status_code=201,
    operation_id="RegisterWebhookEndpoint",
    summary="RegisterWebhookEndpoint",
    operation_class=RegisterEndpointOperation,
)
async def register_endpoint(
    data: JSONBody[NewWebhookEndpoint], actor: NamedDependency[Actor], request: Request[Any, Any, State]
) -> Response[WebhookEndpointWithSecret]:
    """Register an endpoint for the partner's order events. The answer holds its signing secret: the only
    time it is shown."""
    partner_id = partner_of(actor, data.partner_id)
    url = await checked_url(data.url, request.app.state)
    endpoint_id, secret = uuid4(), new_signing_secret()
    settings = EndpointSettings(
        url=url, event_types=frozenset(data.event_types), description=data.description
    )
    result = await _change(
        request,
        "RegisterWebhookEndpoint",
        partner_id,
        lambda w: w.register(endpoint_id, settings, secret, actor),
        actor,
        endpoint_id,
    )
    body = webhook_endpoint_with_secret(partner_id, _endpoint_of(result, endpoint_id))
    return Response(body, status_code=201, headers={POSITION: str(result.position)})


@get("/", sync_to_thread=True, operation_id="ListWebhookEndpoints", summary="ListWebhookEndpoints")
def list_endpoints(
    actor: NamedDependency[Actor], state: State, partner_id: PartnerParam = None
) -> Response[list[WebhookEndpointView]]:
    """The partner's endpoints, oldest first (without their secrets)."""
    partner = partner_of(actor, partner_id)
    orders = provide_orders(state)
    webhooks = orders.webhooks(partner)
    listed = [webhook_endpoint_view(partner, e) for e in webhooks.listed()] if webhooks else []
    return Response(listed, headers={POSITION: str(orders.position())})


def visible_endpoint(
    orders: OrdersApplication, endpoint_id: UUID, actor: Actor, partner_id: str | None
) -> tuple[str, WebhookEndpoint]:
    partner = _endpoint_partner(actor, partner_id, endpoint_id)
    webhooks = orders.webhooks(partner)
    found = (
        webhooks.endpoint(endpoint_id, actor)
        if webhooks is not None
        else Refusal(Refused.NOT_FOUND, f"no webhook endpoint {endpoint_id}")
    )
    if isinstance(found, Refusal):
        raise refused(found)
    return partner, found


def _endpoint_partner(actor: Actor, named: str | None, endpoint_id: UUID) -> str:
    """Whose endpoint `actor` asks for; a partner naming another partner learns as much as from an endpoint
    that does not exist."""
    if actor.role is Role.PARTNER and named not in (None, actor.subject):
        raise refused(Refusal(Refused.NOT_FOUND, f"no webhook endpoint {endpoint_id}"))
    return partner_of(actor, named)


@get(
    "/{endpoint_id:uuid}",
    sync_to_thread=True,
    operation_id="ReadWebhookEndpoint",
    summary="ReadWebhookEndpoint",
)
def read_endpoint(
    endpoint_id: FromPath[UUID], actor: NamedDependency[Actor], state: State, partner_id: PartnerParam = None
) -> Response[WebhookEndpointView]:
    """One endpoint (without its secrets)."""
    orders = provide_orders(state)
    partner, endpoint = visible_endpoint(orders, endpoint_id, actor, partner_id)
    return Response(webhook_endpoint_view(partner, endpoint), headers={POSITION: str(orders.position())})


async def _endpoint_command(
    request: Request[Any, Any, State],
    command: str,
    endpoint_id: UUID,
    actor: Actor,
    partner_id: str | None,
    change: Change,
) -> Response[WebhookEndpointView]:
    partner = _endpoint_partner(actor, partner_id, endpoint_id)
    result = await _change(request, command, partner, change, actor, endpoint_id)
    body = webhook_endpoint_view(partner, _endpoint_of(result, endpoint_id))
    return Response(body, headers={POSITION: str(result.position)})


@patch("/{endpoint_id:uuid}", operation_id="UpdateWebhookEndpoint", summary="UpdateWebhookEndpoint")
async def update_endpoint(
    endpoint_id: FromPath[UUID],
    data: JSONBody[WebhookEndpointChanges],
    actor: NamedDependency[Actor],
    request: Request[Any, Any, State],
    partner_id: PartnerParam = None,
) -> Response[WebhookEndpointView]:
    """Change the URL, the event types or the description; what is not given stays as it is."""
    _endpoint_partner(actor, partner_id, endpoint_id)  # who may ask, before a URL of theirs is resolved
    url = None if data.url is None else await checked_url(data.url, request.app.state)
    event_types = None if data.event_types is None else frozenset(data.event_types)
    return await _endpoint_command(
        request,
        "UpdateWebhookEndpoint",
        endpoint_id,
        actor,
        partner_id,
        lambda w: w.update(
            endpoint_id, actor, url=url, event_types=event_types, description=data.description
        ),
    )


@post(
    "/{endpoint_id:uuid}/disable",
    status_code=200,
    operation_id="DisableWebhookEndpoint",
    summary="DisableWebhookEndpoint",
)
async def disable_endpoint(
    endpoint_id: FromPath[UUID],
    actor: NamedDependency[Actor],
    request: Request[Any, Any, State],
    partner_id: PartnerParam = None,
) -> Response[WebhookEndpointView]:
    """Stop sending to the endpoint; nothing is sent to it until it is enabled again."""
    return await _endpoint_command(
        request,
        "DisableWebhookEndpoint",
        endpoint_id,
        actor,
        partner_id,
        lambda w: w.disable(endpoint_id, actor),
    )


@post(
    "/{endpoint_id:uuid}/enable",
    status_code=200,
    operation_id="EnableWebhookEndpoint",
    summary="EnableWebhookEndpoint",
)
async def enable_endpoint(
    endpoint_id: FromPath[UUID],
    actor: NamedDependency[Actor],
    request: Request[Any, Any, State],
    partner_id: PartnerParam = None,
) -> Response[WebhookEndpointView]:
    """Send to the endpoint again."""
    return await _endpoint_command(
        request,
        "EnableWebhookEndpoint",
        endpoint_id,
        actor,
        partner_id,
        lambda w: w.enable(endpoint_id, actor),
    )


@post(
    "/{endpoint_id:uuid}/rotate-secret",
    status_code=200,
    operation_id="RotateWebhookSecret",
    summary="RotateWebhookSecret",
)
async def rotate_secret(
    endpoint_id: FromPath[UUID],
    actor: NamedDependency[Actor],
    request: Request[Any, Any, State],
    data: JSONBody[SecretRotation],
    partner_id: PartnerParam = None,
) -> Response[WebhookEndpointWithSecret]:
    """Sign with a new secret from now on, and with the replaced one too for `overlap_seconds` (`{}`: 24
    hours; at most 7 days; 0 for a secret that leaked). The answer holds the new secret: the only time it
    is shown."""
    overlap = timedelta(seconds=data.overlap_seconds)
    partner = _endpoint_partner(actor, partner_id, endpoint_id)
    secret = new_signing_secret()
    result = await _change(
        request,
        "RotateWebhookSecret",
        partner,
        lambda w: w.rotate_secret(endpoint_id, secret, overlap, actor),
        actor,
        endpoint_id,
    )
    body = webhook_endpoint_with_secret(partner, _endpoint_of(result, endpoint_id))
    return Response(body, headers={POSITION: str(result.position)})


@dataclass
class NoContentOperation(Operation):
    """An operation whose 204 has no body: Litestar documents `Response[None]` as a JSON `null`, which a
    client would then try to parse."""

    def __post_init__(self) -> None:
        answer = (self.responses or {}).get("204")
        if isinstance(answer, OpenAPIResponse):
            answer.content = None


@delete(
    "/{endpoint_id:uuid}",
    status_code=204,
    operation_class=NoContentOperation,
    operation_id="RemoveWebhookEndpoint",
    summary="RemoveWebhookEndpoint",
)
async def remove_endpoint(
    endpoint_id: FromPath[UUID],
    actor: NamedDependency[Actor],
    request: Request[Any, Any, State],
    partner_id: PartnerParam = None,
) -> Response[None]:
    """Remove the endpoint and its secrets for good."""
    partner = _endpoint_partner(actor, partner_id, endpoint_id)
    result = await _change(
        request, "RemoveWebhookEndpoint", partner, lambda w: w.delete(endpoint_id, actor), actor, endpoint_id
    )
    return Response(None, status_code=204, headers={POSITION: str(result.position)})


webhooks_router = Router(
    path="/webhooks",
    route_handlers=[
        register_endpoint,
        list_endpoints,
        read_endpoint,
        update_endpoint,
        disable_endpoint,
        enable_endpoint,
        rotate_secret,
        remove_endpoint,
    ],
    tags=["webhooks"],
    exception_handlers={ErrorAnswer: send_error_answer},
    response_headers=documented_position(
        "the event store position the change reached (or, reading, the store's position)"
    ),
)
