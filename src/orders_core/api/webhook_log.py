"""The delivery log of a webhook endpoint and its replays: a partner reads what was sent to its endpoint,
what the endpoint answered and what comes next, and has messages sent again (webhook_sender/log.py).

Who may see an endpoint is decided as for the endpoint itself (its partner, or an admin naming it): the
endpoint is looked up in the partner's aggregate first, so another partner's endpoint, and its log, is a 404.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import anyio.to_thread
import msgspec
from litestar import Response, Router, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import ClientException, ServiceUnavailableException
from litestar.params import FromPath, JSONBody, Parameter, QueryParameter

from orders_core.actors import Actor
from orders_core.api.orders import ErrorAnswer, provide_orders, refused, send_error_answer
from orders_core.api.schemas import (
    WebhookAttemptPage,
    WebhookMessagePage,
    WebhookMessageStatus,
    WebhookReplay,
    WebhookReplayed,
)
from orders_core.api.webhooks import PartnerParam, visible_endpoint
from orders_core.outcomes import Refusal, Refused
from webhook_sender.log import MAX_PAGE, BadCursor, DeliveryLog

Limit = Annotated[int, QueryParameter(ge=1, le=MAX_PAGE, description=f"rows a page, 1 to {MAX_PAGE}")]
Cursor = Annotated[
    str | None,
    QueryParameter(max_length=400, description="the next_cursor of the previous page (none: the first page)"),
]
MessageId = Annotated[str, Parameter(pattern=r"^msg_[0-9a-f]{32}$", description="the message's webhook-id")]


def _log(state: State) -> DeliveryLog:
    log: DeliveryLog | None = state.webhook_log
    if log is None:
        raise ServiceUnavailableException("this API runs without the webhook delivery log")
    return log


def _page_of(read: Any) -> Any:
    try:
        return read()
    except BadCursor as e:
        raise ClientException(str(e)) from e


@get(
    "/{endpoint_id:uuid}/attempts",
    sync_to_thread=True,
    operation_id="ListWebhookAttempts",
    summary="ListWebhookAttempts",
)
def list_attempts(
    endpoint_id: FromPath[UUID],
    actor: NamedDependency[Actor],
    state: State,
    partner_id: PartnerParam = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> WebhookAttemptPage:
    """The endpoint's delivery attempts, newest first: status code, latency, error and the next attempt."""
    visible_endpoint(provide_orders(state), endpoint_id, actor, partner_id)
    page = _page_of(lambda: _log(state).attempts(endpoint_id, limit, cursor))
    return msgspec.convert({"items": page.rows, "next_cursor": page.next_cursor}, WebhookAttemptPage)


@get(
    "/{endpoint_id:uuid}/messages",
    sync_to_thread=True,
    operation_id="ListWebhookMessages",
    summary="ListWebhookMessages",
)
def list_messages(
    endpoint_id: FromPath[UUID],
    actor: NamedDependency[Actor],
    state: State,
    partner_id: PartnerParam = None,
    status: Annotated[
        WebhookMessageStatus | None, QueryParameter(description="only messages that stand so (none: all)")
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> WebhookMessagePage:
    """The messages for the endpoint, newest first, with where each stands."""
    visible_endpoint(provide_orders(state), endpoint_id, actor, partner_id)
    page = _page_of(lambda: _log(state).messages(endpoint_id, limit, status and status.value, cursor))
    return msgspec.convert({"items": page.rows, "next_cursor": page.next_cursor}, WebhookMessagePage)


def _enabled_endpoint(state: State, endpoint_id: UUID, actor: Actor, partner_id: str | None) -> None:
    _, endpoint = visible_endpoint(provide_orders(state), endpoint_id, actor, partner_id)
    if not endpoint.enabled:
        raise refused(
            Refusal(
                Refused.NOT_ALLOWED,
                "the endpoint is disabled: enable it first, then replay (a replay to a disabled endpoint "
                "would be given up at once)",
                allowed=("EnableWebhookEndpoint",),
            )
        )


@post(
    "/{endpoint_id:uuid}/messages/{message_id:str}/replay",
    status_code=202,
    operation_id="ReplayWebhookMessage",
    summary="ReplayWebhookMessage",
)
async def replay_message(
    endpoint_id: FromPath[UUID],
    message_id: MessageId,
    actor: NamedDependency[Actor],
    state: State,
    partner_id: PartnerParam = None,
) -> WebhookReplayed:
    """Send one message again, with the same webhook-id and body. A message still on its way is left as it
    is (`replayed`: 0)."""
    await anyio.to_thread.run_sync(lambda: _enabled_endpoint(state, endpoint_id, actor, partner_id))
    before = await anyio.to_thread.run_sync(lambda: _log(state).replay(endpoint_id, message_id))
    if before is None:
        raise refused(Refusal(Refused.NOT_FOUND, f"endpoint {endpoint_id} has no message {message_id}"))
    return WebhookReplayed(replayed=0 if before == "pending" else 1)


@post(
    "/{endpoint_id:uuid}/replay",
    status_code=202,
    operation_id="ReplayWebhookMessages",
    summary="ReplayWebhookMessages",
)
async def replay_messages(
    endpoint_id: FromPath[UUID],
    data: JSONBody[WebhookReplay],
    actor: NamedDependency[Actor],
    state: State,
    partner_id: PartnerParam = None,
) -> Response[WebhookReplayed]:
    """Send again every message created since a time (delivered and given up, or only those given up)."""
    if data.since.tzinfo is None:
        raise ClientException("since needs a time zone, e.g. 2026-12-01T00:00:00Z")
    await anyio.to_thread.run_sync(lambda: _enabled_endpoint(state, endpoint_id, actor, partner_id))
    count = await anyio.to_thread.run_sync(
        lambda: _log(state).replay_since(endpoint_id, data.since, data.only_failed)
    )
    return Response(WebhookReplayed(replayed=count), status_code=202)


webhook_log_router = Router(
    path="/webhooks",
    route_handlers=[list_attempts, list_messages, replay_message, replay_messages],
    tags=["webhooks"],
    exception_handlers={ErrorAnswer: send_error_answer},
)
