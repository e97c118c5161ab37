"""What a CI job reports about itself (`POST /ingest/ci`): duration, shard, cache lookups, tests.

The GitHub API exposes no cache hit ratio and no per-test outcomes, so jobs post them. Schema
(JSON object for one job attempt, or a list of them)::

    {"repo": "acme/web", "run_id": 123, "run_attempt": 1, "job": "test (2/4)",
     "head_sha": "…", "finished_at": "2025-11-12T10:00:00Z", "duration_s": 312.5,
     "owner": "team-checkout",                              # optional: owns this job's tests
     "shard": {"index": 2, "total": 4},
     "cache": [{"key": "pnpm-abc", "hit": true}],          # hit = exact-key hit only
     "tests": [{"id": "tests/test_api.py::test_ok", "outcome": "passed", "duration_s": 0.2,
                "owner": "ana"}],
     "junit_xml": "<testsuites>…</testsuites>"}            # optional, JUnit XML as written

`tests` and `junit_xml` may both be given; JUnit test cases become `classname::name` ids. A JUnit
case that passed after in-job reruns (`flakyFailure`/`rerunFailure`, as Surefire and
pytest-rerunfailures write them) is stored with outcome `flaky`.

A test that failed and then passed on retry for the same SHA (another attempt of the run, or an
in-job rerun) is flaky: it enters the quarantine list (`ci_quarantined_tests`) with its owner and
an expiry `quarantine_days` after its last flake.

The receivers' one calls live here too: :func:`receive_job_reports` (`POST /ingest/ci`) and
:func:`receive_github_delivery` (`POST /ingest/github`) take the body bytes and return the counts;
what the store cannot hold (:func:`collectors.base.storage_problem`) is dead-lettered per item
while the rest is stored, and a schema-invalid batch is refused whole (``refused``: a 400).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs
from xml.etree.ElementTree import Element

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from collectors import github
from collectors.base import (
    InvalidItem,
    PayloadTooLarge,
    json_batch,
    loads_bounded,
    parse_time,
    refuse_body,
    require,
    storage_problem,
)
from store.ingest import IngestResult, record_rejects, record_sync_run, upsert
from store.models import CiJobMetric, CiTestResult
from store.models.ci import GitHubDelivery, QuarantinedTest
from store.queries.ci import per_repo

SOURCE = "ci"
WEBHOOK_SOURCE = "github-webhook"
MAX_REPORTS = 1000
XML_TYPES = ("application/xml", "text/xml", "application/junit+xml")
_INT_PARAMS = ("run_id", "run_attempt")
OUTCOMES = frozenset({"passed", "failed", "skipped", "error", "flaky"})
FAILED = ("failed", "error")
DEFAULT_QUARANTINE_DAYS = 14
MAX_JUNIT_CHARS = 20_000_000
_REPO = re.compile(r"[\w.-]+/[\w.-]+")
_RERUN_TAGS = ("flakyFailure", "flakyError", "rerunFailure", "rerunError")


def _positive_int(report: dict[str, Any], key: str, default: int | None = None) -> int | None:
    value = report.get(key, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidItem(f"{key}: expected a positive integer")
    return value


def _shard(report: dict[str, Any]) -> tuple[int | None, int | None]:
    shard = report.get("shard") or {}
    if not isinstance(shard, dict):
        raise InvalidItem("shard: expected an object with index and total")
    if not shard:
        return None, None
    index = _positive_int(shard, "index")
    total = _positive_int(shard, "total")
    if index is None or total is None:
        raise InvalidItem("shard: needs both index and total (1-based)")
    if index > total:
        raise InvalidItem(f"shard.index: {index} is greater than shard.total {total}")
    return index, total


def _cache(report: dict[str, Any]) -> tuple[int, int]:
    cache = report.get("cache") or []
    if not isinstance(cache, list):
        raise InvalidItem("cache: expected a list of {key, hit} objects")
    hits = 0
    for i, lookup in enumerate(cache):
        require(lookup, "key", str, where=f"cache[{i}]")
        if not isinstance(lookup.get("hit"), bool):
            raise InvalidItem(f"cache[{i}].hit: expected true or false (exact-key hit)")
        hits += lookup["hit"]
    return len(cache), hits


def parse_junit(xml: str) -> list[dict[str, Any]]:
    """Turn JUnit XML (`<testsuites>` or `<testsuite>`) into test dicts of the report schema.

    Parsed with defusedxml (no entity expansion, no external entities). Cases repeated in one
    file (reruns written as separate cases) fold into one: failed then passed becomes `flaky`.
    """
    if len(xml) > MAX_JUNIT_CHARS:
        raise InvalidItem(f"junit_xml: larger than {MAX_JUNIT_CHARS:,} characters")
    try:
        root = ElementTree.fromstring(xml)
    except (ElementTree.ParseError, DefusedXmlException) as exc:
        raise InvalidItem(f"junit_xml: not well-formed XML ({exc})") from exc
    if root.tag not in ("testsuites", "testsuite"):
        raise InvalidItem(f"junit_xml: root element is <{root.tag}>, expected <testsuites>")
    tests: dict[str, dict[str, Any]] = {}
    for i, case_el in enumerate(root.iter("testcase")):
        name = case_el.get("name")
        if not name:
            raise InvalidItem(f"junit_xml: testcase #{i + 1} has no name attribute")
        classname = case_el.get("classname") or ""
        test_id = f"{classname}::{name}" if classname else name
        outcome = _junit_outcome(case_el)
        try:
            duration = float(case_el.get("time") or 0.0)
        except ValueError as exc:
            raise InvalidItem(f"junit_xml: testcase {test_id!r}: time is not a number") from exc
        owner = next(
            (
                p.get("value")
                for p in case_el.iter("property")
                if p.get("name") == "owner" and p.get("value")
            ),
            None,
        )
        seen = tests.get(test_id)
        if seen is not None:
            outcomes = {seen["outcome"], outcome}
            if outcomes & set(FAILED) and outcomes & {"passed", "flaky"}:
                outcome = "flaky"
            duration += seen["duration_s"]
            owner = owner or seen.get("owner")
        tests[test_id] = {"id": test_id, "outcome": outcome, "duration_s": duration}
        if owner:
            tests[test_id]["owner"] = owner
    return list(tests.values())


def _junit_outcome(case_el: Element) -> str:
    children = {child.tag for child in case_el}
    if "failure" in children:
        return "failed"
    if "error" in children:
        return "error"
    if "skipped" in children:
        return "skipped"
    if children & set(_RERUN_TAGS):
        return "flaky"
    return "passed"


def transform_job_report(report: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Validate one job report; return its `ci_job_metrics` row and its `ci_test_results` rows."""
    if not isinstance(report, dict):
        raise InvalidItem("report: expected a JSON object")
    repo = require(report, "repo", str)
    if not _REPO.fullmatch(repo):
        raise InvalidItem(f"repo: {repo!r} is not owner/name")
    run_id = require(report, "run_id", int)
    attempt = _positive_int(report, "run_attempt", 1)
    job = require(report, "job", str)
    duration = require(report, "duration_s", (int, float))
    if duration < 0:
        raise InvalidItem("duration_s: must not be negative")
    finished = parse_time(report.get("finished_at"), field="finished_at")
    shard_index, shard_total = _shard(report)
    lookups, hits = _cache(report)
    head_sha = report.get("head_sha")
    if head_sha is not None and not isinstance(head_sha, str):
        raise InvalidItem("head_sha: expected a string")
    owner = report.get("owner")
    if owner is not None and not isinstance(owner, str):
        raise InvalidItem("owner: expected a string")
    metric = {
        "repo": repo,
        "run_id": run_id,
        "run_attempt": attempt,
        "job_name": job[:200],
        "head_sha": head_sha,
        "shard_index": shard_index,
        "shard_total": shard_total,
        "duration_s": float(duration),
        "cache_lookups": lookups,
        "cache_hits": hits,
        "finished_at": finished,
    }
    raw_tests = report.get("tests") or []
    if not isinstance(raw_tests, list):
        raise InvalidItem("tests: expected a list of {id, outcome} objects")
    junit = report.get("junit_xml")
    if junit is not None:
        if not isinstance(junit, str):
            raise InvalidItem("junit_xml: expected the XML document as a string")
        raw_tests = [*raw_tests, *parse_junit(junit)]
    tests = []
    for i, test in enumerate(raw_tests):
        test_id = require(test, "id", str, where=f"tests[{i}]")
        outcome = require(test, "outcome", str, where=f"tests[{i}]")
        if outcome not in OUTCOMES:
            raise InvalidItem(f"tests[{i}].outcome: {outcome!r} is not one of {sorted(OUTCOMES)}")
        test_duration = test.get("duration_s")
        if test_duration is not None and (
            not isinstance(test_duration, int | float) or isinstance(test_duration, bool)
        ):
            raise InvalidItem(f"tests[{i}].duration_s: expected a number")
        if not head_sha:
            raise InvalidItem("head_sha: required when tests are reported")
        tests.append(
            {
                "repo": repo,
                "run_id": run_id,
                "run_attempt": attempt,
                "job_name": job[:200],
                "head_sha": head_sha,
                "test_id": test_id[:500],
                "outcome": outcome,
                "duration_s": None if test_duration is None else float(test_duration),
                "finished_at": finished,
                "owner": _owner(test.get("owner")) or _owner(owner),
            }
        )
    return metric, tests


