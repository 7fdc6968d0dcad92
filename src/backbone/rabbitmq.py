"""A local RabbitMQ node from Debian's `rabbitmq-server` package, on loopback, for tests and `up --scaled`.

Measured on these machines: the server script is run directly, with its node name, ports, data and log
directories and Erlang distribution all pinned to loopback and a private directory; the AMQP port opens a
few seconds after the node starts; epmd outlives the node and is stopped on its own.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
RABBITMQCTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")


class RabbitMQ:
    """A real RabbitMQ node from Debian's package, on loopback ports of its own, restartable in place."""

    def __init__(self, base: Path, port: int, name: str = "backbone") -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.port, dist, epmd = port, free_port(), free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        loopback = "-kernel inet_dist_use_interface {127,0,0,1}"
        (base / "enabled_plugins").write_text("[].\n")
        self.env = {
            **os.environ,
            "HOME": str(base),
            "RABBITMQ_NODENAME": f"{name}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(dist),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(epmd),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": loopback,
            "RABBITMQ_CTL_ERL_ARGS": loopback,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the node (as root this runs the server directly: the packaged wrapper would switch user)."""
        if not RABBITMQ_SERVER.exists():
            raise FileNotFoundError(
                "RabbitMQ is not installed: apt-get install rabbitmq-server (or set AMQP_URL)"
            )
        log = (self.base / "server.log").open("ab")
        self.process = subprocess.Popen([str(RABBITMQ_SERVER)], env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the AMQP port opens a few seconds after the node answers pings
            if self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited; see {self.base / 'server.log'}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.25)
        raise TimeoutError("RabbitMQ did not open its AMQP port")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        subprocess.run([str(RABBITMQCTL), "stop"], env=self.env, capture_output=True, timeout=60)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def vhost(self, name: str) -> str:
        """The URL of a fresh virtual host, so tests sharing this node never see each other's messages."""
        for args in (["add_vhost", name], ["set_permissions", "-p", name, "guest", ".*", ".*", ".*"]):
            subprocess.run(
                [str(RABBITMQCTL), *args], env=self.env, check=True, capture_output=True, timeout=60
            )
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{name}"

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop_epmd(self) -> None:
        # epmd outlives the node; ERL_EPMD_PORT in the environment points `epmd -kill` at ours.
        subprocess.run(["epmd", "-kill"], env=self.env, capture_output=True, timeout=10)
