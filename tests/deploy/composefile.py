"""compose.yaml as Compose reads it: YAML anchors merged, ${VARIABLES} interpolated."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.deploy.promql import ROOT

COMPOSE = ROOT / "compose.yaml"
TEST_ENV = {"JWT_SECRET": "compose-test-secret-" + "x" * 32}
Services = dict[str, dict[str, Any]]

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


class MissingVariable(Exception):
    """A `${NAME:?message}` whose NAME is not set."""


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation: ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        current = env.get(name)
        unset = current is None or (operator is not None and operator.startswith(":") and current == "")
        if operator in (":-", "-"):
            return argument if unset else str(current)
        if operator in (":?", "?") and unset:
            raise MissingVariable(f"{name}: {argument}")
        return current or ""

    return _VARIABLE.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def load(env: dict[str, str]) -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())  # resolves the YAML anchors and merge keys
    return {key: value for key, value in interpolate(document, env).items() if not key.startswith("x-")}


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def exposed(service: dict[str, Any]) -> set[int]:
    """Container ports a service listens on: `expose` and the container side of `ports`."""
    ports = {int(port) for port in service.get("expose", [])}
    for mapping in service.get("ports", []):
        ports.add(int(str(mapping).rsplit(":", 1)[-1].split("/")[0]))
    return ports
