"""Builds each part from settings; the only place that knows the concrete classes."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import structlog
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import Environment
from litestar import Litestar
from psycopg import Connection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool

from backbone.database import (
    PartPostgresFactory,
    database_dsn,
    eventsourcing_env,
    part_dsn,
)
from backbone.observability import configure_logging, configure_tracing, tracing_middleware
from backbone.settings import Settings
from backbone.transport_memory import MemoryTransport
from http_edge.rate_limit import limiter_from_settings
from orders_core.api.app import CommandApiSettings, create_app
from orders_core.application import OrdersApplication
from orders_core.blobs import BlobStore, LocalBlobStore, PostgresBlobStore
from orders_core.contracts import BINDINGS, PRICING_REQUESTS, RESULTS_QUEUE, Transport
from orders_core.idempotency import IDEMPOTENCY_WINDOW
from orders_core.metrics import QUEUE_DEPTH
from orders_core.relay import BlockingPublisher, Relay
from orders_core.resolver import system_resolve
from orders_core.results import ResultsConsumer
from pricing.limits import Limits
from projectors.mes import MesProjector
from projectors.runner import Projector, ProjectorRunner, ViewTrackingRecorder
from projectors.shop import ShopProjector
from read_models.api import ReadApi, ReadApiSettings, create_read_app
from read_models.mes import ApprovedQueue
from read_models.stream import ChangeFeed
from webhook_sender.delivery import DeliveryConfig
from webhook_sender.log import DeliveryLog
from webhook_sender.outbox import WebhookOutbox
from webhook_sender.part import WebhookSender

log = structlog.get_logger("backbone")

PROJECTIONS: dict[str, type[Projector]] = {"mes": MesProjector, "shop": ShopProjector}
"""Every projection by name; its name is also the schema its view and tracking live in."""


def orders_application(
    dsn: str, pool_size: int = 10, idempotency_window: timedelta = IDEMPOTENCY_WINDOW
) -> OrdersApplication:
    """The CRM application on the event store at `dsn`."""
    return OrdersApplication(
        env=eventsourcing_env(dsn, pool_size=pool_size), idempotency_window=idempotency_window
    )


def command_api(settings: Settings, dsn: str, with_reads: bool = False) -> Litestar:
    """The CRM command API (role crm) on the database at `dsn`; with the read API (role read) too if
    `with_reads`."""
    crm, reads = part_dsn(settings, dsn, "crm"), part_dsn(settings, dsn, "read")
    orders = orders_application(
        crm, pool_size=settings.postgres_pool_size, idempotency_window=settings.idempotency_window
    )
    pool = read_pool(reads) if with_reads else None
    delivery_log = DeliveryLog(read_pool(crm, size=2))
    queue = ApprovedQueue(read_pool(reads, size=4))  # with 2, a burst of 20 presses queued for them
    app = create_app(
        CommandApiSettings(
            orders=orders,
            blobs=blob_store(settings, crm),
            jwt_secret=settings.jwt_secret,
            max_upload_bytes=settings.max_upload_bytes,
            max_unzipped_bytes=settings.max_unzipped_bytes,
            resolve_webhook_host=system_resolve,
            allow_private_webhooks=settings.webhook_allow_private,
            webhook_log=delivery_log,
            tracing=tracing_middleware(),
            limiter=limiter_from_settings(settings.rate_limit_per_minute, settings.rate_limited_roles),
            queue=queue,
        ),
        *(
            [ReadApi(pool, ChangeFeed(reads), required=False, previews=blob_store(settings, reads))]
            if pool
            else []
        ),
    )
    app.on_shutdown.append(lambda: orders.close())
    app.on_shutdown.append(lambda: delivery_log.pool.close())
    app.on_shutdown.append(lambda: queue.pool.close())
    if pool is not None:
        app.on_shutdown.append(lambda: pool.close())
    return app


def read_pool(dsn: str, size: int = 8) -> ConnectionPool[Connection[DictRow]]:
    """Connections for the read API."""
    return ConnectionPool(
        dsn, min_size=1, max_size=size, kwargs={"row_factory": dict_row, "autocommit": True}, open=True
    )


def read_api(settings: Settings, dsn: str) -> Litestar:
    """The read API alone, on the database at `dsn` with the read role, or at DATABASE_URL_READ: a hot
    standby will do (the MES change feed follows the view there, where it cannot LISTEN)."""
    reads = part_dsn(settings, dsn, "read")
    pool = read_pool(reads)
    app = create_read_app(
        ReadApiSettings(
            pool=pool,
            feed=ChangeFeed(reads),
            jwt_secret=settings.jwt_secret,
            previews=blob_store(settings, reads),
            tracing=tracing_middleware(),
            limiter=limiter_from_settings(settings.rate_limit_per_minute, settings.rate_limited_roles),
        )
    )
    app.on_shutdown.append(lambda: pool.close())
    return app


def command_api_from_env() -> Litestar:
    """Factory for uvicorn workers: each worker process wires itself from the environment."""
    configure_logging()
    configure_tracing("api")
    settings = Settings.from_env()
    return command_api(settings, database_dsn(settings))


def projection_runner(
    name: str, dsn: str, schema: str | None = None, batch_size: int = 1000
) -> ProjectorRunner:
    """The runner of projection `name`, writing to `schema` (default: the projection's own schema)."""
    return runner_for(PROJECTIONS[name](), dsn, schema or name, batch_size)


def runner_for(projection: Projector, dsn: str, schema: str, batch_size: int = 1000) -> ProjectorRunner:
    """A runner that feeds the event store to `projection`, tracking its position in `schema`."""
    store_name = OrdersApplication.name
    source = PartPostgresFactory(
        Environment(store_name, eventsourcing_env(dsn, pool_size=2))
    ).application_recorder()
    assert isinstance(source, PostgresApplicationRecorder)
    env = {**eventsourcing_env(dsn, pool_size=2), "POSTGRES_SCHEMA": schema}
    datastore = PartPostgresFactory(Environment(projection.name, env)).datastore
    view = ViewTrackingRecorder(datastore, tracking_table_name="tracking")
    return ProjectorRunner(projection, source, store_name, view, dsn, batch_size)


class BackgroundProjections:
    """Every projection's runner on a thread of this process (the embedded, all-in-one topology)."""

    def __init__(self, dsn: str) -> None:
        self.stop = threading.Event()
        self.runners = [projection_runner(name, dsn) for name in PROJECTIONS]
        self.threads = [
            threading.Thread(
                target=r.run, args=(self.stop,), name=f"projection-{r.projection.name}", daemon=True
            )
            for r in self.runners
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(5)


def webhook_sender(settings: Settings, dsn: str) -> WebhookSender:
    """The webhook sender: its outbox and delivery log with the webhooks role, the endpoints read (and
    disabled, when the sender must) with the crm role."""
    own = part_dsn(settings, dsn, "webhooks")
    orders = orders_application(part_dsn(settings, dsn, "crm"), pool_size=4)
    config = DeliveryConfig(
        attempt_seconds=settings.webhook_attempt_seconds,
        schedule=settings.webhook_retry_schedule,
        disable_after=settings.webhook_disable_after,
        concurrency=settings.webhook_concurrency,
        allow_private=settings.webhook_allow_private,
    )
    runner = runner_for(WebhookOutbox(orders), own, "webhooks", batch_size=500)
    return WebhookSender(orders, runner, own, config)


def transport_for(settings: Settings, *, wait_for_broker: bool = False) -> Transport:
    """RabbitMQ when AMQP_URL is set, else the in-process broker. A long-running part waits for a broker
    that is away when it starts (`wait_for_broker`); a one-shot command does not."""
    if settings.amqp_url:
        from backbone.transport_amqp import AmqpTransport

        return AmqpTransport(settings.amqp_url, wait_for_broker=wait_for_broker)
    return MemoryTransport()


class Messaging:
    """The relay, pricing workers and results consumer of one process, around one transport.

    Consumers run on the event loop that calls `start`; the relay follows the store on a thread and
    publishes through that loop. Each part connects to the database at `dsn` with its own role.
    """

    def __init__(
        self, settings: Settings, dsn: str, transport: Transport, *, relay: bool, workers: int, results: bool
    ) -> None:
        self.settings, self.dsn, self.transport = settings, dsn, transport
        self.relay, self.workers, self.results = relay, workers, results
        self.tasks: list[asyncio.Task[None]] = []
        self.stop_relay = threading.Event()
        self.relay_thread: threading.Thread | None = None
        self.orders: OrdersApplication | None = None
        self.relay_orders: OrdersApplication | None = None

    async def start(self) -> None:
        """Connect, then start every part this process runs."""
        await self.transport.connect()
        if self.results:
            self.orders = orders_application(
                part_dsn(self.settings, self.dsn, "crm"), pool_size=self.settings.postgres_pool_size
            )
        if self.workers:
            # Imported here: trimesh and the mesh code cost 2.5 s of CPU to import, which every other part
            # (an API, a projector) would pay again at each restart.
            from pricing.worker import PricingWorker
        for _ in range(self.workers):
            blobs = blob_store(self.settings, part_dsn(self.settings, self.dsn, "pricing"))
            worker = PricingWorker(self.transport, blobs, pricing_limits(self.settings), previews=blobs)
            self.tasks.append(asyncio.create_task(self.transport.consume(PRICING_REQUESTS, worker.handle, 1)))
        if self.results:
            assert self.orders is not None
            consumer = ResultsConsumer(self.orders, self.settings.quote_validity)
            self.tasks.append(asyncio.create_task(self.transport.consume(RESULTS_QUEUE, consumer.handle, 8)))
        self.tasks.append(asyncio.create_task(self._watch_queues()))
        if self.relay:
            # The relay only reads orders (to describe what it publishes): an application of its own, with
            # the relay's role, which cannot append.
            relay_dsn = part_dsn(self.settings, self.dsn, "relay")
            self.relay_orders = orders_application(relay_dsn, pool_size=2)
            publisher = BlockingPublisher(self.transport, asyncio.get_running_loop())
            runner = runner_for(Relay(self.relay_orders, publisher), relay_dsn, "relay", batch_size=200)
            self.relay_thread = threading.Thread(
                target=runner.run, args=(self.stop_relay,), name="relay", daemon=True
            )
            self.relay_thread.start()

    async def _watch_queues(self, every: float = 5.0) -> None:
        """Report queue depths as a metric (the in-process broker has no other way to show them)."""
        while True:
            for queue in {b.queue for b in BINDINGS}:
                try:
                    QUEUE_DEPTH.labels(queue).set(await self.transport.depth(queue))
                except Exception as e:  # a broker that is away: the gauge keeps its last value
                    log.debug("queue depth unavailable", queue=queue, error=repr(e))
            await asyncio.sleep(every)

    async def stop(self) -> None:
        """Stop relaying and taking deliveries, let the deliveries under way finish (a pricing worker sent
        SIGTERM mid-quote publishes that quote and acks it), then stop consuming and disconnect."""
        self.stop_relay.set()
        try:
            await self.transport.drain(drain_seconds(self.settings))
        except Exception as e:  # a broker that is away: what we hold goes back to the queue
            log.warning("could not finish the deliveries under way", error=repr(e))
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.relay_thread is not None:
            await asyncio.to_thread(self.relay_thread.join, 5)
        await self.transport.close()
        for orders in (self.orders, self.relay_orders):
            if orders is not None:
                orders.close()


def drain_seconds(settings: Settings) -> float:
    """How long a stopping process waits for its deliveries under way: a quote gives up after
    QUOTE_TIME_LIMIT_S, plus 15 s to fetch the model and publish the result. The grace period before the
    process is killed must be longer (compose.yaml's stop_grace_period, the pods'
    terminationGracePeriodSeconds): tests/deploy checks both."""
    return settings.quote_time_limit_s + 15.0


def blob_store(settings: Settings, dsn: str) -> BlobStore:
    """Where model files are kept: BLOB_STORE=local (default) or postgres."""
    if settings.blob_store == "postgres":
        return PostgresBlobStore(dsn, settings.blob_dir / "incoming")
    if settings.blob_store != "local":
        raise ValueError(f"BLOB_STORE must be local or postgres, not {settings.blob_store!r}")
    return LocalBlobStore(settings.blob_dir)


def pricing_limits(settings: Settings) -> Limits:
    """The quote engine's bounds: the upload limits plus the casting flask, triangles and time."""
    return Limits(
        max_file_bytes=settings.max_upload_bytes,
        max_unzipped_bytes=settings.max_unzipped_bytes,
        max_triangles=settings.max_triangles,
        flask_max_mm=settings.flask_max_mm,
        time_limit_s=settings.quote_time_limit_s,
    )
