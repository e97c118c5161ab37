"""The GitHub poller against a local replay server over real HTTP: pagination, ETags, rate limits,
fork PRs, re-run attempts, a preview that never succeeded, restarts and failures."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from collectors.github import SyncOptions, get_cursor, sync_repo
from collectors.github_client import GitHubClient, GitHubUnavailable
from store.db import make_engine, session_factory
from store.metrics import Window
from store.migrate import upgrade
from store.models import CiRun, Deployment, DeploymentStatus, PullRequest, SyncRun
from store.models.ci import CiJob
from store.queries.ci import lead_time_frame, waiting_shas_frame
from tests.github_replay import (
    EXPECTED_SECONDS,
    REPO,
    SHA,
    T0,
    Fault,
    ReplayServer,
    replay,
    story,
)

WINDOW = Window(T0 - timedelta(days=1), T0 + timedelta(days=1))
TABLES = (PullRequest, CiRun, CiJob, Deployment, DeploymentStatus)


def client_for(server: ReplayServer, **kwargs: object) -> GitHubClient:
    options: dict[str, object] = {"token": "ghp_test", "backoff_s": 0.01, "max_retries": 3}
    options.update(kwargs)
    return GitHubClient(server.url, **options)  # type: ignore[arg-type]


def counts(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        return {
            m.__tablename__: session.scalar(select(func.count()).select_from(m)) or 0
            for m in TABLES
        }


def snapshot(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    """Every stored row by natural content (ids and bookkeeping left out)."""
    with Session(engine) as session:
        return {
            "pulls": sorted(
                session.execute(select(PullRequest.number, PullRequest.head_sha)).all()
            ),
            "runs": sorted(
                session.execute(
                    select(CiRun.run_id, CiRun.run_attempt, CiRun.pr_number, CiRun.conclusion)
                ).all()
            ),
            "jobs": sorted(session.execute(select(CiJob.job_id, CiJob.run_attempt)).all()),
            "deployments": sorted(
                session.execute(select(Deployment.deployment_id, Deployment.environment)).all()
            ),
            "statuses": sorted(
                session.execute(select(DeploymentStatus.status_id, DeploymentStatus.state)).all()
            ),
        }


def test_backfill_follows_link_pages_and_lead_times_match_hand_computed_values(engine):
    factory = session_factory(engine)
    with replay(story(), page_size=2) as server:
        report = sync_repo(factory, client_for(server), REPO)

    pull_pages = [r.query.get("page", "1") for r in server.calls(f"/repos/{REPO}/pulls")]
    assert pull_pages == ["1", "2", "3"]  # 5 PRs, 2 per page, followed by `link: rel=next`
    assert report.pages == {"pulls": 3, "runs": 2, "deployments": 3}
    with Session(engine) as session:
        df = lead_time_frame(session, window=WINDOW, repo=REPO)
        waiting = waiting_shas_frame(
            session, as_of=T0 + timedelta(hours=6), since=WINDOW.start, repo=REPO
        )
        attempts = session.scalars(
            select(CiRun.run_attempt).where(CiRun.run_id == 9003).order_by(CiRun.run_attempt)
        ).all()
        fork_run_pr = session.scalar(select(CiRun.pr_number).where(CiRun.run_id == 9002))
    assert dict(zip(df["pr"], df["seconds"], strict=True)) == EXPECTED_SECONDS
    assert waiting["sha"].tolist() == [SHA[104]]  # its preview failed and never succeeded
    assert attempts == [1, 2]  # the re-run's first attempt was read from /attempts/1
    assert fork_run_pr == 102  # fork run had `pull_requests: []`: mapped by head SHA
    assert counts(engine)["ci_jobs"] == 5


def test_second_sync_adds_no_rows_and_costs_only_304s(engine):
    factory = session_factory(engine)
    with replay(story(), page_size=2) as server:
        sync_repo(factory, client_for(server), REPO)
        before = counts(engine)
        server.requests.clear()
        report = sync_repo(factory, client_for(server), REPO)

    assert counts(engine) == before
    assert report.result.stored == 0
    assert sorted(report.not_modified) == ["deployments", "pulls", "runs"]
    assert {r.status for r in server.requests} == {304}
    assert all(r.headers.get("if-none-match") for r in server.requests)


def test_primary_rate_limit_waits_for_reset_then_continues(engine):
    factory = session_factory(engine)
    with replay(story()) as server:
        reset = int(time.time()) + 2
        server.faults.append(
            Fault(
                f"/repos/{REPO}/pulls",
                403,
                headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
                body={"message": "API rate limit exceeded for user ID 1."},
                not_before_reset=True,
            )
        )
        client = client_for(server)
        sync_repo(factory, client, REPO)

    pulls = server.calls(f"/repos/{REPO}/pulls")
    assert [r.status for r in pulls] == [403, 200]
    assert pulls[1].at >= reset  # the retry came after x-ratelimit-reset, so it succeeded
    assert counts(engine)["pull_requests"] == 5


def test_secondary_rate_limit_honours_retry_after(engine):
    factory = session_factory(engine)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    with replay(story()) as server:
        server.faults.append(
            Fault(
                f"/repos/{REPO}/actions/runs",
                403,
                headers={"retry-after": "1"},
                body={"message": "You have exceeded a secondary rate limit."},
            )
        )
        sync_repo(factory, client_for(server, sleep=sleep), REPO)

    assert waits == [1.0]
    assert [r.status for r in server.calls(f"/repos/{REPO}/actions/runs")] == [403, 200]
    assert counts(engine)["ci_runs"] == 5


def test_secondary_limit_without_retry_after_waits_a_minute_and_doubles():
    waits: list[float] = []
    with replay(story()) as server:
        server.faults.append(
            Fault(
                f"/repos/{REPO}/pulls",
                403,
                body={"message": "You have exceeded a secondary rate limit."},
                times=2,
            )
        )
        client = GitHubClient(server.url, sleep=waits.append)
        page = client.get_page(f"/repos/{REPO}/pulls", {"per_page": 100})

    assert waits == [60.0, 120.0]
    assert len(page.items) == 5


def test_github_5xx_fails_the_run_keeps_the_cursor_and_a_rerun_matches_a_clean_run(
    engine, tmp_path: Path
):
    factory = session_factory(engine)
    with replay(story(), page_size=1) as server:
        server.faults.append(
            Fault(
                f"/repos/{REPO}/actions/runs",
                502,
                body={"message": "Bad gateway"},
                page="3",
                times=10,
            )
        )
        with pytest.raises(GitHubUnavailable, match="502"):
            sync_repo(factory, client_for(server, max_retries=2), REPO)
        with Session(engine) as session:
            failed = session.scalars(select(SyncRun).where(SyncRun.status == "failed")).all()
            cursor = get_cursor(session, REPO, "runs")
        assert len(failed) == 1 and "502" in (failed[0].error or "")
        assert cursor.next_url is not None and "page=3" in cursor.next_url
        assert cursor.high_water is None  # the pass did not finish: nothing marked as seen

        server.faults.clear()
        server.requests.clear()
        sync_repo(factory, client_for(server), REPO)
        resumed_pages = [r.query.get("page") for r in server.calls(f"/repos/{REPO}/actions/runs")]

        clean = make_engine(f"sqlite:///{tmp_path / 'clean.db'}")
        upgrade(clean)
        sync_repo(session_factory(clean), client_for(server), REPO)

    assert resumed_pages == ["3", "4"]  # resumed where it stopped, not from page 1
    assert snapshot(engine) == snapshot(clean)
    clean.dispose()


def test_since_bounds_a_backfill_and_max_pages_leaves_a_resumable_cursor(engine):
    factory = session_factory(engine)
    since = T0 + timedelta(hours=1)
    with replay(story(), page_size=1) as server:
        options = SyncOptions(since=since, endpoints=("runs",), max_pages=1, jobs=False)
        first = sync_repo(factory, client_for(server), REPO, options)
        with Session(engine) as session:
            cursor = get_cursor(session, REPO, "runs")
        rest = sync_repo(
            factory, client_for(server), REPO, SyncOptions(since=since, endpoints=("runs",))
        )
        created_filter = server.calls(f"/repos/{REPO}/actions/runs")[0].query["created"]

    assert created_filter == ">=2025-11-12T10:00:00Z"
    assert not first.complete and cursor.next_url is not None
    assert rest.complete
    with Session(engine) as session:
        run_ids = sorted(set(session.scalars(select(CiRun.run_id))))
    assert run_ids == [9002, 9003, 9004]  # run 9001 was created before --since


def test_backfill_killed_mid_run_resumes_to_the_same_result_as_a_clean_run(tmp_path: Path):
    import os
    import signal
    import subprocess
    import sys

    db = tmp_path / "killed.db"
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    with replay(story(), page_size=1) as server:
        # Page 3 of the runs hangs: the collector is killed while it waits for it.
        server.faults.append(
            Fault(f"/repos/{REPO}/actions/runs", 200, page="3", stall_s=30.0, times=1)
        )
        env = {
            **os.environ,
            "QUARTERDECK_DEMO_MODE": "true",
            "QUARTERDECK_VAR_DIR": str(tmp_path),
            "QUARTERDECK_DATABASE_URL": f"sqlite:///{db}",
            "QUARTERDECK_GITHUB__API_URL": server.url,
            "QUARTERDECK_GITHUB__TOKEN": "ghp_kill",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "console.cli.main", "collect", "github", "--repo", REPO],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not any(r.status == 0 for r in server.requests):
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        with Session(engine) as session:
            cursor = get_cursor(session, REPO, "runs")
            runs_before = session.scalar(select(func.count()).select_from(CiRun))
        assert cursor.next_url is not None and "page=3" in cursor.next_url
        assert runs_before == 3  # pages 1-2 committed: run 9004, run 9003 with attempts 1 and 2

        sync_repo(session_factory(engine), client_for(server), REPO)

        clean = make_engine(f"sqlite:///{tmp_path / 'clean.db'}")
        upgrade(clean)
        sync_repo(session_factory(clean), client_for(server), REPO)

    assert snapshot(engine) == snapshot(clean)
    engine.dispose()
    clean.dispose()
