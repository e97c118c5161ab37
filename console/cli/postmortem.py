"""`quarterdeck postmortem generate INC-…`: the postmortem bot (IX-1303) from the CLI.

Fills the template with the incident's stored timeline and budget use, prints the Markdown,
optionally opens the GitHub issue, and records the postmortem.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

NAME = "postmortem"
app = typer.Typer(no_args_is_help=True, help="Postmortems (IX-1303).")


def _ctx() -> Any:
    from console.cli.common import _context

    return _context()


@app.command("generate")
def generate(
    incident: Annotated[str, typer.Argument(help="incident key, e.g. INC-2741")],
    action_item: Annotated[
        list[str] | None, typer.Option("--action-item", "-a", help="repeat for each item")
    ] = None,
    open_issue: Annotated[
        bool, typer.Option("--open-issue", help="create the GitHub issue (repo/token settings)")
    ] = False,
    by: Annotated[str | None, typer.Option(help="who generates it (default cli:<login>)")] = None,
) -> None:
    """Generate, record (and optionally file) the postmortem of INCIDENT."""
    from console import evidence_service as service
    from evidence.postmortem import PostmortemError, generate_postmortem
    from store.ingest import utcnow

    ctx = _ctx()
    cfg = service.config(ctx)
    github = None
    if open_issue:
        if not (cfg.postmortem_repo and cfg.postmortem_token):
            typer.echo(
                "error: --open-issue needs QUARTERDECK_EXPORTS__POSTMORTEM_REPO and "
                "QUARTERDECK_EXPORTS__POSTMORTEM_TOKEN",
                err=True,
            )
            raise typer.Exit(2)
        github = {
            "api_url": cfg.github_api_url,
            "repo": cfg.postmortem_repo,
            "token": cfg.postmortem_token,
        }
    try:
        with ctx.session() as session:
            done = generate_postmortem(
                session,
                incident,
                slos=service.slo_definitions(ctx),
                generated_by=by or service.local_user(),
                action_items=action_item or [],
                now=utcnow(),
                github=github,
            )
    except PostmortemError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(done.markdown)
    typer.echo(
        f"recorded postmortem of {done.incident_key}"
        + (f"; issue {done.issue_url}" if done.issue_url else "")
    )
