"""The `quarterdeck` command: serve, db upgrade, demo seed, goals check/show.

Every command builds settings from the environment (`QUARTERDECK_…`) and wires the same pieces
the console uses. Errors a person can fix are printed as one line and exit non-zero.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from console.cli.common import EXIT_CONFIG, EXIT_DATABASE, _context, _fail, _settings
from console.context import AppContext
from store.goals import SprintConfigError, evaluate_goals, load_sprint, with_unit

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Quarterdeck, the release captain's console."
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
demo_app = typer.Typer(no_args_is_help=True, help="The demo sprint.")
goals_app = typer.Typer(no_args_is_help=True, help="Sprint goals.")
app.add_typer(db_app, name="db")
app.add_typer(demo_app, name="demo")
app.add_typer(goals_app, name="goals")


def _add_command_groups() -> None:
    """Mount each area's command group (`quarterdeck collect …`, `actions …`, …), in help order."""
    from console.cli import (
        actions,
        audit,
        bundles,
        collect,
        evidence,
        failover,
        postmortem,
        runbooks,
        slo,
        users,
    )

    for module in (
        collect,
        actions,
        bundles,
        failover,
        runbooks,
        evidence,
        postmortem,
        slo,
        audit,
        users,
    ):
        app.add_typer(module.app, name=module.NAME)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
) -> None:
    """Migrate the store to the newest schema (or REVISION)."""
    from store.db import safe_url
    from store.migrate import current_revision, upgrade

    ctx = _context()
    before = current_revision(ctx.engine)
    upgrade(ctx.engine, revision)
    after = current_revision(ctx.engine)
    typer.echo(f"{safe_url(ctx.engine.url)}: schema {before or 'empty'} → {after}")


@demo_app.command("seed")
def demo_seed(
    force: Annotated[
        bool, typer.Option(help="feed every payload again even if this demo was seeded")
    ] = False,
) -> None:
    """Seed the demo sprint through the collectors' ingest code (idempotent, one transaction)."""
    from demo.seed import DEMO_VERSION, seed_demo
    from store.migrate import current_revision, head_revision

    ctx = _context()
    if current_revision(ctx.engine) != head_revision():
        raise _fail(
            "the database is not migrated: run `quarterdeck db upgrade` first", EXIT_DATABASE
        )
    try:
        report = seed_demo(ctx.engine, force=force)
    except Exception as exc:
        raise _fail(f"demo seed failed, nothing was written: {exc}", 1) from exc
    from demo.users import SIGN_IN_HINT

    if not report.sources:
        typer.echo(
            f"demo sprint {DEMO_VERSION} already seeded; nothing to do (--force re-feeds it)"
        )
    else:
        for line in report.lines():
            typer.echo(line)
        typer.echo(f"demo sprint {DEMO_VERSION}: {report.stored} new rows")
    typer.echo(SIGN_IN_HINT)


@goals_app.command("check")
def goals_check(
    files: Annotated[list[Path] | None, typer.Argument(help="sprint files (default: all)")] = None,
) -> None:
    """Validate sprint files; print `file: goal id: field: problem` for each problem."""
    settings = _settings()
    paths = files or sorted(settings.sprints_dir.glob("*.yaml"))
    if not paths:
        raise _fail(f"no sprint files in {settings.sprints_dir}", EXIT_CONFIG)
    problems: list[str] = []
    for path in paths:
        try:
            sprint = load_sprint(path)
            typer.echo(f"{path}: ok ({len(sprint.goals)} goals, {len(sprint.gates)} gates)")
        except SprintConfigError as exc:
            problems.extend(exc.problems)
    for line in problems:
        typer.echo(line, err=True)
    if problems:
        raise typer.Exit(EXIT_CONFIG)


@goals_app.command("show")
def goals_show(
    sprint: Annotated[str | None, typer.Option(help="sprint slug")] = None,
) -> None:
    """Evaluate and print every goal of a sprint."""
    ctx = _context()
    try:
        loaded = ctx.sprint(sprint)
    except SprintConfigError as exc:
        for line in exc.problems:
            typer.echo(line, err=True)
        raise typer.Exit(EXIT_CONFIG) from exc
    with ctx.session() as session:
        results = evaluate_goals(session, loaded, with_trend=False)
    typer.echo(f"{loaded.title} ({loaded.slug})")
    for r in results:
        value = "—" if r.value is None else with_unit(r.value, r.unit)
        typer.echo(f"  {r.status.upper():8} {r.id:28} {value:>12}  n={r.samples:<6} {r.reason}")


