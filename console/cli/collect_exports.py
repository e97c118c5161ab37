"""`quarterdeck collect exports FILE --format json|combined|upstreaminfo`: import the access log
of the proxy/limiter in front of the export routes (NGINX `combined`, ingress-nginx
`upstreaminfo`, the documented JSON format, or gateway event lines).

A plain command function, registered on the `collect` group. Lines outside `--route` (a regex on
the path; default: export and evidence downloads) are counted as ignored. A line answered by the
console is merged into the console's own event (same `X-Request-ID`; for `combined`, same route,
status, size and second), never added beside it; the limiter's refusals become events of their
own. A line not in the named format is dead-lettered (redacted) with its line number and why.
The import is one transaction and records its run; re-importing a file adds nothing. Schedule it
after each log rotation (see docs/egress-reliability-evidence.md).
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
    log_format: Annotated[
        str,
        typer.Option(
            "--format", help="access-log format: json, combined (NGINX) or upstreaminfo (ingress)"
        ),
    ] = "json",
) -> None:
    """Import export downloads from the proxy's access log (NGINX, ingress-nginx or gateway)."""
    import sys

    from collectors import exports as source
    from store.ingest import record_sync_run, utcnow

    if log_format not in source.FORMATS:
        typer.echo(
            f"error: --format must be one of {', '.join(source.FORMATS)}, got {log_format!r}",
            err=True,
        )
        raise typer.Exit(2)
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
        done = source.import_access_log(
            session,
            text.splitlines(),
            received_at=started,
            fmt=log_format,
            route_pattern=pattern,
        )
        result = done.result
        record_sync_run(session, source=source.SOURCE, started_at=started, result=result)
    for reason in result.reasons[:20]:
        typer.echo(f"{file}: {reason}", err=True)
    span = (
        f" ({done.first:%Y-%m-%d %H:%M:%S} → {done.last:%Y-%m-%d %H:%M:%S} UTC)"
        if done.last
        else ""
    )
    typer.echo(
        f"{file}: {result.stored} new, {result.duplicates} already there, "
        f"{result.ignored} outside {route!r}, {result.rejected} rejected, "
        f"{done.merged} merged into the console's own events{span}"
    )
    if result.rejected and not (result.stored or result.duplicates or done.merged):
        raise typer.Exit(1)
