"""The demo sprint: a deterministic, realistic sprint-27 fed through the collectors' ingest code.

Every payload is built in its source's wire format (GitHub webhook bodies, CI job reports, OPA
decision-log and status bodies, signed OPA bundles, Prometheus `query_range` answers, Route53
`ListResourceRecordSets` pages, RDS `DescribeEvents` events, `pg_stat_replication` rows, export
access-log lines, incident objects) and handed to the same `ingest_*`/`load_*` functions the
collectors and receivers use. Nothing is written behind their backs.

The whole seed is one transaction: a failure leaves the store as it was. Natural keys make a
re-run add nothing. The story it tells (sprint 2025-11-10 → 2025-11-24, baseline the two weeks
before): CI got faster (p50 met narrowly, p95 still missed), the stage failover rehearsal met
RTO/RPO after a slow first drill, bundles are signed and pinned everywhere but one prod OPA
still uploads decision logs on OPA's default 300–600 s delay, a legacy export route lacks the
watermark, one incident got its postmortem from the bot, and nobody has approved prod yet.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from collectors import bundles as bundle_source
from collectors import ci_ingest, exports, failover, github, incidents, opa, prometheus, route53
from collectors.base import parse_time
from demo import ci as ci_part
from demo import policy as policy_part
from demo import traffic as traffic_part
from demo import users as users_part
from store.db import analyze, session_factory, session_scope
from store.ingest import IngestResult, record_sync_run, upsert
from store.models import BundlePin, SyncRun

log = logging.getLogger(__name__)

DEMO_VERSION = "sprint-27/v1"
SEED = 27
SPRINT_START = datetime(2025, 11, 10, tzinfo=UTC)
SPRINT_END = datetime(2025, 11, 24, tzinfo=UTC)
BASELINE_START = SPRINT_START - timedelta(days=14)
TOP_REPO = "acme/web"
REPOS = {TOP_REPO: 5, "acme/api": 2}  # PRs per working day
RECORD = "api.example.com."
ZONE = "Z0DEMO27ACME"
BUNDLE = "authz"
REV_OLD, REV_NEW = "2025.10.20-r41", "2025.11.12-r42"
DEMO_SIGNING_KEY = "quarterdeck-demo-bundle-signing-key-2025"  # HS256 shared secret, demo only
OPA_INSTANCES = {
    "dev-opa-1": ("dev", (5, 10)),
    "stage-opa-1": ("stage", (5, 10)),
    "stage-opa-2": ("stage", (5, 10)),
    "prod-opa-1": ("prod", (5, 10)),
    "prod-opa-2": ("prod", (5, 10)),
    "prod-opa-3": ("prod", (300, 600)),  # OPA's default upload delay: never "< 1 min"
}
POLICY_PATHS = ("acme/authz/allow", "acme/deploy/allow", "acme/exports/allow")


def rfc3339(at: datetime, *, nanos: bool = False) -> str:
    """Format as GitHub/OPA do (`Z`; OPA writes nanoseconds)."""
    text = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        return f"{text}.{at.microsecond:06d}{at.microsecond % 997:03d}Z"
    return text + "Z"


def _id(*parts: Any) -> int:
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:6], "big")


def _sha(*parts: Any) -> str:
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()  # noqa: S324 (git-style id)


def _uuid(rng: random.Random) -> str:
    return "%08x-%04x-4%03x-%04x-%012x" % (  # noqa: UP031
        rng.getrandbits(32),
        rng.getrandbits(16),
        rng.getrandbits(12),
        0x8000 | rng.getrandbits(14),
        rng.getrandbits(48),
    )


@dataclass
class SeedReport:
    """What the seed stored per source (new rows; a re-run reports zeros)."""

    sources: dict[str, IngestResult] = field(default_factory=dict)

    def add(self, source: str, result: IngestResult) -> None:
        self.sources.setdefault(source, IngestResult()).merge(result)

    @property
    def stored(self) -> int:
        return sum(r.stored for r in self.sources.values())

    def lines(self) -> list[str]:
        return [
            f"{source:<20} {r.stored:>8} new  {r.duplicates:>8} already there"
            f"  {r.rejected:>3} rejected"
            for source, r in sorted(self.sources.items())
        ]


# --------------------------------------------------------------------------------------------
# CI: GitHub webhooks + job reports
# --------------------------------------------------------------------------------------------


def _working_days(start: datetime, end: datetime) -> Iterator[datetime]:
    day = start
    while day < end:
        if day.weekday() < 5:
            yield day
        day += timedelta(days=1)


def _lead_minutes(rng: random.Random, in_sprint: bool) -> float:
    # Lognormal: baseline median ≈ 21 min, p95 ≈ 38; sprint median ≈ 13.9, p95 ≈ 27.
    if in_sprint:
        return max(6.0, rng.lognormvariate(2.63, 0.40))
    return max(9.0, rng.lognormvariate(3.05, 0.36))


def ci_payloads(rng: random.Random) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield (kind, event, payload): GitHub webhooks and CI job reports, in time order per PR."""
    for repo, per_day in REPOS.items():
        number = 1200 if repo == TOP_REPO else 300
        for day in _working_days(BASELINE_START, SPRINT_END):
            for _ in range(per_day + rng.choice((-1, 0, 0, 1))):
                number += 1
                opened = day + timedelta(hours=rng.uniform(8, 18))
                yield from _pr_story(rng, repo, number, opened)


