"""The `backbone` command: start the system or one part of it, migrate, mint tokens."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import prometheus_client
import psycopg
import uvicorn
from litestar import Litestar

from backbone.audit import audit, print_report
from backbone.database import database_dsn, part_dsn
from backbone.http_protocol import HttpProtocol
from backbone.migrate import migrate, wait_until_migrated
from backbone.observability import configure_logging, configure_tracing
from backbone.progress import ProgressBar
from backbone.rabbitmq import RabbitMQ, free_port
from backbone.scaled import Gateway, Supervisor, topology
from backbone.settings import Settings
from backbone.wiring import (
    PROJECTIONS,
    BackgroundProjections,
    Messaging,
    command_api,
    projection_runner,
    read_api,
    transport_for,
    webhook_sender,
)
from http_edge.identity import mint_token
from orders_core.lifecycle import Role
from projectors.health import PROJECTION_SCHEMAS, every_projection, projection_health
from projectors.parked import await_retries, parked_aggregates, request_retry
from projectors.replay import replay


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `backbone` command."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    configure_logging()
    configure_tracing(args.command.replace(" ", "-"))
    result: int = args.run(args)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backbone", description="Alexandrite order backbone")
    parser.set_defaults(command=None)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    up = sub.add_parser("up", help="everything in one process (embedded PostgreSQL unless DATABASE_URL)")
    _serving(up)
    up.add_argument(
        "--scaled",
        action="store_true",
        help="compose.yaml's topology as local processes: every part its own process, with replicas and "
        "standbys, on PostgreSQL and RabbitMQ (a local node from Debian's rabbitmq-server unless AMQP_URL)",
    )
    up.set_defaults(command="up", run=_up)

    api = sub.add_parser("api", help="the CRM command API alone")
    _serving(api)
    api.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    api.set_defaults(command="api", run=_api)

    reads = sub.add_parser("read-api", help="the read API (shop and MES views) alone")
    _serving(reads)
    reads.set_defaults(command="read-api", run=_read_api)

    projector = sub.add_parser("projector", help="run one projection (a second copy waits as a standby)")
    projector.add_argument("name", choices=sorted(PROJECTIONS))
    projector.add_argument("--batch-size", type=int, default=1000, help="events per transaction at most")
    projector.set_defaults(command="projector", run=_projector)

    relay = sub.add_parser("relay", help="publish stored order events to the broker (a second copy waits)")
    relay.set_defaults(command="relay", run=lambda args: _messaging(relay=True))

    worker = sub.add_parser("worker", help="a worker process")
    worker.add_argument("kind", choices=["pricing"])
    worker.add_argument("--concurrency", type=int, default=1, help="quotes at once in this process")
    worker.set_defaults(command="worker", run=lambda args: _messaging(workers=args.concurrency))

    webhooks = sub.add_parser(
        "webhooks",
        help="send partners' order events to their webhook endpoints (a second copy waits as a standby)",
    )
    webhooks.set_defaults(command="webhooks", run=_webhooks)

    results = sub.add_parser("results", help="turn pricing results into RecordQuote / RejectModel")
    results.set_defaults(command="results", run=lambda args: _messaging(results=True))

    projections = sub.add_parser("projections", help="inspect or rebuild projections")
    projections_sub = projections.add_subparsers(title="projection commands", metavar="ACTION", required=True)
    status = projections_sub.add_parser(
        "status", help="state, position, lag, parked aggregates and last error of every projection"
    )
    status.set_defaults(command="projections status", run=_projections_status)
    parked = projections_sub.add_parser(
        "parked", help="the aggregates whose events a projection holds back, and why"
    )
    parked.add_argument("name", choices=PROJECTION_SCHEMAS)
    parked.set_defaults(command="projections parked", run=_projections_parked)
    retry = projections_sub.add_parser(
        "retry",
        help="have the projection's active runner apply its parked events again (after a fix is deployed); "
        "exit 1 if any still fail",
    )
    retry.add_argument("name", choices=PROJECTION_SCHEMAS)
    retry.add_argument("--aggregate", metavar="ID", help="only this aggregate (default: every parked one)")
    retry.add_argument(
        "--wait", type=float, default=60.0, help="seconds to wait for the runner's outcome (default 60)"
    )
    retry.set_defaults(command="projections retry", run=_projections_retry)
    replay = projections_sub.add_parser("replay", help="rebuild a projection into fresh tables, then swap")
    replay.add_argument("name", choices=sorted(PROJECTIONS))
    replay.add_argument("--batch-size", type=int, default=5000)
    replay.set_defaults(command="projections replay", run=_projections_replay)

    audit = sub.add_parser(
        "audit",
        help="check every order against every read model, pricing and the queues; non-zero exit if "
        "anything is lost, duplicated or left behind",
    )
    audit.add_argument(
        "--grace", type=float, default=300.0, help="seconds a submission may wait for pricing (default 300)"
    )
    audit.add_argument(
        "--settle", type=float, default=10.0, help="seconds to let lag and queued work catch up (default 10)"
    )
    audit.add_argument(
        "--every",
        type=float,
        default=None,
        help="audit again every this many seconds, forever, serving the audit metrics on METRICS_PORT",
    )
    audit.set_defaults(command="audit", run=_audit)

    mig = sub.add_parser("migrate", help="apply database migrations")
    mig.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        default=None,
        help="apply nothing: wait up to SECONDS until another process has migrated the database (exit 1 "
        "if not); the Kubernetes parts' init container waits so for the migrate Job",
    )
    mig.set_defaults(command="migrate", run=_migrate)

    token = sub.add_parser("token", help="mint a bearer token for local use")
    token.add_argument("--role", required=True, choices=[r.value for r in Role])
    token.add_argument("--sub", required=True, help="subject: user, partner or service id")
    token.add_argument("--days", type=float, default=30.0, help="validity in days (default 30)")
    token.set_defaults(command="token", run=_token)
    return parser


def _serving(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="interface to listen on (default 127.0.0.1, or HOST)")
    parser.add_argument("--port", type=int, default=None, help="port (default 8000, or PORT)")


def _listen(settings: Settings, args: argparse.Namespace) -> tuple[str, int]:
    return args.host or settings.host, args.port if args.port is not None else settings.port


def _up(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    dsn = database_dsn(settings)
    applied = migrate(dsn)
    host, port = _listen(settings, args)
    if args.scaled:
        return _up_scaled(settings, dsn, host, port)
    where = "DATABASE_URL" if settings.database_url else f"embedded PostgreSQL in {settings.home / 'pgdata'}"
    print(f"backbone: event store on {where}; {len(applied)} migration(s) applied", file=sys.stderr)
    print(f"backbone: serving http://{host}:{port}  (OpenAPI: /schema/openapi.json)", file=sys.stderr)
    print("backbone: a token for requests: backbone token --role seller --sub alice", file=sys.stderr)
    projections = BackgroundProjections(part_dsn(settings, dsn, "projector"))
    messaging = Messaging(
        settings, dsn, transport_for(settings, wait_for_broker=True), relay=True, workers=1, results=True
    )
    webhooks = webhook_sender(settings, dsn)
    app = command_api(settings, dsn, with_reads=True)
    app.on_startup += [projections.start, messaging.start, webhooks.start]
    app.on_shutdown[:0] = [webhooks.stop, messaging.stop, projections.close]
    _serve(app, host, port)
    return 0


def _up_scaled(settings: Settings, dsn: str, host: str, port: int) -> int:
    rabbit = None
    amqp = settings.amqp_url
    if amqp is None:
        rabbit = RabbitMQ(settings.home / "rabbitmq", free_port(), name="backbone")
        print(f"backbone: starting RabbitMQ in {rabbit.base}", file=sys.stderr)
        rabbit.start()
        amqp = rabbit.url
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "AMQP_URL": amqp,
        "JWT_SECRET": settings.jwt_secret,
        "BACKBONE_HOME": str(settings.home),
        "BLOB_STORE": "postgres",  # as on separate machines: workers read models from PostgreSQL
        "HOST": host,
    }
    parts = topology(port, metrics_from=port + 100)
    supervisor = Supervisor(parts, env)
    supervisor.start()
    for part in parts:
        where = part.env.get("PORT") or f"metrics :{part.env['METRICS_PORT']}"
        print(
            f"backbone: {part.name:<18} pid {supervisor.processes[part.name].pid:<8} {where}", file=sys.stderr
        )
    print(f"backbone: gateway http://{host}:{port} (console: /console/)", file=sys.stderr)
    api = [f"http://{host}:{p.env['PORT']}" for p in parts if p.args == ("api",)]
    reads = [f"http://{host}:{p.env['PORT']}" for p in parts if p.args == ("read-api",)]
    try:
        _serve(Gateway(api, reads), host, port)
    finally:
        supervisor.stop()
        if rabbit is not None:
            rabbit.stop()
            rabbit.stop_epmd()
    return 0


def _serve(app: Litestar | Gateway, host: str, port: int) -> None:
    # uvicorn shuts down gracefully on SIGINT/SIGTERM and then re-raises the signal to the handler that was
    # installed before it: make that a normal exit, so atexit stops the embedded PostgreSQL.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _exit_quietly)
    uvicorn.run(
        app, host=host, port=port, http=HttpProtocol, log_level="warning", access_log=False, log_config=None
    )


def _exit_quietly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _api(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    host, port = _listen(settings, args)
    if args.workers > 1:
        # Workers wire themselves; the database must be migrated and reachable before they start.
        database_dsn(settings)
        # Each worker counts in files of its own; /metrics (on whichever worker answers) adds them up.
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
            shared = settings.home / "metrics" / f"api-{os.getpid()}"
            shutil.rmtree(shared, ignore_errors=True)
            shared.mkdir(parents=True)
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(shared)
        uvicorn.run(
            "backbone.wiring:command_api_from_env",
            factory=True,
            host=host,
            port=port,
            workers=args.workers,
            http=HttpProtocol,
            log_level="warning",
            access_log=False,
            log_config=None,
        )
        return 0
    _serve(command_api(settings, database_dsn(settings)), host, port)
    return 0


def _read_api(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    host, port = _listen(settings, args)
    _serve(read_api(settings, database_dsn(settings)), host, port)
    return 0


def _messaging(relay: bool = False, workers: int = 0, results: bool = False) -> int:
    settings = Settings.from_env()
    if not settings.amqp_url:
        print("backbone: AMQP_URL is not set; this part alone has no broker to talk to", file=sys.stderr)
        return 2
    dsn = database_dsn(settings)
    serve_metrics(settings)
    messaging = Messaging(
        settings,
        dsn,
        transport_for(settings, wait_for_broker=True),
        relay=relay,
        workers=workers,
        results=results,
    )
    asyncio.run(_run_until_signalled(messaging))
    return 0


async def _run_until_signalled(messaging: Messaging) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # A signal while start() still waits for the broker stops the wait, not only what follows it.
    starting = asyncio.create_task(messaging.start())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        stopping.cancel()
        await messaging.transport.close()
        return
    starting.result()  # a start that failed is a fault: raise it
    try:
        await stop.wait()
    finally:
        stopping.cancel()
        await messaging.stop()


def _webhooks(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    sender = webhook_sender(settings, database_dsn(settings))
    serve_metrics(settings)
    print("webhooks: waiting to become the active sender (one sends, others stand by)", file=sys.stderr)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await sender.start()
        try:
            await stop.wait()
        finally:
            await sender.stop()

    asyncio.run(run())
    return 0


def serve_metrics(settings: Settings) -> None:
    """Serve /metrics on METRICS_PORT for a part that has no HTTP API of its own."""
    if settings.metrics_port is not None:
        prometheus_client.start_http_server(settings.metrics_port, addr=settings.host)


def _projector(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    dsn = part_dsn(settings, database_dsn(settings), "projector")
    runner = projection_runner(args.name, dsn, batch_size=args.batch_size)
    serve_metrics(settings)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(f"projector {args.name}: waiting to become active (one runner per projection)", file=sys.stderr)
    runner.run(stop)
    return 0


def _projections_status(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    with psycopg.connect(part_dsn(settings, database_dsn(settings), "read")) as conn:
        states = every_projection(conn)
    print(
        f"{'projection':<11} {'state':<8} {'position':>10} {'head':>10} {'lag (events)':>13} "
        f"{'lag (seconds)':>14} {'parked':>7}  last error"
    )
    for h in states:
        error = (
            f"{h.last_error} (failing since {h.failing_since:%Y-%m-%d %H:%M:%S})" if h.failing_since else ""
        )
        print(
            f"{h.name:<11} {h.state:<8} {h.position:>10} {h.head:>10} {h.lag_events:>13} "
            f"{h.lag_seconds:>14.1f} {h.parked_aggregates:>7}  {error}"
        )
    return 0


def _projection_connection(name: str) -> psycopg.Connection[Any]:
    """A connection with the role of the part that writes projection `name`."""
    settings = Settings.from_env()
    part = name if name in ("relay", "webhooks") else "projector"
    return psycopg.connect(part_dsn(settings, database_dsn(settings), part))


def _aggregate_argument(value: str | None) -> str | None:
    """The --aggregate value as a canonical UUID; exits 2 with a reason if it is not one."""
    if value is None:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        print(f"backbone: --aggregate {value!r} is not an aggregate id (a UUID)", file=sys.stderr)
        raise SystemExit(2) from None


def _projections_parked(args: argparse.Namespace) -> int:
    with _projection_connection(args.name) as conn:
        parked = parked_aggregates(conn, args.name)
    if not parked:
        print(f"{args.name}: nothing parked")
        return 0
    print(
        f"{'aggregate':<36}  {'first position':>14}  {'events':>6}  {'parked since':<19}  event type  error"
    )
    for p in parked:
        print(
            f"{p.aggregate_id:<36}  {p.first_position:>14}  {p.events:>6}  {p.since:%Y-%m-%d %H:%M:%S}  "
            f"{p.event_type}  {p.error}"
        )
    return 0


def _projections_retry(args: argparse.Namespace) -> int:
    aggregate = _aggregate_argument(args.aggregate)
    with _projection_connection(args.name) as conn:
        marked = request_retry(conn, args.name, aggregate)
        if not marked:
            what = f"aggregate {aggregate} is not" if aggregate else "nothing is"
            print(f"backbone: {what} parked in {args.name}", file=sys.stderr)
            return 2 if aggregate else 0
        print(f"{args.name}: asked the active runner to retry {len(marked)} aggregate(s)", file=sys.stderr)
        outcome = await_retries(conn, args.name, marked, args.wait)
    failed = 0
    for aggregate_id, still in outcome.items():
        if still is None:
            print(f"{aggregate_id}  unparked")
        elif still.retry_requested:
            failed += 1
            print(
                f"{aggregate_id}  not retried yet: is a {args.name} runner running? (it retries when it runs)"
            )
        else:
            failed += 1
            print(f"{aggregate_id}  still parked: {still.error}")
    return 1 if failed else 0


def _projections_replay(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    # As the owner, as migrations run: a replay creates, renames and drops schemas, which no part's role
    # may do. The tables it swaps in keep the live ones' grants (projectors/replay.py).
    dsn = database_dsn(settings)
    with psycopg.connect(dsn) as conn:
        head = projection_health(conn, args.name).head
    progress = ProgressBar(f"replay {args.name}", head)
    position = replay(
        dsn,
        args.name,
        lambda schema: projection_runner(args.name, dsn, schema, args.batch_size),
        progress.advance,
    )
    progress.done()
    print(f"replay {args.name}: rebuilt to position {position} and swapped in", file=sys.stderr)
    return 0


def _audit(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    dsn = database_dsn(settings)
    broker = (lambda: transport_for(settings)) if settings.amqp_url else None
    if args.every is None:
        report = audit(dsn, broker, grace_s=args.grace, settle_s=args.settle)
        print_report(report, sys.stdout)
        return 0 if report.ok else 1
    serve_metrics(settings)
    signal.signal(signal.SIGTERM, _exit_quietly)
    while True:
        report = audit(dsn, broker, grace_s=args.grace, settle_s=args.settle)
        print_report(report, sys.stdout)
        sys.stdout.flush()
        time.sleep(args.every)


def _migrate(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if args.wait is not None:
        try:
            wait_until_migrated(database_dsn(settings), args.wait)
        except TimeoutError as e:
            print(f"backbone: {e}", file=sys.stderr)
            return 1
        print("the database is migrated")
        return 0
    applied = migrate(database_dsn(settings))
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")
    return 0


def _token(args: argparse.Namespace) -> int:
    secret = os.environ.get("JWT_SECRET") or Settings.from_env().jwt_secret
    print(mint_token(secret, Role(args.role), args.sub, timedelta(days=args.days)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
