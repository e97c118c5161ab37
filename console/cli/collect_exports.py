"""`quarterdeck collect exports FILE`: import an ingress-nginx (or gateway) JSON access log.

A plain command function, registered on the `collect` group by `console/commands/collect.py`.
Lines outside `--route` (a regex on the path; default: export and evidence downloads) are
counted as ignored; bad lines are dead-lettered with line number and field, shown on Ingest
health. The import is one transaction and records its run; re-importing a file adds nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

DEFAULT_ROUTES = r"^/(exports|evidence|legacy/reports)/"


def _ctx() -> Any:
    from console.cli.common import _context

    return _context()


def exports(
    file: Annotated[
        Path, typer.Argument(help="JSON-lines access log ('-' for stdin)", allow_dash=True)
    ],
    route: Annotated[
        str, typer.Option(help="regex on the request path selecting export downloads")
    ] = DEFAULT_ROUTES,
) -> None:
    """Import export downloads from an ingress-nginx JSON access log (or gateway event lines)."""
    import sys

    from collectors import exports as source
    from store.ingest import record_sync_run, utcnow

    try:
        pattern = re.compile(route)
    except re.error as exc:
        typer.echo(f"error: --route is not a regular expression: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        typer.echo(f"error: cannot read {file}: {exc}", err=True)
        raise typer.Exit(2) from exc
    ctx = _ctx()
    started = utcnow()
    with ctx.session() as session:
        result = source.ingest_access_log(
            session, text.splitlines(), received_at=started, route_pattern=pattern
        )
        record_sync_run(session, source=source.SOURCE, started_at=started, result=result)
    for reason in result.reasons[:20]:
        typer.echo(f"{file}: {reason}", err=True)
    typer.echo(
        f"{file}: {result.stored} new, {result.duplicates} already there, "
        f"{result.ignored} outside {route!r}, {result.rejected} rejected"
    )
    if result.rejected and not (result.stored or result.duplicates):
        raise typer.Exit(1)
