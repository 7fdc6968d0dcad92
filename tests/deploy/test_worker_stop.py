"""A pricing worker stopped with SIGTERM mid-quote (as compose and Kubernetes stop a container, and as KEDA's
scale-in does) finishes that quote: it takes nothing more, publishes the result, acks, and exits 0 well
within the grace period. Real processes on a real RabbitMQ: the command API, relay, results consumer and
workers, as deployed."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from backbone.settings import Settings
from backbone.transport_amqp import AmqpTransport
from backbone.wiring import drain_seconds
from orders_core.contracts import PRICING_REQUESTS
from tests.conftest import (
    JWT_SECRET,
    PostgresServer,
    RabbitMQ,
    RunningApi,
    free_port,
    parts_env,
    start_process,
    stop_process,
    wait_for_health,
)
from tests.e2e.test_pricing_over_rabbitmq import quote_events, sphere_stl
from tests.journeys import answered, submit

IN_PROGRESS = re.compile(r"^backbone_pricing_in_progress (\S+)$", re.MULTILINE)


@dataclass
class Parts:
    api: RunningApi
    env: dict[str, str]
    amqp_url: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        process = start_process(list(args), {**self.env, **env}, 0)
        self.processes.append(process)
        return process


@pytest.fixture(scope="module")
def parts(
    postgres: PostgresServer, rabbitmq: RabbitMQ, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Parts]:
    env = parts_env(postgres, rabbitmq, tmp_path_factory, "sigterm")
    url, amqp = env["DATABASE_URL"], env["AMQP_URL"]
    port = free_port()
    api_process = start_process(["api"], env, port)
    base = f"http://127.0.0.1:{port}"
    found = Parts(RunningApi(base, url, tmp_path_factory.mktemp("unused"), api_process), env, amqp)
    try:
        wait_for_health(base, api_process)
        found.start("relay")
        found.start("results")
        yield found
    finally:
        for process in found.processes:
            stop_process(process)
        stop_process(api_process)


def in_progress(metrics_port: int) -> float | None:
    """The worker's backbone_pricing_in_progress, or None while its /metrics does not answer."""
    try:
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=1).text
    except httpx.HTTPError:
        return None
    match = IN_PROGRESS.search(text)
    return float(match.group(1)) if match else None


def waiting(amqp_url: str) -> int:
    async def depth() -> int:
        transport = AmqpTransport(amqp_url)
        await transport.connect()
        try:
            return await transport.depth(PRICING_REQUESTS)
        finally:
            await transport.close()

    return asyncio.run(depth())


def test_a_worker_sent_sigterm_mid_quote_finishes_it_and_takes_no_more(parts: Parts) -> None:
    metrics_port = free_port()
    worker = parts.start("worker", "pricing", METRICS_PORT=str(metrics_port))
    with parts.api.client("customer", "sigterm-customer") as customer:
        model = sphere_stl(7)  # 327,680 triangles: a quote long enough to stop the worker in the middle of
        first, second = submit(customer, model), submit(customer, model)
        deadline = time.monotonic() + 60
        while in_progress(metrics_port) != 1.0:
            assert time.monotonic() < deadline, "the worker never started quoting"
            assert worker.poll() is None, f"the worker exited with {worker.returncode}"
            time.sleep(0.01)
        worker.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        assert customer.get(f"/orders/{first}").json()["status"] == "SUBMITTED", "quoted before the signal"

        # No other worker runs: the first order can only be priced by the one that was told to stop.
        assert worker.wait(drain_seconds(Settings.from_env({"JWT_SECRET": JWT_SECRET}))) == 0
        assert time.monotonic() - stopped_at < 30, "longer than compose's stop_grace_period"
        assert answered(customer, first, 10)["status"] == "PRICE_CALCULATED"
        assert quote_events(customer, first) == ["PriceCalculated"]
        # It took nothing more: the second request waits in the queue, acked by no one, for the next worker.
        assert customer.get(f"/orders/{second}").json()["status"] == "SUBMITTED"
        assert waiting(parts.amqp_url) == 1

        parts.start("worker", "pricing")
        assert answered(customer, second, 120)["status"] == "PRICE_CALCULATED"
        assert quote_events(customer, second) == ["PriceCalculated"]
        assert quote_events(customer, first) == ["PriceCalculated"]
