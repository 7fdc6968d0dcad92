"""The error body every API of the system answers with, and its place in their OpenAPI documents.

Litestar documents its own default error shape (`status_code`, `detail`, `extra`) and only the 400 it
raises itself; the APIs answer `{"error", "detail", ...}` with the statuses below. A partner's developer
and a schema-driven test read the OpenAPI document, so it says what the APIs really send.
"""

from __future__ import annotations

from collections.abc import Iterable

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Reference, Schema

ERROR_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    required=["error", "detail"],
    properties={
        "error": Schema(type=OpenAPIType.STRING, description="a stable code, e.g. not_found, not_allowed"),
        "detail": Schema(type=OpenAPIType.STRING, description="the reason, for people"),
        "status": Schema(type=OpenAPIType.STRING, description="a refused command: the order's status"),
        "allowed": Schema(
            type=OpenAPIType.ARRAY,
            items=Schema(type=OpenAPIType.STRING),
            description="a refused command: the commands allowed now",
        ),
        "problems": Schema(
            type=OpenAPIType.ARRAY,
            items=Schema(type=OpenAPIType.OBJECT),
            description="invalid input: what is wrong where",
        ),
    },
    additional_properties=True,
)

WHY = {
    400: "Malformed request: the reason names the field",
    401: "Missing, invalid or expired bearer token",
    403: "The caller's role may not do this, or the order is someone else's",
    404: "No such order (or not the caller's)",
    409: "Not allowed in the order's current status: the status and the commands allowed now",
    413: "The body is larger than allowed: the reason names the limit",
    415: "Not a model format the API takes",
    422: "Well-formed but invalid: the reason says what",
    429: "Too many requests: retry after Retry-After seconds",
    503: "Not available right now (the database, or a view behind min_position): retry after Retry-After",
}


def document_errors(app: Litestar, statuses: Iterable[int], prefixes: tuple[str, ...]) -> None:
    """Document the error body for `statuses` on every operation of `app` under one of `prefixes`."""
    schema = app.openapi_schema  # generated once and kept by the app: changed here, served as changed
    components = schema.components
    components.schemas = {**(components.schemas or {}), "Error": ERROR_SCHEMA}
    error = OpenAPIMediaType(schema=Reference(ref="#/components/schemas/Error"))
    for route, path in (schema.paths or {}).items():
        if not route.startswith(prefixes):
            continue
        for operation in (path.get, path.put, path.post, path.delete, path.patch):
            if operation is None:
                continue
            responses = operation.responses or {}
            for status in statuses:
                responses[str(status)] = OpenAPIResponse(
                    description=WHY.get(status, "Error"), content={"application/json": error}
                )
            operation.responses = responses


def documents_errors(app_config: AppConfig, statuses: Iterable[int], prefixes: tuple[str, ...]) -> None:
    """Have the application being configured document `statuses` on its operations under `prefixes` once it
    starts (for a part's plugin: the schema exists only once every part has added its routes)."""
    codes = tuple(statuses)
    app_config.on_startup.append(lambda app: document_errors(app, codes, prefixes))
