"""/health, /health/ready and /health/live of every API process, over the probes its parts register.

Each part of a process (the command API, the read API) registers a `Probe` of what it depends on. A
required probe that cannot reach its dependency makes the process unready (503 naming it); an optional one
(the views' database in a process that also serves commands) only degrades /health, as the process still
serves what it can.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from litestar import Request, Response, get
from litestar.config.app import AppConfig
from litestar.datastructures import State

from http_edge.errors import error_body

PROBES = "health_probes"
"""Where in the application's state the probes are kept."""
UNTRACED = {"untraced": True}
"""Route `opt` that keeps a route out of traces (checked often, or open for minutes, and telling nothing)."""


@dataclass(frozen=True)
class Probe:
    """One dependency a process's health depends on."""

    name: str
    """The /health field that says, when `required` is false, that the dependency cannot be reached."""
    dependency: str
    """What the dependency is, for the 503's reason: `event store`, `read database`."""
    report: Callable[[], dict[str, Any]]
    """The fields it adds to /health (`status` among them: `degraded` makes the whole `degraded`); raises
    when the dependency cannot be reached."""
    ready: Callable[[], object]
    """A cheap check for /health/ready; raises when the dependency cannot be reached."""
    required: bool = True


def add_probe(app_config: AppConfig, probe: Probe) -> None:
    """Register `probe` with the application being configured (for a part's plugin)."""
    probes: list[Probe] = app_config.state.setdefault(PROBES, [])
    probes.append(probe)


def _probes(request: Request[Any, Any, State]) -> list[Probe]:
    probes: list[Probe] = request.app.state.get(PROBES, [])
    return probes


def _unreachable(probe: Probe, e: Exception) -> Response[dict[str, Any]]:
    return Response(
        error_body("unavailable", f"{probe.dependency} unreachable: {type(e).__name__}"), status_code=503
    )


@get("/health", sync_to_thread=True, operation_id="ReadHealth", tags=["operations"], opt=UNTRACED)
def health(request: Request[Any, Any, State]) -> Response[dict[str, Any]]:
    """200 while everything this process requires answers, with how each part stands (503 otherwise,
    naming what cannot be reached). `status` is `degraded` while any projection is failing, behind or
    holding parked aggregates: the views still answer, and `projections` says which and why. A load
    balancer should use /health/ready, monitoring this one."""
    body: dict[str, Any] = {}
    degraded = False
    for probe in _probes(request):
        try:
            report = probe.report()
        except Exception as e:  # any failure to reach it: unready if required, else degraded
            if probe.required:
                return _unreachable(probe, e)
            degraded = True
            body[probe.name] = f"unavailable: {type(e).__name__}"
            continue
        degraded = degraded or report.get("status") == "degraded"
        body.update(report)
    body["status"] = "degraded" if degraded else "ok"
    return Response(body)


@get("/health/ready", sync_to_thread=True, operation_id="ReadReadiness", tags=["operations"], opt=UNTRACED)
def ready(request: Request[Any, Any, State]) -> Response[dict[str, Any]]:
    """Readiness, for a load balancer: 200 while everything this process requires answers, else 503."""
    for probe in _probes(request):
        if probe.required:
            try:
                probe.ready()
            except Exception as e:
                return _unreachable(probe, e)
    return Response({"status": "ready"})


@get("/health/live", sync_to_thread=False, operation_id="ReadLiveness", tags=["operations"], opt=UNTRACED)
def live() -> dict[str, str]:
    """Liveness: the process serves requests (a restart would not mend an unreachable database)."""
    return {"status": "live"}


HEALTH_ROUTES = [health, ready, live]
