"""Benchmark CI velocity on SQLite (run with `make bench`).

1. Backfill one repository of 5,000 PRs, 50,000 workflow runs and 5,000 preview deployments
   (with their statuses) from the local GitHub replay server over real HTTP, and print rows/s;
   then re-run the sync and print what the unchanged endpoints cost (304s, new rows).
2. Add one year of CI job reports (2 shards per run, cache lookups, 3 tests on one shard) and
   print the p95 latency of the CI page's read (`ci_page_data`, one sprint window plus its
   baseline) and of the lead-time API's query over 90 days. Goal: p95 < 300 ms.

Bounded: fixed sizes, jobs polling off (it would be one request per run), ~1-2 minutes.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.github_replay

from collectors.ci_ingest import ingest_job_reports
from collectors.github import SyncOptions, sync_repo
from collectors.github_client import GitHubClient
from store.db import analyze, make_engine, session_factory
from store.metrics import Window
from store.migrate import upgrade
from store.queries.ci import ci_page_data, lead_time_frame
from tests.github_replay import (
    Dataset,
    deployment,
    pull,
    replay,
    run,
    status,
    ts,
)

REPO = "acme/web"
PRS = 5_000
RUNS = 50_000
START = datetime(2024, 11, 24, tzinfo=UTC)
YEAR = timedelta(days=365)
QUERY_REPEATS = 20
GOAL_MS = 300.0


def dataset() -> Dataset:
    """5,000 PRs spread over a year, 10 runs each (pushes and re-runs), one preview each."""
    d = Dataset()
    pulls, runs, deps = [], [], []
    step = YEAR / PRS
    for n in range(PRS):
        number = 1000 + n
        opened = START + step * n
        sha = f"{number:08x}" + "b" * 32
        pulls.append(pull(REPO, number, sha, opened, updated=opened + timedelta(minutes=40)))
        for k in range(RUNS // PRS):
            created = opened + timedelta(seconds=10 + 30 * k)
            runs.append(
                run(
                    REPO, 10_000_000 + n * 10 + k, sha, created, prs=[] if n % 10 == 0 else [number]
                )
            )
        dep = deployment(REPO, 500_000 + n, sha, f"pr-{number}", opened + timedelta(minutes=6))
        deps.append(dep)
        ready = opened + timedelta(minutes=8 + (n * 7919) % 23)
        d.statuses[(REPO, dep["id"])] = [
            status(dep, 5_000_000 + 2 * n, "in_progress", opened + timedelta(minutes=7)),
            status(dep, 5_000_001 + 2 * n, "success", ready),
        ]
    d.pulls[REPO], d.runs[REPO], d.deployments[REPO] = pulls, runs, deps
    return d


def job_reports(d: Dataset) -> list[dict[str, Any]]:
    """Two shards per run; cache lookups on both; three tests on shard 1."""
    reports = []
    for i, r in enumerate(d.runs[REPO]):
        for shard in (1, 2):
            reports.append(
                {
                    "repo": REPO,
                    "run_id": r["id"],
                    "run_attempt": 1,
                    "job": f"test ({shard}/2)",
                    "head_sha": r["head_sha"],
                    "finished_at": r["updated_at"],
                    "duration_s": 150.0 + (i * 31 + shard * 17) % 120,
                    "shard": {"index": shard, "total": 2},
                    "cache": [{"key": "pnpm", "hit": i % 7 != 0}, {"key": "docker", "hit": True}],
                    "tests": [
                        {"id": f"tests/test_{t}.py::test_case", "outcome": "passed"}
                        for t in range(3)
                    ]
                    if shard == 1
                    else [],
                }
            )
    return reports


def p95_ms(fn: Any) -> tuple[float, float]:
    samples = []
    for _ in range(QUERY_REPEATS):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[round(0.95 * (len(samples) - 1))]


def main() -> None:
    data = dataset()
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        upgrade(engine)
        factory = session_factory(engine)
        with replay(data) as server:
            server.remaining = 1_000_000  # a GitHub App on GHEC: the backfill fits the budget
            client = GitHubClient(server.url, "ghp_bench")
            start = time.perf_counter()
            report = sync_repo(factory, client, REPO, SyncOptions(jobs=False))
            elapsed = time.perf_counter() - start
            rows = report.result.stored
            print(
                f"backfill: {PRS:,} PRs, {RUNS:,} runs, {PRS:,} deployments → {rows:,} rows "
                f"in {elapsed:.1f} s = {rows / elapsed:,.0f} rows/s "
                f"({client.stats.requests:,} requests, {client.stats.requests / elapsed:,.0f}/s)"
            )
            again = GitHubClient(server.url, "ghp_bench")
            start = time.perf_counter()
            second = sync_repo(factory, again, REPO, SyncOptions(jobs=False))
            print(
                f"re-sync: {second.result.stored} new rows, {again.stats.not_modified} × 304 "
                f"of {again.stats.requests} requests in {time.perf_counter() - start:.2f} s"
            )

        reports = job_reports(data)
        start = time.perf_counter()
        with Session(engine) as session, session.begin():
            result = ingest_job_reports(session, reports, received_at=START + YEAR)
        elapsed = time.perf_counter() - start
        print(
            f"job reports: {len(reports):,} reports → {result.stored:,} rows in {elapsed:.1f} s "
            f"= {result.stored / elapsed:,.0f} rows/s"
        )
        analyze(engine)

        sprint = Window(START + YEAR - timedelta(days=14), START + YEAR)
        baseline = Window(sprint.start - timedelta(days=14), sprint.start)
        quarter = Window(START + YEAR - timedelta(days=90), START + YEAR)

        def page() -> None:
            with Session(engine) as session:
                ci_page_data(session, window=sprint, baseline=baseline, as_of=sprint.end, repo=REPO)

        def api() -> None:
            with Session(engine) as session:
                lead_time_frame(session, window=quarter, repo=REPO)

        for name, fn in (("CI page read (sprint + baseline)", page), ("lead-time API 90 d", api)):
            median, p95 = p95_ms(fn)
            verdict = "ok" if p95 < GOAL_MS else f"over the {GOAL_MS:.0f} ms goal"
            print(f"{name}: median {median:.0f} ms, p95 {p95:.0f} ms ({verdict})")
        print(f"data spans {ts(START)} → {ts(START + YEAR)}")
        engine.dispose()


if __name__ == "__main__":
    main()
