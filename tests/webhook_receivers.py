"""Real HTTP receivers for webhook tests (pytest-httpserver on loopback) that verify every message with the
`standardwebhooks` package, as a partner's engineer would, and keep what arrived."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pytest_httpserver import HTTPServer
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from werkzeug import Request, Response


@dataclass(frozen=True)
class Arrival:
    """One POST that reached the receiver."""

    message_id: str
    body: dict[str, Any]
    answered: int
    verified_with: tuple[int, ...]
    """Indexes of the receiver's secrets that verified it."""
    headers: dict[str, str]
    at: float


@dataclass
class Receiver:
    """A webhook receiver: answers what `answer` says (default 200) and records every arrival."""

    server: HTTPServer
    secrets: list[str] = field(default_factory=list)
    answer: Callable[[int], int] = lambda n: 200
    """The status code for the n-th request (from 0)."""
    arrivals: list[Arrival] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return str(self.server.url_for("/hook"))

    def handle(self, request: Request) -> Response:
        body = request.get_data(as_text=True)
        headers = {k.lower(): v for k, v in request.headers.items()}
        verified = []
        for i, secret in enumerate(self.secrets):
            try:
                Webhook(secret).verify(body, headers)
                verified.append(i)
            except WebhookVerificationError:
                pass
        with self.lock:
            code = self.answer(len(self.arrivals))
            message_id = headers.get("webhook-id", "")
            arrival = Arrival(message_id, json.loads(body), code, tuple(verified), headers, time.time())
            self.arrivals.append(arrival)
        return Response("", status=code)

    def delivered(self) -> list[Arrival]:
        """The arrivals answered 2xx, in the order they came."""
        with self.lock:
            return [a for a in self.arrivals if 200 <= a.answered < 300]

    def wait_for(self, count: int, seconds: float = 60.0) -> list[Arrival]:
        """The 2xx arrivals once there are at least `count` (waits on progress: the deadline restarts
        whenever one more arrives)."""
        seen, deadline = -1, time.monotonic() + seconds
        while time.monotonic() < deadline:
            arrived = self.delivered()
            if len(arrived) >= count:
                return arrived
            if len(arrived) != seen:
                seen, deadline = len(arrived), time.monotonic() + seconds
            time.sleep(0.05)
        raise AssertionError(f"{len(self.delivered())} of {count} webhook messages arrived")


def start_receiver(answer: Callable[[int], int] = lambda n: 200) -> Receiver:
    """A receiver listening on loopback (stop it with `receiver.server.stop()`)."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    receiver = Receiver(server, answer=answer)
    server.expect_request("/hook", method="POST").respond_with_handler(receiver.handle)
    server.start()
    return receiver
