"""`quarterdeck runbooks list|validate|start|status|pause|resume|abort|approve|override|rollback`.

The person acting is `--as USER` (password in `QUARTERDECK_PASSWORD`), as for `actions`. The
steps run in `quarterdeck serve`'s background job; `start --follow` (and `status --follow`)
advance the run in this process instead, until it completes or waits for a person. A refusal
exits 1 after its audit row is committed; `validate` exits 1 on any invalid runbook.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from actions.runbooks import RunResult, run_dict
from console.cli.actions import EXIT_REFUSED, AsJson, AsUser, cli_actor, cli_context, fail
from console.context import AppContext
from store.queries.failover import runbook_run

NAME = "runbooks"
app = typer.Typer(no_args_is_help=True, help="Runbooks: practice and recovery runs, live.")

Reason = Annotated[str, typer.Option(help="why")]
RunId = Annotated[str, typer.Argument(help="run id (approve: or the run's plan id)")]
FOLLOW_LIMIT_S = 3600.0


def _report(result: RunResult, *, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result.as_dict(), sort_keys=True, default=str))
    else:
        if result.run is not None:
            _print_run(run_dict(result.run))
        typer.echo(("ok: " if result.ok else "refused: ") + result.message)
    if not result.ok:
        raise typer.Exit(EXIT_REFUSED)


def _print_run(run: dict[str, Any]) -> None:
    typer.echo(
        f"run {run['run_id']}  {run['runbook']}  {run['mode']}  env={run['environment']}  "
        f"status={run['status']}  RTO={run['rto_s']}  RPO={run['rpo_s']}"
    )
    for i, step in enumerate(run["steps"]):
        mark = "→" if i == run["current_step"] and run["status"] != "completed" else " "
        typer.echo(
            f" {mark} {i + 1:>2} {step['id']:<16} {step['type']:<13} "
            f"{step.get('status', 'pending'):<10} {step.get('message', '')}"
        )
    for offer in run.get("rollback") or []:
        typer.echo(f"   rollback {offer['step']}: {offer['text']} {offer.get('command') or ''}")


def _follow(ctx: AppContext, run_id: str, *, as_json: bool) -> None:
    from console.jobs.leader import holder_id
    from console.jobs.runbooks import run_pass, runner

    engine = runner(ctx.settings)
    holder = holder_id()
    deadline = time.monotonic() + FOLLOW_LIMIT_S
    status = ""
    while time.monotonic() < deadline:
        run_pass(ctx, engine, holder=holder)
        with ctx.session() as session:
            row = runbook_run(session, run_id)
        if row is None:
            raise fail(f"no run {run_id}", EXIT_REFUSED, as_json=as_json)
        if row["status"] != status and not as_json:
            status = row["status"]
            typer.echo(f"{row['status']}: {row['message']}")
        if row["status"] != "running":
            break
        time.sleep(ctx.settings.actions.runbooks.tick_s)


@app.command("list")
def list_runbooks(as_json: AsJson = False) -> None:
    """The runbooks, their steps and the validation problems of the others."""
    from console.jobs.runbooks import runbooks

    ctx = cli_context(as_json=as_json)
    books, errors = runbooks(ctx.settings)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "runbooks": {
                        n: [s.as_dict() for s in b.steps] for n, b in sorted(books.items())
                    },
                    "errors": errors,
                }
            )
        )
        return
    for book in books.values():
        typer.echo(f"{book.name}  ({book.environment}, RPO {book.rpo_target_s:g} s): {book.title}")
        for i, step in enumerate(book.steps):
            typer.echo(f"  {i + 1:>2} {step.id:<16} {step.type}")
    for line in errors:
        typer.echo(f"invalid: {line}", err=True)


@app.command("validate")
def validate(as_json: AsJson = False) -> None:
    """Validate every runbook; exit 1 naming file, step and field of each problem."""
    from console.jobs.runbooks import runbooks

    ctx = cli_context(as_json=as_json)
    books, errors = runbooks(ctx.settings)
    if as_json:
        typer.echo(json.dumps({"valid": sorted(books), "errors": errors}))
    else:
        for line in errors:
            typer.echo(line, err=True)
        typer.echo(f"{len(books)} valid, {len(errors)} problem(s)")
    if errors:
        raise typer.Exit(EXIT_REFUSED)


@app.command("start")
def start(
    runbook: Annotated[str, typer.Argument()],
    user: AsUser,
    mode: Annotated[str, typer.Option(help="practice or recovery")] = "practice",
    reason: Reason = "",
    follow: Annotated[bool, typer.Option(help="advance the run here until it waits")] = False,
    as_json: AsJson = False,
) -> None:
    """Start a run (recovery in production waits for a second person's approval)."""
    from console.jobs.runbooks import runner

    ctx = cli_context(as_json=as_json)
    actor = cli_actor(ctx, user, as_json=as_json)
    with ctx.session() as session:
        result = runner(ctx.settings).start(
            session, actor, runbook, mode, reason=reason or "started from the CLI"
        )
        run_id = result.run.run_id if result.run is not None else None
        if not follow or run_id is None:
            _report(result, as_json=as_json)
            return
    _follow(ctx, run_id, as_json=as_json)
    status(run_id, as_json=as_json)


@app.command("status")
def status(
    run_id: RunId,
    follow: Annotated[bool, typer.Option(help="advance the run here until it waits")] = False,
    as_json: AsJson = False,
) -> None:
    """Show a run's steps, status, RTO and RPO."""
    ctx = cli_context(as_json=as_json)
    if follow:
        _follow(ctx, run_id, as_json=as_json)
    with ctx.session() as session:
        row = runbook_run(session, run_id)
    if row is None:
        raise fail(f"no run {run_id}", EXIT_REFUSED, as_json=as_json)
    if as_json:
        typer.echo(json.dumps(row, sort_keys=True, default=str))
    else:
        _print_run(row)


def _control(verb: str, run_id: str, user: str, reason: str, as_json: bool, **kw: Any) -> None:
    from console.jobs.runbooks import runner

    ctx = cli_context(as_json=as_json)
    actor = cli_actor(ctx, user, as_json=as_json)
    with ctx.session() as session:
        engine = runner(ctx.settings)
        if verb == "approve":
            result = engine.approve(session, actor, run_id)
        elif verb == "override":
            result = engine.override(session, actor, run_id, kw["rule"], reason=reason)
        else:
            result = getattr(engine, verb)(session, actor, run_id, reason=reason)
        _report(result, as_json=as_json)


@app.command("pause")
def pause(run_id: RunId, user: AsUser, reason: Reason = "", as_json: AsJson = False) -> None:
    """Pause a run at its next step boundary."""
    _control("pause", run_id, user, reason, as_json)


@app.command("resume")
def resume(run_id: RunId, user: AsUser, reason: Reason = "", as_json: AsJson = False) -> None:
    """Resume a paused run, or retry a blocked step."""
    _control("resume", run_id, user, reason, as_json)


@app.command("abort")
def abort(run_id: RunId, user: AsUser, reason: Reason = "", as_json: AsJson = False) -> None:
    """Abort a run; prints the rollback offered for what was done."""
    _control("abort", run_id, user, reason, as_json)


@app.command("approve")
def approve(run_id: RunId, user: AsUser, as_json: AsJson = False) -> None:
    """Approve a production run's plan or a run's approval step (never one's own)."""
    _control("approve", run_id, user, "", as_json)


@app.command("override")
def override(
    run_id: RunId,
    user: AsUser,
    rule: Annotated[str, typer.Option(help="the rule the blocked step may pass")],
    reason: Reason = "",
    as_json: AsJson = False,
) -> None:
    """Break-glass (admin): let the blocked step pass RULE; the reason is audited."""
    _control("override", run_id, user, reason, as_json, rule=rule)


@app.command("rollback")
def rollback(
    run_id: RunId,
    user: AsUser,
    step: Annotated[str, typer.Option(help="the aborted run's step to roll back")],
    as_json: AsJson = False,
) -> None:
    """Plan the offered rollback of an aborted run's step (apply it with `actions apply`)."""
    from console.cli.actions import report
    from console.jobs.runbooks import runner

    ctx = cli_context(as_json=as_json)
    actor = cli_actor(ctx, user, as_json=as_json)
    with ctx.session() as session:
        result = runner(ctx.settings).rollback(session, actor, run_id, step)
        report(result, as_json=as_json)
