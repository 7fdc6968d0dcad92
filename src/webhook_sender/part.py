"""The webhook sender as a part: the outbox projection on a thread (the projection runner: batches, lock,
position, parking) and the delivery loop on the event loop, each with its own lock, so a second process
is a standby for both."""

from __future__ import annotations

import asyncio
import threading

from orders_core.application import OrdersApplication
from orders_core.resolver import Resolve, system_resolve
from projectors.runner import ProjectorRunner
from webhook_sender.delivery import DeliveryConfig, Sender
from webhook_sender.outbox import WebhookOutbox


class WebhookSender:
    """Starts and stops the outbox runner and the delivery loop of one process."""

    def __init__(
        self,
        orders: OrdersApplication,
        runner: ProjectorRunner,
        dsn: str,
        config: DeliveryConfig,
        resolve: Resolve = system_resolve,
    ) -> None:
        assert isinstance(runner.projection, WebhookOutbox)
        self.orders, self.runner = orders, runner
        self.sender = Sender(dsn, orders, config, resolve, schema=runner.schema)
        self.stop_runner = threading.Event()
        self.stop_sender = asyncio.Event()
        self.thread = threading.Thread(
            target=runner.run, args=(self.stop_runner,), name="webhooks-outbox", daemon=True
        )
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.thread.start()
        self.task = asyncio.create_task(self.sender.run(self.stop_sender))

    async def stop(self) -> None:
        """Stop following the store and sending; deliveries under way get a few seconds to be recorded."""
        self.stop_runner.set()
        self.stop_sender.set()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)
        await asyncio.to_thread(self.thread.join, 5)
        self.runner.close()
        self.orders.close()
