"""Builds each part from settings; the only place that knows the concrete classes."""

from __future__ import annotations

from litestar import Litestar

from backbone.database import database_dsn, eventsourcing_env
from backbone.settings import Settings
from orders_core.api.app import create_app
from orders_core.application import OrdersApplication
from orders_core.blobs import LocalBlobStore


def orders_application(dsn: str) -> OrdersApplication:
    """The CRM application on the event store at `dsn`."""
    return OrdersApplication(env=eventsourcing_env(dsn))


def command_api(settings: Settings, dsn: str) -> Litestar:
    """The CRM command API on the event store at `dsn`."""
    orders = orders_application(dsn)
    app = create_app(
        orders,
        LocalBlobStore(settings.blob_dir),
        settings.jwt_secret,
        settings.max_upload_bytes,
        settings.max_unzipped_bytes,
    )
    app.on_shutdown.append(lambda: orders.close())
    return app


def command_api_from_env() -> Litestar:
    """Factory for uvicorn workers: each worker process wires itself from the environment."""
    settings = Settings.from_env()
    return command_api(settings, database_dsn(settings))
