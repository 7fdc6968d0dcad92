"""Settings from environment variables (documented names, defaults for a laptop)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from orders_core.values import QUOTE_VALIDITY
from orders_core.webhook_messages import ATTEMPT_SECONDS, DISABLE_AFTER, RETRY_SCHEDULE, parse_schedule

MIB = 1024 * 1024
DATABASE_PARTS = ("crm", "read", "projector", "relay", "pricing", "webhooks")
"""The parts that connect to PostgreSQL, each with a role of its own (migrations/0006_roles.sql)."""


@dataclass(frozen=True)
class Settings:
    """Everything a process needs to know to find its parts."""

    home: Path
    """BACKBONE_HOME: embedded database, blobs and the local token secret (default ./.backbone)."""
    database_url: str | None
    """DATABASE_URL: a PostgreSQL server; unset means the embedded one under `home`."""
    part_database_urls: dict[str, str]
    """DATABASE_URL_<PART> (CRM, READ, PROJECTOR, RELAY, PRICING, WEBHOOKS): a part's own DSN, as a user
    with that part's role; a part without one uses DATABASE_URL under its role (backbone/database.py)."""
    amqp_url: str | None
    """AMQP_URL: a RabbitMQ broker; unset means the in-process transport."""
    jwt_secret: str
    """JWT_SECRET: HS256 key for bearer tokens; unset means one generated once under `home`."""
    max_upload_bytes: int
    """MAX_UPLOAD_BYTES: largest model upload (default 100 MiB)."""
    max_unzipped_bytes: int
    """MAX_UNZIPPED_BYTES: largest a zipped model (3MF) may unpack to (default 512 MiB)."""
    blob_store: str
    """BLOB_STORE: `local` (a directory under BACKBONE_HOME) or `postgres` (table blobs.models, for
    workers on other machines)."""
    flask_max_mm: float
    """FLASK_MAX_MM: the largest dimension the casting flask takes (default 100 mm)."""
    max_triangles: int
    """MAX_TRIANGLES: the most triangles a model may have to be priced (default 5,000,000)."""
    quote_time_limit_s: float
    """QUOTE_TIME_LIMIT_S: how long one quote may take before the model is refused (default 10 s)."""
    quote_validity: timedelta
    """QUOTE_VALID_HOURS: how long a recorded quote holds (default 24); approving after it is refused until
    the order is re-priced. Fractions are allowed (tests use seconds)."""
    idempotency_window_hours: float
    """IDEMPOTENCY_WINDOW_HOURS: how long an Idempotency-Key is honoured (default 24); a retry within it gets
    the first order back, the same key after it starts a new order."""
    rate_limit_per_minute: int
    """RATE_LIMIT_PER_MINUTE: requests a minute one subject of a limited role may make to one API process
    (default 600; 0 turns the limit off)."""
    rate_limited_roles: tuple[str, ...]
    """RATE_LIMITED_ROLES: the roles the limit applies to, comma-separated (default `partner`; `customer`
    may be added; staff and service roles never are)."""
    postgres_pool_size: int
    """POSTGRES_POOL_SIZE: the most event-store connections the command API and the results consumer open
    (default 10; one stays open, the rest come with load and go after 10 idle minutes). The other parts'
    pools are fixed and small: docs/scaling.md counts a deployment's connections."""
    webhook_allow_private: bool
    """WEBHOOK_ALLOW_PRIVATE: `1` lets webhook endpoints be on loopback, private and link-local addresses
    (and on plain http on loopback), for tests and local trials only; unset or `0` (the default) refuses
    them (orders_core/webhook_urls.py)."""
    webhook_attempt_seconds: float
    """WEBHOOK_ATTEMPT_SECONDS: how long one delivery attempt may take, connecting and answering (default
    10)."""
    webhook_retry_schedule: tuple[timedelta, ...]
    """WEBHOOK_RETRY_SCHEDULE: the waits after each failed attempt, in seconds, comma-separated (default
    5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: orders_core/webhook_messages.py); shorter only for tests."""
    webhook_disable_after: timedelta
    """WEBHOOK_DISABLE_AFTER_HOURS: an endpoint whose every attempt has failed for this long is disabled
    (default 120: five days)."""
    webhook_concurrency: int
    """WEBHOOK_CONCURRENCY: deliveries under way at once in the active sender (default 32)."""
    host: str
    port: int
    metrics_port: int | None
    """METRICS_PORT: where a process without an HTTP API (projector, relay, worker, results) serves
    /metrics; unset means no metrics endpoint for it."""

    @property
    def idempotency_window(self) -> timedelta:
        """IDEMPOTENCY_WINDOW_HOURS as a duration."""
        return timedelta(hours=self.idempotency_window_hours)

    @property
    def blob_dir(self) -> Path:
        """Where model files are stored."""
        return self.home / "blobs"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from `env` (default: the process environment)."""
        env = os.environ if env is None else env
        home = Path(env.get("BACKBONE_HOME", ".backbone")).resolve()
        return cls(
            home=home,
            database_url=env.get("DATABASE_URL") or None,
            part_database_urls={
                part: url for part in DATABASE_PARTS if (url := env.get(f"DATABASE_URL_{part.upper()}"))
            },
            amqp_url=env.get("AMQP_URL") or None,
            jwt_secret=env.get("JWT_SECRET") or _local_secret(home),
            max_upload_bytes=int(env.get("MAX_UPLOAD_BYTES", str(100 * MIB))),
            max_unzipped_bytes=int(env.get("MAX_UNZIPPED_BYTES", str(512 * MIB))),
            blob_store=env.get("BLOB_STORE", "local"),
            flask_max_mm=float(env.get("FLASK_MAX_MM", "100")),
            max_triangles=int(env.get("MAX_TRIANGLES", "5000000")),
            quote_time_limit_s=float(env.get("QUOTE_TIME_LIMIT_S", "10")),
            quote_validity=timedelta(
                hours=_positive(
                    float(env.get("QUOTE_VALID_HOURS", str(QUOTE_VALIDITY.total_seconds() / 3600))),
                    "QUOTE_VALID_HOURS",
                )
            ),
            idempotency_window_hours=_positive(
                float(env.get("IDEMPOTENCY_WINDOW_HOURS", "24")), "IDEMPOTENCY_WINDOW_HOURS"
            ),
            rate_limit_per_minute=int(env.get("RATE_LIMIT_PER_MINUTE", "600")),
            rate_limited_roles=tuple(
                r.strip() for r in env.get("RATE_LIMITED_ROLES", "partner").split(",") if r.strip()
            ),
            postgres_pool_size=int(
                _positive(float(env.get("POSTGRES_POOL_SIZE", "10")), "POSTGRES_POOL_SIZE")
            ),
            webhook_allow_private=_flag(env.get("WEBHOOK_ALLOW_PRIVATE", ""), "WEBHOOK_ALLOW_PRIVATE"),
            webhook_attempt_seconds=_positive(
                float(env.get("WEBHOOK_ATTEMPT_SECONDS", str(ATTEMPT_SECONDS))), "WEBHOOK_ATTEMPT_SECONDS"
            ),
            webhook_retry_schedule=(
                parse_schedule(env["WEBHOOK_RETRY_SCHEDULE"])
                if env.get("WEBHOOK_RETRY_SCHEDULE")
                else RETRY_SCHEDULE
            ),
            webhook_disable_after=timedelta(
                hours=_positive(
                    float(env.get("WEBHOOK_DISABLE_AFTER_HOURS", str(DISABLE_AFTER.total_seconds() / 3600))),
                    "WEBHOOK_DISABLE_AFTER_HOURS",
                )
            ),
            webhook_concurrency=int(
                _positive(float(env.get("WEBHOOK_CONCURRENCY", "32")), "WEBHOOK_CONCURRENCY")
            ),
            host=env.get("HOST", "127.0.0.1"),
            port=int(env.get("PORT", "8000")),
            metrics_port=int(env["METRICS_PORT"]) if env.get("METRICS_PORT") else None,
        )


def _flag(value: str, name: str) -> bool:
    # Strict: a setting that loosens a security check must not turn on by a typo, nor off by one silently.
    if value.strip() not in ("", "0", "1"):
        raise ValueError(f"{name} must be 1 or 0, not {value!r}")
    return value.strip() == "1"


def _positive(value: float, name: str) -> float:
    if not value > 0:  # also refuses NaN
        raise ValueError(f"{name} must be more than 0, not {value}")
    return value


def _local_secret(home: Path) -> str:
    # One secret per BACKBONE_HOME, so `backbone token` mints tokens that a running `backbone up` accepts.
    path = home / "jwt-secret"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    return path.read_text().strip()
