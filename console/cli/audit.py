"""`quarterdeck audit verify|show`: check the action audit's hash chain, list recent rows."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from sqlalchemy import select

from console.cli.actions import cli_context
from store.audit import verify_chain
from store.models import ActionAudit

NAME = "audit"
app = typer.Typer(no_args_is_help=True, help="The hash-chained action audit.")


@app.command("verify")
def verify(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Walk the chain; exit 1 naming the first row that does not match."""
    ctx = cli_context(as_json=as_json)
    with ctx.session() as session:
        verdict = verify_chain(session)
    if as_json:
        typer.echo(json.dumps(verdict.as_dict()))
    elif verdict.ok:
        typer.echo(f"audit chain intact: {verdict.rows} row(s) verified")
    else:
        typer.echo(f"audit chain BROKEN at row {verdict.first_bad_seq}: {verdict.problem}")
    if not verdict.ok:
        raise typer.Exit(1)


@app.command("show")
def show(
    limit: Annotated[int, typer.Option(help="rows, newest first")] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Print the newest audit rows."""
    ctx = cli_context(as_json=as_json)
    with ctx.session() as session:
        rows = session.scalars(select(ActionAudit).order_by(ActionAudit.seq.desc()).limit(limit))
        data: list[dict[str, Any]] = [
            {
                "seq": r.seq,
                "at": r.at.isoformat(),
                "actor": r.actor,
                "action": r.action,
                "target": r.target,
                "environment": r.environment,
                "outcome": r.outcome,
                "detail": r.detail,
                "row_hash": r.row_hash,
            }
            for r in rows
        ]
    if as_json:
        typer.echo(json.dumps(data, sort_keys=True))
        return
    for r in data:
        typer.echo(
            f"{r['seq']:>6} {r['at'][:19]} {r['actor']:12} {r['outcome']:10} {r['action']} "
            f"{r['target']} ({r['environment'] or '-'})"
        )