def _owner(value: Any) -> str | None:
    return value.strip()[:200] or None if isinstance(value, str) else None


def ingest_job_reports(
    session: Session,
    reports: list[Any],
    *,
    received_at: datetime,
    all_or_nothing: bool = False,
    quarantine_days: int = DEFAULT_QUARANTINE_DAYS,
) -> IngestResult:
    """Store valid job reports; dead-letter invalid ones with their index and reason.

    With ``all_or_nothing`` (the HTTP receiver) one invalid report means none is stored: the
    client gets a 400 naming the problem and can resend the whole batch once fixed.
    """
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
    if rejects:
        result.rejected = record_rejects(
            session, source=SOURCE, rejects=rejects, received_at=received_at
        )
        result.reasons = [f"[{i}] {r}" for i, r, _ in rejects]
        if all_or_nothing:
            return result
    key = ("repo", "run_id", "run_attempt", "job_name")
    result.add(upsert(session, CiJobMetric, metrics, conflict=key))
    result.add(upsert(session, CiTestResult, tests, conflict=(*key, "test_id")))
    quarantine_flaky(session, ((t["repo"], t["head_sha"]) for t in tests), days=quarantine_days)
    return result


def xml_report(params: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """A job report from query parameters plus a JUnit XML body."""
    report: dict[str, Any] = {k: v for k, v in params.items() if k not in ("shard", "cache")}
    for key in _INT_PARAMS:
        if key in report:
            try:
                report[key] = int(report[key])
            except ValueError as exc:
                raise InvalidItem(f"{key}: expected an integer, got {report[key]!r}") from exc
    if "duration_s" in report:
        try:
            report["duration_s"] = float(report["duration_s"])
        except ValueError as exc:
            raise InvalidItem(
                f"duration_s: expected a number, got {report['duration_s']!r}"
            ) from exc
    if "shard" in params:
        index, _, total = str(params["shard"]).partition("/")
        if not (index.isdigit() and total.isdigit()):
            raise InvalidItem(f"shard: expected INDEX/TOTAL, got {params['shard']!r}")
        report["shard"] = {"index": int(index), "total": int(total)}
    report["junit_xml"] = body.decode("utf-8", errors="replace")
    return report


def receive_job_reports(
    session: Session,
    body: bytes,
    *,
    content_type: str,
    params: Mapping[str, str],
    received_at: datetime,
    quarantine_days: int = DEFAULT_QUARANTINE_DAYS,
) -> IngestResult:
    """`POST /ingest/ci`'s one call: JSON report(s), or JUnit XML with the fields as ``params``.

    An unreadable body is dead-lettered whole and ``refused``; a report the store cannot hold
    is dead-lettered and the others stored; one schema-invalid report refuses the batch (all
    dead-lettered, nothing stored). Raises `PayloadTooLarge` over `MAX_REPORTS` reports.
    """
    media = content_type.split(";")[0].strip().lower()
    try:
        if media in XML_TYPES:
            indexed: list[tuple[int, Any]] = [(0, xml_report(params, body))]
            unparsed: list[tuple[int | None, str, Any]] = []
        else:
            indexed, unparsed = json_batch(body)
    except ValueError as exc:  # InvalidItem (XML parameters) and unreadable JSON alike
        reason = str(exc) if str(exc).startswith("body: ") else f"body: {exc}"
        result = refuse_body(
            session, source=SOURCE, reason=reason, body=body, received_at=received_at
        )
        record_sync_run(session, source=SOURCE, started_at=received_at, result=result)
        return result
    if len(indexed) + len(unparsed) > MAX_REPORTS:
        raise PayloadTooLarge(f"body: more than {MAX_REPORTS} job reports in one request")
    if not indexed and not unparsed:
        reason = "body: expected a job report object or a non-empty list of them"
        result = refuse_body(
            session, source=SOURCE, reason=reason, body=body, received_at=received_at
        )
    else:
        poison = list(unparsed)
        reports = []
        for index, report in indexed:
            problem = storage_problem(report, where="report")
            if problem is None:
                reports.append(report)
            else:
                poison.append((index, problem, report))
        result = ingest_job_reports(
            session,
            reports,
            received_at=received_at,
            all_or_nothing=True,
            quarantine_days=quarantine_days,
        )
        if result.rejected:
            result.refused = "invalid job report: nothing stored"
        if poison:
            result.rejected += record_rejects(
                session, source=SOURCE, rejects=poison, received_at=received_at
            )
            result.reasons = [f"[{i}] {r}" for i, r, _ in poison] + result.reasons
    record_sync_run(session, source=SOURCE, started_at=received_at, result=result)
    return result


def _webhook_payload(body: bytes, content_type: str) -> Any:
    """The JSON payload of a delivery (GitHub sends JSON, or a form field `payload`)."""
    if content_type.startswith("application/x-www-form-urlencoded"):
        fields = parse_qs(body.decode("utf-8", errors="replace"))
        if "payload" not in fields:
            raise ValueError("form body has no `payload` field")
        return loads_bounded(fields["payload"][0])
    return loads_bounded(body)


def receive_github_delivery(
    session: Session,
    body: bytes,
    *,
    content_type: str,
    event: str,
    delivery_id: str,
    received_at: datetime,
) -> IngestResult:
    """`POST /ingest/github`'s one call (after the signature check): one delivery, stored once.

    A redelivery counts as a duplicate. A payload the store cannot hold is dead-lettered and
    the delivery recorded as rejected (a redelivery adds nothing). A schema-invalid payload
    keeps only its dead letter — the caller's transaction is rolled back to drop the half
    of the event — and is ``refused`` (GitHub shows the 400 on the hook's delivery page).
    """
    try:
        payload = _webhook_payload(body, content_type)
    except ValueError as exc:  # JSON, depth and UTF-8 errors alike
        reason = f"body is not a JSON webhook payload: {exc}"
        return refuse_body(
            session, source=github.SOURCE, reason=reason, body=body, received_at=received_at
        )
    if not isinstance(payload, dict):
        return refuse_body(
            session,
            source=github.SOURCE,
            reason="body: expected a JSON object",
            body=body,
            received_at=received_at,
        )
    problem = storage_problem(payload, where="payload")
    if problem is not None:
        claimed = upsert(
            session,
            GitHubDelivery,
            [
                {
                    "delivery_id": delivery_id[:100],
                    "event": event[:50],
                    "outcome": "rejected",
                    "received_at": received_at,
                }
            ],
            conflict=("delivery_id",),
        )
        if not claimed.inserted:
            return IngestResult(duplicates=1)
        result = IngestResult(reasons=[f"{event}: {problem}"])
        result.rejected = record_rejects(
            session,
            source=github.SOURCE,
            rejects=[(None, f"{event}: {problem}", payload)],
            received_at=received_at,
        )
    else:
        result, duplicate = github.ingest_delivery(
            session, delivery_id=delivery_id, event=event, payload=payload, received_at=received_at
        )
        if duplicate:
            return result
        if result.rejected:
            # Keep only the dead letter: no delivery row, no half of the event.
            session.rollback()
            reason = "; ".join(result.reasons)
            result = refuse_body(
                session, source=github.SOURCE, reason=reason, body=payload, received_at=received_at
            )
    record_sync_run(session, source=WEBHOOK_SOURCE, started_at=received_at, result=result)
    return result


def quarantine_flaky(
    session: Session,
    shas: Iterable[tuple[str, str]],
    *,
    days: int = DEFAULT_QUARANTINE_DAYS,
) -> int:
    """Quarantine tests of these (repo, SHA) pairs that failed and then passed on a retry.

    Returns how many tests are now (newly or again) quarantined. Reports arrive in any order,
    so the flake time is the latest pass that came after a failure; first/last flake times only
    move outward. The owner is the one reported with the test's results (any attempt), else
    the one already on the quarantine entry.
    """
    pairs = sorted(set(shas))
    if not pairs:
        return 0
    failed_at = func.min(case((CiTestResult.outcome.in_(FAILED), CiTestResult.finished_at)))
    passed_at = func.max(case((CiTestResult.outcome == "passed", CiTestResult.finished_at)))
    flaky_at = func.max(case((CiTestResult.outcome == "flaky", CiTestResult.finished_at)))
    found: dict[tuple[str, str], tuple[datetime, str]] = {}
    owners: dict[tuple[str, str], str] = {}
    for repo_name, chunk in per_repo(pairs):
        stmt = (
            select(
                CiTestResult.repo,
                CiTestResult.test_id,
                CiTestResult.head_sha,
                failed_at,
                passed_at,
                flaky_at,
                func.max(CiTestResult.owner),
            )
            .where(CiTestResult.repo == repo_name, CiTestResult.head_sha.in_(chunk))
            .group_by(CiTestResult.repo, CiTestResult.head_sha, CiTestResult.test_id)
        )
        for repo, test_id, sha, failed, passed, flaky, owner in session.execute(stmt):
            if owner:
                owners[(repo, test_id)] = owner
            failed, passed, flaky = (_aware(t) for t in (failed, passed, flaky))
            candidates = [t for t in (flaky,) if t is not None]
            if failed is not None and passed is not None and passed >= failed:
                candidates.append(passed)
            if not candidates:
                continue
            at = max(candidates)
            if (repo, test_id) not in found or found[(repo, test_id)][0] < at:
                found[(repo, test_id)] = (at, sha)
    if not found:
        return 0
    existing = {
        (q.repo, q.test_id): q
        for repo_name, test_ids in per_repo(found)
        for q in session.scalars(
            select(QuarantinedTest).where(
                QuarantinedTest.repo == repo_name, QuarantinedTest.test_id.in_(test_ids)
            )
        )
    }
    rows = []
    for (repo, test_id), (at, sha) in found.items():
        old = existing.get((repo, test_id))
        first = min(at, old.first_flaked_at) if old else at
        last = max(at, old.last_flaked_at) if old else at
        rows.append(
            {
                "repo": repo,
                "test_id": test_id,
                "owner": owners.get((repo, test_id)) or (old.owner if old else None),
                "first_flaked_at": first,
                "last_flaked_at": last,
                "last_sha": sha if not old or at >= old.last_flaked_at else old.last_sha,
                "expires_at": last + timedelta(days=days),
            }
        )
    upsert(
        session,
        QuarantinedTest,
        rows,
        conflict=("repo", "test_id"),
        update=("owner", "first_flaked_at", "last_flaked_at", "last_sha", "expires_at"),
    )
    return len(rows)


def _aware(value: datetime | str | None) -> datetime | None:
    # MIN/MAX over a CASE loses the column type: PostgreSQL still hands back aware datetimes,
    # SQLite the stored naive UTC text.
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
