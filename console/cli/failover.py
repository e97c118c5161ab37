"""`quarterdeck failover drill start|mark PHASE|end|simulate`: mark a failover drill by hand.

Marks are written through the failover collector's `start_run`/`mark_phase`, the same code the
RDS events and the probe use, so a hand-marked drill and a detected failover read alike.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from collectors import failover as source
from store.ingest import utcnow
from store.models import FAILOVER_PHASES

NAME = "failover"
app = typer.Typer(no_args_is_help=True, help="Failover runs and drills.")
drill_app = typer.Typer(no_args_is_help=True, help="Mark a failover drill by hand.")
app.add_typer(drill_app, name="drill")

EnvOption = Annotated[
    str | None,
    typer.Option("--environment", "-e", help="default QUARTERDECK_FAILOVER__ENVIRONMENT"),
]


def _ctx() -> Any:
    from console.cli.common import _context

    return _context()


@drill_app.command("start")
def drill_start(
    environment: EnvOption = None,
    notes: Annotated[str, typer.Option(help="what the drill does")] = "failover drill",
    kind: Annotated[str, typer.Option(help="drill | switchover | failover")] = "drill",
) -> None:
    """Open a drill run now (RTO counts from this mark)."""
    ctx = _ctx()
    env = environment or ctx.settings.failover.environment
    with ctx.session() as session:
        if (run := source.current_run(session, env)) is not None:
            typer.echo(f"error: run {run.run_key} is still open; end it first", err=True)
            raise typer.Exit(1)
        key = source.start_run(
            session, environment=env, at=utcnow(), kind=kind, source="manual", notes=notes
        )
    typer.echo(key)


@drill_app.command("mark")
def drill_mark(
    phase: Annotated[str, typer.Argument(help=" | ".join(FAILOVER_PHASES))],
    environment: EnvOption = None,
    message: Annotated[str | None, typer.Option(help="what happened")] = None,
) -> None:
    """Mark PHASE of the open run now."""
    ctx = _ctx()
    env = environment or ctx.settings.failover.environment
    if phase not in FAILOVER_PHASES:
        typer.echo(f"error: phase must be one of {', '.join(FAILOVER_PHASES)}", err=True)
        raise typer.Exit(2)
    with ctx.session() as session:
        run = source.current_run(session, env)
        if run is None:
            typer.echo(f"error: no open run in {env}; `drill start` first", err=True)
            raise typer.Exit(1)
        source.mark_phase(
            session,
            run_key=run.run_key,
            phase=phase,
            at=utcnow(),
            source="manual",
            message=message or f"{phase} (marked by hand)",
        )
        typer.echo(f"{run.run_key}: {phase}")


@drill_app.command("end")
def drill_end(environment: EnvOption = None) -> None:
    """Mark the open run complete."""
    drill_mark("complete", environment=environment, message="drill ended")


@drill_app.command("simulate")
def drill_simulate(
    environment: EnvOption = None,
    speed: Annotated[float, typer.Option(min=0.1, help="play faster (2 = twice as fast)")] = 1.0,
) -> None:
    """Play a scripted two-minute drill in real time, so the live Failover page moves."""
    from demo.simulator import play_scripted_drill

    ctx = _ctx()
    env = environment or ctx.settings.failover.environment
    with ctx.session() as session:
        if (run := source.current_run(session, env)) is not None:
            typer.echo(f"error: run {run.run_key} is still open; end it first", err=True)
            raise typer.Exit(1)
    key = play_scripted_drill(ctx.sessions, environment=env, speed=speed, echo=typer.echo)
    typer.echo(f"{key}: complete")
