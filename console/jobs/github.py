"""The GitHub poller as a background service of `quarterdeck serve` (and the `collect` command).

Started only when `QUARTERDECK_GITHUB__REPOS` and `QUARTERDECK_GITHUB__TOKEN` are set; webhooks
remain the fast path, the poller fills gaps (missed deliveries, history) on an interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from collectors.github import RepoSyncReport, SyncOptions, sync_repo
from collectors.github_client import GitHubClient, GitHubError
from console.clients import github_client as build_client
from console.context import AppContext
from console.settings.github import GitHubSettings

log = logging.getLogger(__name__)


def sync_options(settings: GitHubSettings, **overrides: object) -> SyncOptions:
    """Sync options from settings (`rescan_hours`, `fetch_jobs`) with explicit overrides."""
    options = SyncOptions(rescan=timedelta(hours=settings.rescan_hours), jobs=settings.fetch_jobs)
    for key, value in overrides.items():
        setattr(options, key, value)
    return options


def poll_once(
    ctx: AppContext,
    repos: list[str],
    options: SyncOptions,
    *,
    client: GitHubClient | None = None,
    on_page: Callable[[str, int], None] | None = None,
    on_repo: Callable[[str], None] | None = None,
) -> tuple[list[RepoSyncReport], list[str]]:
    """Sync every repo once; a failing repo is reported and does not stop the others."""
    client = client or build_client(ctx.settings.github)
    reports: list[RepoSyncReport] = []
    errors: list[str] = []
    for repo in repos:
        if on_repo is not None:
            on_repo(repo)
        try:
            reports.append(sync_repo(ctx.sessions, client, repo, options, on_page=on_page))
        except (GitHubError, OSError, ValueError) as exc:
            errors.append(f"{repo}: {exc}")
    return reports, errors


def start(ctx: AppContext) -> Callable[[], None] | None:
    """Poll the configured repositories every `poll_interval_s` in a daemon thread."""
    settings = ctx.settings.github
    if not settings.repos or settings.token is None:
        return None
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                _, errors = poll_once(ctx, settings.repos, sync_options(settings))
                for error in errors:
                    log.error("github poll: %s", error)
            except Exception:  # the thread must outlive a bad cycle (store down, bug)
                log.exception("github poll cycle failed")
            stop.wait(settings.poll_interval_s)

    thread = threading.Thread(target=loop, name="github-poller", daemon=True)
    thread.start()
    log.info("github poller: %s every %.0f s", ", ".join(settings.repos), settings.poll_interval_s)

    def stop_poller() -> None:
        stop.set()
        thread.join(timeout=10)

    return stop_poller