def _pr_story(
    rng: random.Random, repo: str, number: int, opened: datetime
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    in_sprint = opened >= SPRINT_START
    author = rng.choice(("ana", "bo", "chen", "dara", "eli", "fatima", "gus"))
    repository = {"full_name": repo, "html_url": f"https://github.com/{repo}"}
    pushes = [opened]
    for _ in range(rng.choice((0, 0, 1, 1, 2))):
        pushes.append(pushes[-1] + timedelta(minutes=rng.uniform(40, 300)))
    title = rng.choice(
        (
            "Fix flaky checkout test",
            "Add region label to metrics",
            "Bump base image",
            "Shard e2e suite",
            "Cache pnpm store",
            "Lazy migrations for preview",
            "Export watermark headers",
            "Tighten OPA deploy policy",
            "Retry DNS weight flip",
        )
    )
    for i, pushed in enumerate(pushes):
        sha = _sha(repo, number, i)
        head_ref = f"{author}/pr-{number}"
        pr: dict[str, Any] = {
            "number": number,
            "title": title,
            "state": "open",
            "user": {"login": author},
            "head": {"sha": sha, "ref": f"{author}/pr-{number}"},
            "html_url": f"https://github.com/{repo}/pull/{number}",
            "created_at": rfc3339(opened),
            "updated_at": rfc3339(pushed),
            "merged_at": None,
        }
        action = "opened" if i == 0 else "synchronize"
        yield (
            "webhook",
            "pull_request",
            {"action": action, "number": number, "pull_request": pr, "repository": repository},
        )
        if pushed >= SPRINT_END - timedelta(minutes=30) and rng.random() < 0.9:
            continue
        run_id = _id(repo, "run", sha)
        created = pushed + timedelta(seconds=rng.uniform(3, 25))
        lead = timedelta(minutes=_lead_minutes(rng, in_sprint))
        ci_done = created + lead * rng.uniform(0.55, 0.7)
        flaky = rng.random() < (0.06 if in_sprint else 0.12)
        prs = [] if rng.random() < 0.1 else [{"number": number}]  # fork PRs: empty list
        run = {
            "id": run_id,
            "name": "ci",
            "event": "pull_request",
            "head_sha": sha,
            "head_branch": head_ref,
            "run_attempt": 1,
            "pull_requests": prs,
            "status": "queued",
            "conclusion": None,
            "created_at": rfc3339(created),
            "run_started_at": rfc3339(created + timedelta(seconds=rng.uniform(5, 60))),
            "updated_at": rfc3339(created),
            "html_url": f"https://github.com/{repo}/actions/runs/{run_id}",
        }
        yield (
            "webhook",
            "workflow_run",
            {"action": "requested", "workflow_run": dict(run), "repository": repository},
        )
        attempts = [1, 2] if flaky else [1]
        for attempt in attempts:
            finished = ci_done if attempt == attempts[-1] else created + (ci_done - created) / 2
            conclusion = "failure" if attempt < attempts[-1] else "success"
            yield (
                "webhook",
                "workflow_run",
                {
                    "action": "completed",
                    "workflow_run": {
                        **run,
                        "run_attempt": attempt,
                        "status": "completed",
                        "conclusion": conclusion,
                        "updated_at": rfc3339(finished),
                    },
                    "repository": repository,
                },
            )
            yield from _job_reports(
                rng,
                repo,
                run_id,
                attempt,
                sha,
                finished,
                in_sprint,
                failing=conclusion == "failure",
            )
        if pushed >= SPRINT_END - timedelta(hours=1) and rng.random() < 0.7:
            continue  # still waiting for its preview when the window closes
        deployment_id = _id(repo, "deploy", sha)
        environment = f"pr-{number}"
        deployment = {
            "id": deployment_id,
            "sha": sha,
            "ref": head_ref,
            "environment": environment,
            "created_at": rfc3339(ci_done),
        }
        states = [("in_progress", ci_done + timedelta(seconds=20))]
        if rng.random() < 0.05:
            states.append(("failure", created + lead * 0.8))
        states.append(("success", created + lead))
        for state, at in states:
            yield (
                "webhook",
                "deployment_status",
                {
                    "action": "created",
                    "deployment_status": {
                        "id": _id(repo, "status", sha, state),
                        "state": state,
                        "environment": environment,
                        "created_at": rfc3339(at),
                        "environment_url": f"https://{environment}.preview.acme.dev"
                        if state == "success"
                        else "",
                    },
                    "deployment": deployment,
                    "repository": repository,
                },
            )


def _job_reports(
    rng: random.Random,
    repo: str,
    run_id: int,
    attempt: int,
    sha: str,
    finished: datetime,
    in_sprint: bool,
    *,
    failing: bool,
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    hit_rate = 0.86 if in_sprint else 0.0
    total = 4
    for shard in range(1, total + 1):
        tests = [
            {
                "id": f"tests/shard{shard}/test_{k}.py::test_case",
                "outcome": "passed",
                "duration_s": round(rng.uniform(0.05, 4.0), 3),
            }
            for k in range(6)
        ]
        if failing and shard == 2:
            tests[0] = {
                "id": "tests/shard2/test_checkout.py::test_retry_budget",
                "outcome": "failed",
                "duration_s": 9.8,
            }
        elif shard == 2:
            tests[0] = {
                "id": "tests/shard2/test_checkout.py::test_retry_budget",
                "outcome": "passed",
                "duration_s": 1.2,
            }
        yield (
            "ci",
            "",
            {
                "repo": repo,
                "run_id": run_id,
                "run_attempt": attempt,
                "job": f"test ({shard}/{total})",
                "head_sha": sha,
                "finished_at": rfc3339(finished),
                "duration_s": round(rng.uniform(180, 420) * (0.7 if in_sprint else 1.0), 1),
                "shard": {"index": shard, "total": total},
                "cache": [
                    {"key": f"pnpm-{sha[:6]}", "hit": rng.random() < hit_rate},
                    {"key": "docker-layers", "hit": rng.random() < hit_rate},
                ]
                if in_sprint
                else [],
                "tests": tests,
            },
        )


# --------------------------------------------------------------------------------------------
# Policy: bundles, pins, status reports, decision logs
# --------------------------------------------------------------------------------------------


DEMO_SIGNING_KEY_ID = "demo"  # `keys.demo` and `bundles.authz.signing.keyid: demo` in OPA
DEMO_RULES = (
    b"import rego.v1\n\ndefault allow := false\n\n"
    b'allow if input.user.roles[_] == "sre"\n'
    b'allow if {\n\tinput.method == "GET"\n\tinput.user.roles[_] == "viewer"\n}\n'
)
DEMO_POLICY = b"package acme.authz\n\n" + DEMO_RULES
"""One package per decision path of the demo (`acme.authz`, `acme.deploy`, `acme.exports`)."""


def demo_bundle_files(revision: str) -> dict[str, bytes]:
    """The demo bundle's files. The data is written by hand, as a person would: non-ASCII
    strings, `<`/`&`, and number literals like `1.50` that OPA hashes as written."""
    data = (
        "{\n"
        f'  "revision": {json.dumps(revision, ensure_ascii=False)},\n'
        '  "owners": {"platform": "Zoë Übergröße <sre> & ops", "exports": "Łukasz 🚀"},\n'
        '  "limits": {"export_gb": 1.50, "max_seats": 1000, "burst": 1e3},\n'
        '  "regions": ["eu-west-1", "us-east-1"]\n'
        "}\n"
    )
    return {
        "/.manifest": json.dumps(
            {"revision": revision, "roots": ["acme"]}, separators=(",", ":")
        ).encode(),
        "/acme/authz/policy.rego": DEMO_POLICY,
        "/acme/deploy/policy.rego": b"package acme.deploy\n\n" + DEMO_RULES,
        "/acme/exports/policy.rego": b"package acme.exports\n\n" + DEMO_RULES,
        "/acme/data.json": data.encode(),
    }


def bundle_tarball(revision: str, *, sign: bool = True) -> bytes:
    """A real OPA bundle (manifest, Rego, data) signed the way `opa build` signs: same files →
    same bytes (deterministic tarball), so its sha256 is the same in every process."""
    files = demo_bundle_files(revision)
    signatures = (
        bundle_source.sign_files(
            files, key=DEMO_SIGNING_KEY, algorithm="HS256", key_id=DEMO_SIGNING_KEY_ID
        )
        if sign
        else None
    )
    return bundle_source.build_bundle(files, signatures=signatures)


def demo_verification_keys() -> dict[str, bundle_source.VerificationKey]:
    """OPA's `keys` map for the demo bundles (the demo's HS256 shared secret)."""
    return {
        DEMO_SIGNING_KEY_ID: bundle_source.VerificationKey(
            DEMO_SIGNING_KEY_ID, "HS256", DEMO_SIGNING_KEY
        )
    }


PINS = [  # (environment, revision, pinned_at, pinned_by)
    ("dev", REV_OLD, datetime(2025, 10, 20, 9, tzinfo=UTC), "ana"),
    ("stage", REV_OLD, datetime(2025, 10, 21, 9, tzinfo=UTC), "ana"),
    ("prod", REV_OLD, datetime(2025, 10, 23, 9, tzinfo=UTC), "bo"),
    ("dev", REV_NEW, datetime(2025, 11, 12, 10, tzinfo=UTC), "ana"),
    ("stage", REV_NEW, datetime(2025, 11, 13, 10, tzinfo=UTC), "ana"),
    ("prod", REV_NEW, datetime(2025, 11, 18, 10, tzinfo=UTC), "bo"),
]


def _active_revision(instance: str, env: str, at: datetime) -> str:
    """What an instance actually runs: follows its pin after a poll delay (prod-opa-3 lags)."""
    revision = REV_OLD
    for pin_env, rev, pinned_at, _ in PINS:
        delay = timedelta(minutes=2)
        if instance == "prod-opa-3" and rev == REV_NEW:
            delay = timedelta(hours=27)  # stuck on a failed download for a day: drift
        if pin_env == env and at >= pinned_at + delay:
            revision = rev
    return revision


def status_payloads(rng: random.Random) -> Iterator[tuple[datetime, dict[str, Any]]]:
    """Status-plugin bodies every 2 hours per instance (and their receive times)."""
    for instance, (env, _) in OPA_INSTANCES.items():
        at = BASELINE_START + timedelta(minutes=rng.uniform(0, 30))
        while at < SPRINT_END:
            revision = _active_revision(instance, env, at)
            failing = instance == "prod-opa-3" and revision == REV_OLD and at >= PINS[-1][2]
            drops = (
                {
                    "counter_decision_logs_dropped_buffer_size_limit_bytes_exceeded": 1,
                    "counter_decision_logs_dropped_buffer_size_limit_exceeded": 1,
                }
                if at >= PINS[-1][2]
                else {}
            )
            bundle = {
                "name": BUNDLE,
                "active_revision": revision,
                "last_successful_activation": rfc3339(at - timedelta(minutes=3)),
                "last_request": rfc3339(at),
                "last_successful_request": rfc3339(at),
                "type": "snapshot",
                "size": 2048,
            }
            if failing:
                bundle |= {
                    "code": "bundle_error",
                    "http_code": 500,
                    "message": "server replied with HTTP 500 Internal Server Error",
                }
            yield (
                at,
                {
                    "labels": {
                        "id": instance,
                        "instance": instance,  # the identity label (labels.id changes per run)
                        "version": "1.4.2",
                        "environment": env,
                        **({"mode": "dry-run"} if env == "dev" else {}),
                    },
                    "bundles": {BUNDLE: bundle},
                    "plugins": {"bundle": {"state": "OK"}, "decision_logs": {"state": "OK"}},
                    # prod-opa-3 runs OPA's defaults: a `size` buffer that lost one chunk.
                    "metrics": {"prometheus": dict(drops) if instance == "prod-opa-3" else {}},
                },
            )
            at += timedelta(hours=2)


def decision_chunks(
    rng: random.Random,
) -> Iterator[tuple[datetime, list[dict[str, Any]]]]:
    """Decision-log chunks per instance as OPA uploads them: (upload time, events)."""
    users = ("ana", "bo", "chen", "dara", "svc-deployer", "svc-exporter")
    for instance, (env, (min_delay, max_delay)) in OPA_INSTANCES.items():
        at = BASELINE_START
        buffer: list[dict[str, Any]] = []
        next_upload = at + timedelta(seconds=rng.uniform(min_delay, max_delay))
        rate_per_hour = 4.0 if env == "dev" else 6.0
        while at < SPRINT_END:
            at += timedelta(seconds=rng.expovariate(rate_per_hour / 3600))
            while next_upload <= at:
                if buffer:
                    yield next_upload, buffer
                    buffer = []
                next_upload += timedelta(seconds=rng.uniform(min_delay, max_delay))
            if at >= SPRINT_END:
                break
            revision = _active_revision(instance, env, at)
            path = rng.choice(POLICY_PATHS)
            user = rng.choice(users)
            roles = ["sre"] if user in ("ana", "bo") else ["viewer"]
            if "sre" not in roles:
                rng.random()  # the draw an earlier demo made here: keeps the seeded stream
            decision_id = _uuid(rng)
            logged_path = path if rng.random() < 0.8 else "/" + path
            method = rng.choice(("GET", "POST"))
            resource = rng.choice(("deployments", "exports", "flags"))
            # What the demo policy itself answers (every revision ships the same rules), so the
            # impact preview replays these decisions and finds what OPA would.
            result = "sre" in roles or (method == "GET" and "viewer" in roles)
            buffer.append(
                {
                    "decision_id": decision_id,
                    "labels": {
                        "id": instance,
                        "version": "1.4.2",
                        "environment": env,
                        **({"mode": "dry-run"} if env == "dev" else {}),
                    },
                    "bundles": {BUNDLE: {"revision": revision}},
                    "path": logged_path,
                    "input": {
                        "user": {"name": user, "roles": roles, "token": "***"},
                        "method": method,
                        "resource": resource,
                    },
                    "result": result,
                    "erased": ["/input/user/token"],
                    "requested_by": f"10.0.{rng.randint(0, 9)}.{rng.randint(2, 250)}:"
                    f"{rng.randint(30000, 60000)}",
                    "timestamp": rfc3339(at, nanos=True),
                    "metrics": {
                        "timer_rego_query_eval_ns": rng.randint(40_000, 900_000),
                        "timer_server_handler_ns": rng.randint(90_000, 2_000_000),
                    },
                    "req_id": rng.randint(1, 10**6),
                }
            )
        if buffer:
            yield next_upload, buffer


# --------------------------------------------------------------------------------------------
# Traffic: Prometheus matrices, Route53 snapshots and health checks
# --------------------------------------------------------------------------------------------

DRILL_START = datetime(2025, 11, 19, 14, 0, tzinfo=UTC)
FIRST_DRILL_START = datetime(2025, 11, 13, 15, 0, tzinfo=UTC)


def _east_share(at: datetime) -> float:
    """Observed share of requests in us-east: follows DNS weights as caches expire."""
    if DRILL_START + timedelta(minutes=3) <= at < DRILL_START + timedelta(minutes=40):
        shifted = (at - DRILL_START - timedelta(minutes=3)).total_seconds()
        return max(0.02, 0.5 * (1 - min(1.0, shifted / 300)))
    return 0.5


def traffic_responses(rng: random.Random, day: datetime) -> dict[str, dict[str, Any]]:
    """One day of 15 s samples as Prometheus `query_range` answers, one per signal."""
    step = 15
    series: dict[str, dict[tuple[str, str], list[list[Any]]]] = {
        s: {} for s in prometheus.TRAFFIC_SIGNALS
    }
    t = day
    end = day + timedelta(days=1)
    while t < end:
        ts = t.timestamp()
        hour = t.hour + t.minute / 60
        base = 420 + 260 * max(0.0, 1 - abs(hour - 15) / 9)  # daily curve, peak 15:00 UTC
        east = _east_share(t)
        for region, share in (("us-east", east), ("us-west", 1 - east)):
            for ingress, weight in (("gateway", 0.8), ("downloads", 0.2)):
                rps = base * 2 * share * weight * rng.uniform(0.93, 1.07)
                r429 = rps * (0.012 if ingress == "downloads" else 0.002) * rng.uniform(0.5, 1.5)
                incident = datetime(2025, 11, 18, 9, 12, tzinfo=UTC)
                r5xx = rps * 0.0004 * rng.random()
                if region == "us-east" and incident <= t < incident + timedelta(minutes=47):
                    r5xx = rps * 0.06
                values = {
                    "requests": rps,
                    "429": r429,
                    "5xx": r5xx,
                    "503": r5xx * 0.3,
                    "cache_hit_ratio": (0.78 if t >= SPRINT_START + timedelta(days=3) else 0.55)
                    * rng.uniform(0.96, 1.03),
                }
                for signal, value in values.items():
                    series[signal].setdefault((region, ingress), []).append([ts, f"{value:.6g}"])
        t += timedelta(seconds=step)
    return {
        signal: {
            "status": "success",
            "data": {
                "resultType": "matrix",
                "result": [
                    {"metric": {"region": region, "ingress": ingress}, "values": values}
                    for (region, ingress), values in by_series.items()
                ],
            },
        }
        for signal, by_series in series.items()
    }


def route53_snapshots() -> Iterator[tuple[datetime, dict[str, Any]]]:
    """Hourly `ListResourceRecordSets` pages (and every change during the drill)."""
    moments = []
    t = SPRINT_START
    while t < SPRINT_END:
        moments.append(t)
        t += timedelta(hours=1)
    moments += [DRILL_START + timedelta(minutes=m) for m in (3, 25)]
    for at in sorted(set(moments)):
        east = (
            0
            if DRILL_START + timedelta(minutes=3) <= at < DRILL_START + timedelta(minutes=25)
            else 50
        )
        sets = []
        for region, weight, hc in (
            ("us-east", east, "hc-east"),
            ("us-west", 100 - east if east == 0 else 50, "hc-west"),
        ):
            sets.append(
                {
                    "Name": RECORD,
                    "Type": "A",
                    "SetIdentifier": region,
                    "Weight": weight,
                    "HealthCheckId": hc,
                    "AliasTarget": {
                        "HostedZoneId": "Z35SXDOTRQ7X7K",
                        "DNSName": f"gw-{region}.elb.amazonaws.com.",
                        "EvaluateTargetHealth": True,
                    },
                }
            )
        yield (
            at,
            {
                "ResourceRecordSets": [
                    {
                        "Name": "example.com.",
                        "Type": "SOA",
                        "TTL": 900,
                        "ResourceRecords": [
                            {"Value": "ns-1.awsdns. hostmaster. 1 7200 900 1209600 86400"}
                        ],
                    },
                    *sets,
                ],
                "IsTruncated": False,
                "MaxItems": "300",
            },
        )


# --------------------------------------------------------------------------------------------
# Failover, exports, SLOs, incidents
# --------------------------------------------------------------------------------------------


def lag_rows(rng: random.Random) -> Iterator[tuple[datetime, list[dict[str, Any]]]]:
    """`pg_stat_replication` rows (primary side) every 5 minutes; a spike before each drill."""
    t = SPRINT_START
    while t < SPRINT_END:
        lag = rng.uniform(0.4, 3.5)
        for drill, peak in ((FIRST_DRILL_START, 410.0), (DRILL_START, 4.2)):
            if drill - timedelta(minutes=20) <= t <= drill:
                lag = peak * (1 - (drill - t).total_seconds() / 1500) + rng.uniform(0, 1)
        yield (
            t,
            [
                {
                    "application_name": "stage-db-2",
                    "client_addr": "10.20.1.12",
                    "state": "streaming",
                    "replay_lag": timedelta(seconds=lag),
                }
            ],
        )
        t += timedelta(minutes=5)


def rds_events(start: datetime, promoted_after: timedelta) -> list[dict[str, Any]]:
    """`DescribeEvents` events of one Aurora failover."""
    arn = "arn:aws:rds:us-east-1:123456789012:cluster:stage-db"
    return [
        {
            "SourceIdentifier": "stage-db",
            "SourceType": "db-cluster",
            "Message": "Started cross AZ failover to DB instance: stage-db-2",
            "EventCategories": ["failover"],
            "Date": start + timedelta(seconds=40),
            "SourceArn": arn,
        },
        {
            "SourceIdentifier": "stage-db",
            "SourceType": "db-cluster",
            "Message": "Completed failover to DB instance: stage-db-2",
            "EventCategories": ["failover"],
            "Date": start + promoted_after,
            "SourceArn": arn,
        },
        {
            "SourceIdentifier": "stage-db-1",
            "SourceType": "db-instance",
            "Message": "DB instance restarted",
            "EventCategories": ["availability"],
            "Date": start + promoted_after + timedelta(seconds=30),
            "SourceArn": arn,
        },
    ]


def export_lines(rng: random.Random) -> str:
    """JSON lines of export downloads as the gateway logged them."""
    lines = []
    t = SPRINT_START
    tenants = ("acme", "globex", "initech", "umbrella")
    n = 0
    while t < SPRINT_END:
        t += timedelta(seconds=rng.expovariate(14 / 3600))
        n += 1
        legacy = rng.random() < 0.006
        limited = rng.random() < 0.03
        export_id = f"exp-{n:05d}"
        user = rng.choice(("ana", "bo", "chen", "dara", "partner-bot"))
        lines.append(
            json.dumps(
                {
                    "event_id": f"evt-{n:06d}",
                    "export_id": export_id,
                    "user": user,
                    "tenant": rng.choice(tenants),
                    "time": rfc3339(t),
                    "route": "/legacy/reports/export"
                    if legacy
                    else f"/exports/{export_id}/download",
                    "status": 429 if limited else 200,
                    "bytes": 0 if limited else rng.randint(20_000, 40_000_000),
                    "token": {
                        "present": True,
                        "valid": True,
                        "expired": False,
                        "scope": "export:read",
                    },
                    "watermark": {"headers": not legacy},
                }
            )
        )
    lines.append('{"event_id": "evt-broken", "status": "two hundred"')  # a truncated log line
    return "\n".join(lines) + "\n"


def slo_responses(service: str, rng: random.Random) -> tuple[dict[str, Any], dict[str, Any]]:
    """Good/total `query_range` matrices (5 min steps) for one service's availability SLO."""
    good, total = [], []
    t = SPRINT_START
    while t < SPRINT_END:
        count = rng.randint(50_000, 90_000)
        bad_ratio = rng.uniform(0, 0.0006)
        if service == "gateway" and datetime(2025, 11, 18, 9, 10, tzinfo=UTC) <= t < datetime(
            2025, 11, 18, 10, tzinfo=UTC
        ):
            bad_ratio = 0.05
        good.append([t.timestamp(), str(round(count * (1 - bad_ratio)))])
        total.append([t.timestamp(), str(count)])
        t += timedelta(minutes=5)

    def matrix(values: list[list[Any]]) -> dict[str, Any]:
        return {
            "status": "success",
            "data": {
                "resultType": "matrix",
                "result": [{"metric": {"service": service}, "values": values}],
            },
        }

    return matrix(good), matrix(total)


POSTMORTEM_BODY = """## Postmortem: INC-2741 — us-east gateway 5xx during cache purge

**Impact:** 47 minutes of elevated 5xx (6 %) on the us-east gateway; 3.1 % of the monthly
error budget of `gateway` consumed.

### Timeline
- 09:12 UTC — cache purge starts in us-east; 5xx rise.
- 09:20 UTC — FastBurn alert pages on-call.
- 09:59 UTC — purge throttled; 5xx back to baseline.

### Action items
- [x] Throttle cache purges per region (owner: platform)
- [ ] Add synthetic check on /ready behind the purge job (owner: sre)
- [ ] Document purge in the on-call runbook (owner: sre)
"""


# --------------------------------------------------------------------------------------------
# Feeding it all through the ingest functions
# --------------------------------------------------------------------------------------------


def feed(session: Session) -> SeedReport:
    """Build every payload and hand it to the collectors' ingest code inside ``session``."""
    rng = random.Random(SEED)  # noqa: S311 (deterministic demo data, not secrets)
    report = SeedReport()

    for kind, event, payload in ci_payloads(rng):
        if kind == "webhook":
            report.add(
                github.SOURCE,
                github.ingest_webhook(
                    session, event, payload, received_at=_webhook_time(event, payload)
                ),
            )
        else:
            report.add(
                ci_ingest.SOURCE,
                ci_ingest.ingest_job_reports(
                    session, [payload], received_at=parse_time(payload["finished_at"])
                ),
            )
    # A job report with a typo, as a misconfigured CI step would post it.
    report.add(
        ci_ingest.SOURCE,
        ci_ingest.ingest_job_reports(
            session,
            [{"repo": TOP_REPO, "run_id": "12", "job": "lint", "duration_s": 30}],
            received_at=SPRINT_START + timedelta(days=2),
        ),
    )

    keys = demo_verification_keys()
    for revision, added in (
        (REV_OLD, datetime(2025, 10, 20, 8, tzinfo=UTC)),
        (REV_NEW, datetime(2025, 11, 12, 8, tzinfo=UTC)),
    ):
        result, _ = bundle_source.register_bundle(
            session,
            name=BUNDLE,
            data=bundle_tarball(revision),
            source=f"demo://bundles/{BUNDLE}/{revision}.tar.gz",
            keys=keys,
            added_at=added,
        )
        report.add(bundle_source.SOURCE, result)
    pins = IngestResult()
    pins.add(
        upsert(
            session,
            BundlePin,
            [
                {
                    "bundle": BUNDLE,
                    "environment": env,
                    "revision": rev,
                    "pinned_at": at,
                    "pinned_by": who,
                    "reason": "sprint-27 staged rollout",
                }
                for env, rev, at, who in PINS
            ],
            conflict=("bundle", "environment", "pinned_at"),
        )
    )
    report.add("bundles.pins", pins)
    for at, body in status_payloads(rng):
        report.add(opa.SOURCE_STATUS, opa.ingest_status(session, body, received_at=at))
    for uploaded, events in decision_chunks(rng):
        received = uploaded + timedelta(milliseconds=rng.uniform(20, 400))
        # Through the receiver's own decoding: a gzip JSON array, as OPA uploads it.
        chunk = gzip.compress(json.dumps(events).encode(), mtime=0)
        decoded = opa.decode_chunk(chunk, content_encoding="gzip", limit=64 * 1024 * 1024)
        report.add(opa.SOURCE_LOGS, opa.ingest_decisions(session, decoded, received_at=received))
    report.add(
        opa.SOURCE_LOGS,
        opa.ingest_decisions(
            session,
            [
                {
                    "labels": {"id": "prod-opa-2"},
                    "path": "acme/authz/allow",
                    "timestamp": "yesterday",
                }
            ],
            received_at=SPRINT_START + timedelta(days=5),
        ),
    )

    day = SPRINT_START
    while day < SPRINT_END:
        rows = prometheus.transform_traffic(traffic_responses(rng, day))
        report.add(prometheus.SOURCE_TRAFFIC, prometheus.load_traffic(session, rows))
        day += timedelta(days=1)
    for service in ("gateway", "web", "exports-api"):
        good, total = slo_responses(service, rng)
        rows = prometheus.transform_slo(good, total, service=service, slo="availability")
        report.add(prometheus.SOURCE_SLO, prometheus.load_slo(session, rows))
    for at, page in route53_snapshots():
        rows = route53.transform_record_sets(page, zone_id=ZONE, names=[RECORD], observed_at=at)
        report.add(
            route53.SOURCE,
            route53.load_record_sets(session, rows, zone_id=ZONE, names=[RECORD], observed_at=at),
        )
        if at.minute == 0 and at.hour % 6 == 0:
            for hc in ("hc-east", "hc-west"):
                status = {
                    "HealthCheckObservations": [
                        {
                            "Region": region,
                            "IPAddress": f"15.177.{i}.1",
                            "StatusReport": {
                                "Status": "Success: HTTP Status Code 200, Content Length 2",
                                "CheckedTime": rfc3339(at),
                            },
                        }
                        for i, region in enumerate(("us-east-1", "us-west-2", "eu-west-1"))
                    ]
                }
                report.add(
                    route53.SOURCE,
                    route53.load_health_checks(
                        session, route53.transform_health_check_status(status, health_check_id=hc)
                    ),
                )

    for at, rows in lag_rows(rng):
        samples = failover.transform_replication_rows(rows, environment="stage", observed_at=at)
        report.add(failover.SOURCE, failover.load_lag_samples(session, samples))
    report.add(failover.SOURCE, _drills(session))

    report.add(
        exports.SOURCE,
        exports.ingest_export_lines(session, export_lines(rng), received_at=SPRINT_END),
    )

    incident = {
        "key": "INC-2741",
        "title": "us-east gateway 5xx during cache purge",
        "severity": "sev2",
        "service": "gateway",
        "started_at": "2025-11-18T09:12:00Z",
        "resolved_at": "2025-11-18T09:59:00Z",
        "summary": "A regional cache purge overloaded the us-east gateway.",
    }
    report.add(
        incidents.SOURCE,
        incidents.ingest_incidents(
            session, [incident], received_at=datetime(2025, 11, 18, 9, 20, tzinfo=UTC)
        ),
    )
    issue = {
        "action": "opened",
        "repository": {"full_name": "acme/runbooks"},
        "issue": {
            "number": 88,
            "title": "Postmortem: INC-2741",
            "html_url": "https://github.com/acme/runbooks/issues/88",
            "labels": [{"name": "incident"}, {"name": "postmortem"}],
            "user": {"login": "postmortem-bot[bot]"},
            "created_at": "2025-11-19T08:30:00Z",
            "body": POSTMORTEM_BODY,
        },
    }
    report.add(
        github.SOURCE,
        github.ingest_webhook(
            session, "issues", issue, received_at=datetime(2025, 11, 19, 8, 30, tzinfo=UTC)
        ),
    )
    # The capability parts, in a written order: CI's extra repos and flaky tests, the policy
    # impact corpus, the traffic extras, then the demo users.
    for part in (ci_part, policy_part, traffic_part, users_part):
        for source, result in part.feed(session).items():
            report.add(source, result)
    return report


def _drills(session: Session) -> IngestResult:
    """Two stage rehearsals: a slow first one (RTO 14 min, lag spike) and the passing one."""
    result = IngestResult()
    for start, promoted, writable, shifted, done in (
        (
            FIRST_DRILL_START,
            timedelta(minutes=9, seconds=20),
            timedelta(minutes=14, seconds=5),
            timedelta(minutes=11),
            timedelta(minutes=35),
        ),
        (
            DRILL_START,
            timedelta(minutes=5, seconds=10),
            timedelta(minutes=7, seconds=40),
            timedelta(minutes=3),
            timedelta(minutes=25),
        ),
    ):
        key = failover.start_run(
            session,
            environment="stage",
            at=start,
            kind="drill",
            source="manual",
            notes="Game day: promote stage replica",
        )
        result.merge(
            failover.ingest_rds_events(session, rds_events(start, promoted), environment="stage")
        )
        for phase, at, source, message in (
            (
                "traffic_shifted",
                start + shifted,
                "route53",
                "api.example.com weights us-east=0 us-west=100",
            ),
            ("writable", start + writable, "probe", "probe write committed on stage-db-2"),
            ("complete", start + done, "manual", "drill complete; weights restored to 50/50"),
        ):
            result.merge(
                failover.mark_phase(
                    session, run_key=key, phase=phase, at=at, source=source, message=message
                )
            )
    return result


def _webhook_time(event: str, payload: dict[str, Any]) -> datetime:
    """When GitHub would have delivered this webhook (the object's own last change)."""
    if event == "deployment_status":
        return parse_time(payload["deployment_status"]["created_at"])
    obj = payload.get("workflow_run") or payload.get("pull_request") or {}
    return parse_time(obj.get("updated_at") or obj.get("created_at"))


def already_seeded(session: Session) -> bool:
    """Whether this demo version was seeded before (a `demo.seed` sync run says so)."""
    return (
        session.scalar(
            select(SyncRun.id).where(SyncRun.source == "demo.seed", SyncRun.cursor == DEMO_VERSION)
        )
        is not None
    )


def seed_demo(engine: Engine, *, force: bool = False) -> SeedReport:
    """Seed the demo sprint in one transaction; skip when seeded before unless ``force``."""
    started = datetime.now(UTC)
    with session_scope(session_factory(engine)) as session:
        if not force and already_seeded(session):
            return SeedReport()
        report = feed(session)
        for source, result in report.sources.items():
            if result.stored:
                record_sync_run(session, source=source, started_at=started, result=result)
        if report.stored:
            total = IngestResult(stored=report.stored)
            record_sync_run(
                session, source="demo.seed", started_at=started, result=total, cursor=DEMO_VERSION
            )
    if report.stored:
        analyze(engine)
    return report
