"""What a CI job reports about itself (`POST /ingest/ci`): duration, shard, cache lookups, tests.

The GitHub API exposes no cache hit ratio and no per-test outcomes, so jobs post them. Schema
(JSON object, one job attempt)::

    {"repo": "acme/web", "run_id": 123, "run_attempt": 1, "job": "test (2/4)",
     "head_sha": "…", "finished_at": "2025-11-12T10:00:00Z", "duration_s": 312.5,
     "shard": {"index": 2, "total": 4},
     "cache": [{"key": "pnpm-abc", "hit": true}],          # hit = exact-key hit only
     "tests": [{"id": "tests/test_api.py::test_ok", "outcome": "passed", "duration_s": 0.2}]}
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from collectors.base import InvalidItem, parse_time, require
from store.ingest import IngestResult, record_rejects, upsert
from store.models import CiJobMetric, CiTestResult

SOURCE = "ci"
OUTCOMES = frozenset({"passed", "failed", "skipped", "error"})


def transform_job_report(report: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Validate one job report; return its `ci_job_metrics` row and its test rows."""
    repo = require(report, "repo", str)
    run_id = require(report, "run_id", int)
    attempt = report.get("run_attempt", 1)
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
        raise InvalidItem("run_attempt: expected a positive integer")
    job = require(report, "job", str)
    duration = require(report, "duration_s", (int, float))
    if duration < 0:
        raise InvalidItem("duration_s: must not be negative")
    finished = parse_time(report.get("finished_at"), field="finished_at")
    shard = report.get("shard") or {}
    if not isinstance(shard, dict):
        raise InvalidItem("shard: expected an object with index and total")
    cache = report.get("cache") or []
    if not isinstance(cache, list) or not all(isinstance(c, dict) for c in cache):
        raise InvalidItem("cache: expected a list of {key, hit} objects")
    head_sha = report.get("head_sha")
    metric = {
        "repo": repo,
        "run_id": run_id,
        "run_attempt": attempt,
        "job_name": job,
        "head_sha": head_sha,
        "shard_index": shard.get("index"),
        "shard_total": shard.get("total"),
        "duration_s": float(duration),
        "cache_lookups": len(cache),
        "cache_hits": sum(1 for c in cache if c.get("hit") is True),
        "finished_at": finished,
    }
    tests = []
    for i, test in enumerate(report.get("tests") or []):
        test_id = require(test, "id", str, where=f"tests[{i}]")
        outcome = require(test, "outcome", str, where=f"tests[{i}]")
        if outcome not in OUTCOMES:
            raise InvalidItem(f"tests[{i}].outcome: {outcome!r} is not one of {sorted(OUTCOMES)}")
        if not head_sha:
            raise InvalidItem("head_sha: required when tests are reported")
        tests.append(
            {
                "repo": repo,
                "run_id": run_id,
                "run_attempt": attempt,
                "job_name": job,
                "head_sha": head_sha,
                "test_id": test_id[:500],
                "outcome": outcome,
                "duration_s": test.get("duration_s"),
                "finished_at": finished,
            }
        )
    return metric, tests


def ingest_job_reports(
    session: Session, reports: list[Any], *, received_at: datetime
) -> IngestResult:
    """Store valid job reports; dead-letter invalid ones with their index and reason."""
    result = IngestResult()
    metrics: list[dict[str, Any]] = []
    tests: list[dict[str, Any]] = []
    rejects: list[tuple[int | None, str, Any]] = []
    for index, report in enumerate(reports):
        try:
            metric, rows = transform_job_report(report)
        except InvalidItem as exc:
            rejects.append((index, str(exc), report))
            continue
        metrics.append(metric)
        tests.extend(rows)
    key = ("repo", "run_id", "run_attempt", "job_name")
    result.add(upsert(session, CiJobMetric, metrics, conflict=key))
    result.add(upsert(session, CiTestResult, tests, conflict=(*key, "test_id")))
    if rejects:
        result.rejected = record_rejects(
            session, source=SOURCE, rejects=rejects, received_at=received_at
        )
        result.reasons = [f"[{i}] {r}" for i, r, _ in rejects]
    return result
