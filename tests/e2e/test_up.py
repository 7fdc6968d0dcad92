"""`backbone up` on the embedded default: starts from nothing, stops cleanly on Ctrl-C, keeps its data."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from http_edge.identity import mint_token
from orders_core.lifecycle import Role
from tests.conftest import free_port, start_process, wait_for_health

NEW_ORDER = {"contact_name": "Ann Example", "item_title": "Pendant", "material_code": "AG925", "quantity": 2}


def up(home: Path, port: int) -> subprocess.Popen[bytes]:
    # No DATABASE_URL: the embedded PostgreSQL under BACKBONE_HOME is the default.
    env = {"BACKBONE_HOME": str(home), "DATABASE_URL": "", "JWT_SECRET": ""}
    process = start_process(["up", "--port", str(port)], env, port)
    wait_for_health(f"http://127.0.0.1:{port}", process, seconds=60)
    return process


def interrupt(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGINT)
    return process.wait(30)


def postmaster_running(home: Path) -> bool:
    pid_file = home / "pgdata" / "postmaster.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().split()[0])
    return Path(f"/proc/{pid}").exists()


@pytest.mark.timeout(180)
def test_up_starts_stops_and_keeps_its_data(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = free_port()
    process = up(home, port)
    try:
        secret = (home / "jwt-secret").read_text().strip()
        headers = {"Authorization": f"Bearer {mint_token(secret, Role.CUSTOMER, 'cust-1')}"}
        created = httpx.post(f"http://127.0.0.1:{port}/orders", json=NEW_ORDER, headers=headers)
        assert created.status_code == 201, created.text
        order_id = created.json()["order_id"]
    finally:
        code = interrupt(process)
    assert code == 0
    assert not postmaster_running(home), "Ctrl-C must stop the embedded PostgreSQL too"

    process = up(home, port)
    try:
        again = httpx.get(f"http://127.0.0.1:{port}/orders/{order_id}", headers=headers)
        assert again.status_code == 200 and again.json()["quantity"] == 2
    finally:
        assert interrupt(process) == 0
