"""CI read side and the flaky quarantine on SQLite and PostgreSQL: fed through the real ingest
code (webhook payloads, CI job reports), read back through `store.queries.ci`."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from collectors.ci_ingest import ingest_job_reports
from collectors.github import ingest_webhook
from store.metrics import Window
from store.models import CiTestResult
from store.models.ci import QuarantinedTest
from store.queries.ci import (
    cache_hit_daily_frame,
    ci_page_data,
    lead_time_daily_frame,
    quarantine_frame,
    shard_balance_frame,
    summarize_lead_times,
)
from tests.github_replay import EXPECTED_P50, EXPECTED_P95, REPO, SHA, T0, story_webhooks

TEST = "tests/test_checkout.py::test_retry_budget"
WINDOW = Window(T0 - timedelta(days=1), T0 + timedelta(days=2))


def report(
    sha: str, run_id: int, attempt: int, outcome: str, minutes: float, **extra: Any
) -> dict[str, Any]:
    return {
        "repo": REPO,
        "run_id": run_id,
        "run_attempt": attempt,
        "job": "test (2/4)",
        "head_sha": sha,
        "finished_at": (T0 + timedelta(minutes=minutes)).isoformat(),
        "duration_s": 200.0,
        "tests": [{"id": TEST, "outcome": outcome, "duration_s": 1.0}],
        **extra,
    }


def feed(engine: Any, *reports: dict[str, Any]) -> None:
    with Session(engine) as session, session.begin():
        ingest_job_reports(session, list(reports), received_at=T0)


def test_fail_then_pass_on_retry_is_quarantined_once_and_a_later_flake_extends_it(engine):
    feed(engine, report(SHA[101], 1, 1, "failed", 10, owner="team-checkout"))
    feed(engine, report(SHA[101], 1, 2, "passed", 20))
    feed(engine, report(SHA[101], 1, 2, "passed", 20))  # a resent report
    feed(engine, report(SHA[102], 2, 2, "passed", 200))  # out of order: pass arrives first
    feed(engine, report(SHA[102], 2, 1, "error", 100))

    with Session(engine) as session:
        entries = session.scalars(select(QuarantinedTest)).all()
        results = session.scalar(select(func.count()).select_from(CiTestResult))
    assert results == 4
    assert len(entries) == 1
    q = entries[0]
    assert (q.test_id, q.owner, q.last_sha) == (TEST, "team-checkout", SHA[102])
    assert q.first_flaked_at == T0 + timedelta(minutes=20)
    assert q.last_flaked_at == T0 + timedelta(minutes=200)
    assert q.expires_at == T0 + timedelta(minutes=200) + timedelta(days=14)


def test_pass_then_fail_is_not_flaky_and_a_junit_rerun_pass_is(engine):
    feed(engine, report(SHA[103], 3, 1, "passed", 10), report(SHA[103], 3, 2, "failed", 20))
    junit = """<testsuite name="e2e" tests="1">
      <testcase classname="e2e.cart" name="test_pay" time="3.0">
        <flakyFailure message="timeout" type="TimeoutError">timed out</flakyFailure>
      </testcase></testsuite>"""
    feed(engine, {**report(SHA[104], 4, 1, "passed", 30), "tests": [], "junit_xml": junit})

    with Session(engine) as session:
        quarantined = session.scalars(select(QuarantinedTest.test_id)).all()
    assert quarantined == ["e2e.cart::test_pay"]


def test_quarantine_frame_marks_active_entries_and_counts_flaky_shas(engine):
    feed(engine, report(SHA[101], 1, 1, "failed", 10), report(SHA[101], 1, 2, "passed", 20))
    feed(engine, report(SHA[102], 2, 1, "failed", 30), report(SHA[102], 2, 2, "passed", 40))

    with Session(engine) as session:
        active = quarantine_frame(session, as_of=T0 + timedelta(days=3), window=WINDOW)
        expired = quarantine_frame(session, as_of=T0 + timedelta(days=30))
    assert active[["test_id", "active", "flaky_shas"]].values.tolist() == [[TEST, True, 2]]
    assert expired["active"].tolist() == [False]


def test_cache_hit_ratio_per_day_and_shard_balance(engine):
    def job(run_id: int, shard: int, minutes: float, duration: float, hits: list[bool]) -> dict:
        return {
            "repo": REPO,
            "run_id": run_id,
            "job": f"test ({shard}/2)",
            "finished_at": (T0 + timedelta(minutes=minutes)).isoformat(),
            "duration_s": duration,
            "shard": {"index": shard, "total": 2},
            "cache": [{"key": f"k{i}", "hit": h} for i, h in enumerate(hits)],
        }

    feed(
        engine,
        job(1, 1, 0, 100.0, [True, True]),
        job(1, 2, 0, 300.0, [True, False]),
        job(2, 1, 24 * 60, 120.0, [False, False]),
        job(2, 2, 24 * 60, 340.0, []),
    )

    with Session(engine) as session:
        cache = cache_hit_daily_frame(session, window=WINDOW, repo=REPO)
        shards = shard_balance_frame(session, window=WINDOW, repo=REPO)
    assert cache.values.tolist() == [
        [date(2025, 11, 12), 3, 4, 0.75],
        [date(2025, 11, 13), 0, 2, 0.0],
    ]
    assert shards[["workflow", "shard_index", "jobs", "mean_s", "max_s"]].values.tolist() == [
        ["test", 1, 2, 110.0, 120.0],
        ["test", 2, 2, 320.0, 340.0],
    ]


def test_ci_page_data_gives_before_after_daily_trend_and_waiting(engine):
    with Session(engine) as session, session.begin():
        for event, payload in story_webhooks():
            ingest_webhook(session, event, payload, received_at=T0)
    baseline = Window(WINDOW.start - timedelta(days=3), WINDOW.start)

    with Session(engine) as session:
        data = ci_page_data(
            session, window=WINDOW, baseline=baseline, as_of=T0 + timedelta(hours=6), repo=REPO
        )
    summary = summarize_lead_times(data.lead_times)
    assert (summary.p50_s, summary.p95_s, summary.count) == (EXPECTED_P50, EXPECTED_P95, 3)
    assert summarize_lead_times(data.baseline_lead_times).count == 0
    assert data.waiting["sha"].tolist() == [SHA[104]]
    daily = lead_time_daily_frame(data.lead_times)
    assert daily.values.tolist() == [[date(2025, 11, 12), EXPECTED_P50, EXPECTED_P95, 3]]
