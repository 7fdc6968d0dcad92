"""X-Position: the event store position an answer stands at, on every answer of both APIs but health.

A command answers with the position its events reached; a read of the write side with the store's
position when it read; a read of a view with the position the view had reached. A client passes a
command's X-Position as `min_position` to read its own write from a view.
"""

from __future__ import annotations

from litestar.datastructures import ResponseHeader

POSITION = "X-Position"


def documented_position(what: str) -> list[ResponseHeader]:
    """The X-Position header for a router's OpenAPI document: `what` the position is."""
    return [ResponseHeader(name=POSITION, description=what, documentation_only=True)]
