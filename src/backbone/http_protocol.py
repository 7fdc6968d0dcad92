"""The HTTP protocol every `backbone` server runs: uvicorn's httptools one, with request heads bounded (431)
and each response leaving in one write."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEADER_BYTES = 32 * 1024
"""Request line and headers together, at most; beyond: 431 and the connection closes."""
REFUSED_LINGER_S = 2.0
"""How long a refused connection's input is still read (and dropped) so its client can read the 431."""


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with request heads bounded and each response leaving in one write.

    httptools keeps a header in memory until it ends, however long (a 200 MiB header was buffered whole
    and then served): here a head beyond MAX_HEADER_BYTES is answered 431 without reaching the app, once
    that much has arrived. uvicorn writes a response's status line and headers in one send and its body in
    another: here both leave together, one system call and one packet a response (3-5 % of the command
    API's CPU, measured with bench/commands.py).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = False
        self._head_bytes = 0
        self._refused = False
        self._answered = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(cast(asyncio.Transport, _CoalescedWrites(transport, self.loop)))

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # read and dropped, so the client's send completes and it reads the 431
        if self._in_head:  # a chunk wholly inside a head (one in which the head began is counted below)
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEADER_BYTES:
                self._refuse()
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._refused:  # a request pipelined behind the refused one
            return
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > MAX_HEADER_BYTES:
            self._refuse()
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._answer_431_when_due()  # refused behind pipelined requests: answered in order, after them

    def _refuse(self) -> None:
        self._refused = True
        self._answer_431_when_due()

    def _answer_431_when_due(self) -> None:
        if not self._refused or self._answered or self.pipeline:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return
        self._answered = True
        body = f"request headers are larger than the {MAX_HEADER_BYTES} bytes allowed".encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
        )
        # Closing now, with the client still sending, would reset the connection before it reads the answer.
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(REFUSED_LINGER_S, self.transport.close)


class _CoalescedWrites:
    """A transport whose first write waits for the next one in the same turn of the event loop (a response's
    body after its head) and leaves with it; a write that has no follower leaves on the next turn."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._held = data
            self._loop.call_soon(self._flush)
        else:
            self._held = None
            self._transport.writelines((held, data))

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
