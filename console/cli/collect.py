"""`quarterdeck collect github`: poll GitHub once (a backfill with a progress bar) or on a loop."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Annotated

import typer
from pydantic import ValidationError

from collectors.github import RepoSyncReport, SyncOptions
from collectors.github_client import GitHubClient
from console.cli import collect_traffic as _collect_traffic
from console.cli.collect_exports import exports as collect_exports
from console.context import AppContext
from console.settings import Settings

NAME = "collect"
app = typer.Typer(no_args_is_help=True, help="Run a collector (once, or with --loop).")

EXIT_FAILED = 1
EXIT_CONFIG = 2


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD) or timestamp") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _context() -> AppContext:
    try:
        settings = Settings()
    except ValidationError as exc:
        lines = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        typer.echo("error: invalid settings: " + "; ".join(lines), err=True)
        raise typer.Exit(EXIT_CONFIG) from exc
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return AppContext.from_settings(settings)


def _poll_with_progress(
    ctx: AppContext, repos: list[str], options: SyncOptions, client: GitHubClient
) -> tuple[list[RepoSyncReport], list[str]]:
    """One poll of every repo with a progress bar counting the items read (total unknown)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from console.jobs.github import poll_once

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,} items"),
        TimeElapsedColumn(),
    ) as progress:
        task = progress.add_task("github", total=None)

        def on_repo(name: str) -> None:
            progress.update(task, description=name)

        def on_page(endpoint: str, items: int) -> None:
            progress.update(task, advance=items)

        return poll_once(ctx, repos, options, client=client, on_page=on_page, on_repo=on_repo)


@app.command("github")
def github(
    repo: Annotated[
        list[str] | None,
        typer.Option("--repo", help="owner/name (repeatable); default QUARTERDECK_GITHUB__REPOS"),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="backfill from this date (YYYY-MM-DD or RFC 3339)")
    ] = None,
    loop: Annotated[bool, typer.Option("--loop", help="keep polling on an interval")] = False,
    interval: Annotated[
        float | None, typer.Option(help="seconds between polls; default poll_interval_s")
    ] = None,
    jobs: Annotated[bool, typer.Option(help="also fetch the jobs of completed runs")] = True,
    lease: Annotated[
        bool,
        typer.Option(
            "--lease/--no-lease", help="with --loop: poll only while holding lease collect:github"
        ),
    ] = True,
    lease_ttl: Annotated[
        float, typer.Option(help="seconds a silent leader keeps the lease")
    ] = 30.0,
) -> None:
    """Pull PRs, workflow runs (with attempts and jobs) and deployments (with statuses)."""
    from console.clients import github_client as build_client
    from console.jobs.github import sync_options

    ctx = _context()
    settings = ctx.settings.github
    repos = repo or settings.repos
    if not repos:
        typer.echo(
            "error: name a repository with --repo or set QUARTERDECK_GITHUB__REPOS", err=True
        )
        raise typer.Exit(EXIT_CONFIG)
    if settings.token is None:
        typer.echo("warning: no QUARTERDECK_GITHUB__TOKEN: unauthenticated, 60 requests/hour")
    options = sync_options(settings, since=_since(since), jobs=jobs)
    client = build_client(settings)
    pause = interval if interval is not None else settings.poll_interval_s
    if loop and lease:
        from console.cli.collect_traffic import _leader_loop
        from console.jobs.github import poll_once

        def _pass() -> str:
            reports, errors = poll_once(ctx, list(repos), options, client=client)
            options.since = None  # later polls continue from the cursors
            stored = sum(r.result.stored for r in reports)
            return f"{len(reports)} repos, {stored} new rows" + "".join(
                f"; error: {e}" for e in errors
            )

        _leader_loop("github", _pass, interval_s=pause, ttl_s=lease_ttl, ctx=ctx)
        return
    while True:
        reports, errors = _poll_with_progress(ctx, list(repos), options, client)
        for report in reports:
            r = report.result
            pages = ", ".join(f"{k} {v}" for k, v in report.pages.items()) or "no new pages"
            unchanged = f"; unchanged (304): {', '.join(report.not_modified)}"
            typer.echo(
                f"{report.repo}: {r.stored} new rows, {r.duplicates} already stored, "
                f"{r.rejected} rejected ({pages}{unchanged if report.not_modified else ''})"
            )
        for error in errors:
            typer.echo(f"error: {error}", err=True)
        typer.echo(
            f"{client.stats.requests} requests, {client.stats.not_modified} not modified, "
            f"{client.stats.retries} retries"
        )
        if not loop:
            if errors:
                raise typer.Exit(EXIT_FAILED)
            return
        options.since = None  # later polls continue from the cursors
        time.sleep(pause)


# Sources whose commands live beside their own capability's code.
app.command("exports")(collect_exports)
app.command("prometheus")(_collect_traffic.prometheus)
app.command("route53")(_collect_traffic.route53)
app.command("failover")(_collect_traffic.failover)
