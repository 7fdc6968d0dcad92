"""`backbone migrate --wait`: what every part's init container runs on Kubernetes before the part starts,
so that no part starts on a database the migrate Job has not finished."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from backbone.migrate import migrate, wait_until_migrated
from tests.conftest import JWT_SECRET, PostgresServer

BACKBONE = Path(sys.executable).with_name("backbone")


def wait_command(url: str, seconds: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url, "JWT_SECRET": JWT_SECRET}
    return subprocess.run(
        [BACKBONE, "migrate", "--wait", str(seconds)], env=env, capture_output=True, text=True, timeout=120
    )


def test_it_fails_on_a_database_nobody_migrates(postgres: PostgresServer) -> None:
    url = postgres.create_database("unmigrated")
    waited = wait_command(url, 1)
    assert waited.returncode == 1, waited.stdout + waited.stderr
    assert "not migrated within 1 s" in waited.stderr


def test_it_returns_once_another_process_has_migrated(postgres: PostgresServer) -> None:
    url = postgres.create_database("migrated-later")
    started = time.monotonic()
    migrating = threading.Timer(3.0, migrate, args=(url,))
    migrating.start()
    try:
        wait_until_migrated(url, 120, every=0.5)
    finally:
        migrating.join()
    assert time.monotonic() - started >= 3.0
    waited = wait_command(url, 5)
    assert waited.returncode == 0 and "migrated" in waited.stdout, waited.stderr


def test_it_waits_while_a_migration_is_under_way(postgres: PostgresServer) -> None:
    url = postgres.create_database("migrating")
    migrate(url)
    from yoyo import get_backend

    from backbone.migrate import yoyo_uri

    backend = get_backend(yoyo_uri(url))
    with backend.lock(), pytest.raises(TimeoutError):  # as `backbone migrate` holds it, grants included
        wait_until_migrated(url, 2, every=0.5)
    backend.connection.close()
    wait_until_migrated(url, 10, every=0.5)
