"""Starting one more `backbone` process for a security test: beside another on its database, or with its
own limits (the shared fixtures in tests/conftest.py fix both)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from backbone.rabbitmq import free_port
from tests.conftest import JWT_SECRET, RunningApi, start_process, stop_process, wait_for_health

LIMITS = {"MAX_UPLOAD_BYTES": str(2 * 1024 * 1024), "MAX_UNZIPPED_BYTES": str(4 * 1024 * 1024)}
"""The upload limits of tests/conftest.py's servers, so processes beside them agree."""


@contextmanager
def backbone(command: str, database_url: str, home: Path, **env: str) -> Iterator[RunningApi]:
    """`backbone <command>` over real HTTP on `database_url`, its blobs under `home`; `env` adds settings."""
    port = free_port()
    full_env = {"DATABASE_URL": database_url, "BACKBONE_HOME": str(home), "JWT_SECRET": JWT_SECRET}
    process = start_process([command], {**full_env, **LIMITS, **env}, port)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(base, process)
        yield RunningApi(base, database_url, home, process)
    finally:
        stop_process(process)


def position(api: RunningApi) -> int:
    """The event store position a command API (or `backbone up`) reports on /health."""
    value: int = httpx.get(f"{api.base_url}/health", timeout=10).json()["position"]
    return value