def _receivers_server(wsgi_app: object, host: str, port: int, threads: int, limit: int) -> object:
    """A waitress server of its own (own port, own thread pool) for the bounded receivers."""
    from waitress import create_server

    from console.wsgi import receivers_app

    return create_server(
        receivers_app(wsgi_app, max_inflight=limit),  # type: ignore[arg-type]
        host=host,
        port=port,
        threads=threads,
        ident="quarterdeck-ingest",
        # Waitress queues at most this many accepted connections per thread before refusing.
        connection_limit=max(limit * 4, 32),
    )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="default QUARTERDECK_HOST or 127.0.0.1")] = None,
    port: Annotated[int | None, typer.Option(help="default QUARTERDECK_PORT or 8050")] = None,
    threads: Annotated[int, typer.Option(help="worker threads")] = 8,
    ingest_port: Annotated[
        int | None,
        typer.Option(help="also serve /ingest/* on this port with its own thread pool"),
    ] = None,
    ingest_threads: Annotated[int, typer.Option(help="threads of the receivers' pool")] = 4,
    ingest_limit: Annotated[
        int, typer.Option(help="receiver requests in flight before 503 + Retry-After")
    ] = 8,
) -> None:
    """Serve the console, its APIs and receivers (Ctrl-C stops)."""
    import threading

    from waitress import serve as waitress_serve

    from console.app import create_app
    from console.wiring import start_jobs, with_demo_route53

    base = _context()
    # Order matters: the demo's Route53 stand-in derives the settings everything else uses.
    settings, stop_moto = with_demo_route53(base.settings)
    ctx = AppContext(settings=settings, engine=base.engine, sessions=base.sessions)
    dash_app = create_app(ctx)
    bind_host = host or ctx.settings.host
    bind_port = port or ctx.settings.port
    stops = start_jobs(ctx)
    if stop_moto is not None:
        stops.append(stop_moto)
    typer.echo(f"Quarterdeck on http://{bind_host}:{bind_port}/  (Ctrl-C stops)")
    if ingest_port:
        receivers: Any = _receivers_server(
            dash_app.server, bind_host, ingest_port, ingest_threads, ingest_limit
        )
        threading.Thread(target=receivers.run, name="receivers", daemon=True).start()
        stops.append(receivers.close)
        typer.echo(f"receivers on http://{bind_host}:{ingest_port}/ingest/")
    try:
        waitress_serve(
            dash_app.server, host=bind_host, port=bind_port, threads=threads, ident="quarterdeck"
        )
    except KeyboardInterrupt:
        pass
    finally:
        for stop in stops:
            stop()
        ctx.engine.dispose()
        typer.echo("stopped")


@app.command()
def ingest(
    host: Annotated[str | None, typer.Option(help="default QUARTERDECK_HOST or 127.0.0.1")] = None,
    port: Annotated[int, typer.Option(help="port of the receivers")] = 8051,
    threads: Annotated[int, typer.Option(help="worker threads")] = 4,
    limit: Annotated[int, typer.Option(help="requests in flight before 503 + Retry-After")] = 8,
) -> None:
    """Serve only the receivers (`/ingest/*`, health, metrics): no pages, no pollers."""
    from console.app import create_app

    ctx = _context()
    dash_app = create_app(ctx)
    bind_host = host or ctx.settings.host
    server: Any = _receivers_server(dash_app.server, bind_host, port, threads, limit)
    typer.echo(f"Quarterdeck receivers on http://{bind_host}:{port}/ingest/  (Ctrl-C stops)")
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        ctx.engine.dispose()
        typer.echo("stopped")


@app.command()
def maintain(
    loop: Annotated[bool, typer.Option("--loop", help="repeat on the interval")] = False,
    interval: Annotated[float, typer.Option(help="seconds between passes")] = 3600.0,
    decisions_days: Annotated[int, typer.Option(help="raw decisions kept (days)")] = 30,
    samples_days: Annotated[int | None, typer.Option(help="raw traffic samples kept")] = None,
    rollups_days: Annotated[int, typer.Option(help="hourly traffic rollups kept (days)")] = 400,
    lease_ttl: Annotated[
        float, typer.Option(help="seconds a silent leader keeps the lease")
    ] = 120.0,
) -> None:
    """Roll decisions up by day, create day partitions, drop or delete what is past retention."""
    from console.cli.collect_traffic import _repeat
    from store.ingest import utcnow
    from store.retention import RetentionPolicy
    from store.retention import maintain as run_maintenance

    ctx = _context()
    policy = RetentionPolicy(
        decisions_days=decisions_days,
        samples_days=samples_days or ctx.settings.prometheus.retention_days or 30,
        traffic_rollups_days=rollups_days,
    )

    def once() -> str:
        with ctx.session() as session:
            return run_maintenance(session, now=utcnow(), policy=policy).line()

    _repeat(
        "maintain", once, loop=loop, interval_s=interval, lease=True, lease_ttl_s=lease_ttl, ctx=ctx
    )


_add_command_groups()


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
