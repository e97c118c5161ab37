"""Goal evaluation boundaries and the sprint loader's errors."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy.orm import Session

from collectors import github
from store.goals import Check, SprintConfigError, evaluate_check, load_sprint, status_for
from store.metrics import Window

ROOT = Path(__file__).resolve().parents[2]
SPRINT_FILE = ROOT / "data" / "sprints" / "sprint-27.yaml"
W = Window(datetime(2025, 11, 10, tzinfo=UTC), datetime(2025, 11, 24, tzinfo=UTC))


def check(op: str, value: float, unit: str = "min", at_risk: float | None = None) -> Check:
    return Check(
        id="g",
        title="g",
        metric="ci.pr_preview_lead_time",
        aggregation="p50",
        target={"op": op, "value": value, "unit": unit},
        at_risk_within=at_risk,
    )


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("<", 15.0, "missed"),  # exactly on a strict bound is a miss
        ("<", 14.99, "met"),
        ("<=", 10.0, "met"),  # exactly on an inclusive bound is met
        ("<=", 10.01, "missed"),
        (">=", 15.0, "met"),
        (">", 15.0, "missed"),
        ("==", 15.0, "met"),
        ("==", 15.5, "missed"),
    ],
)
def test_status_exactly_on_and_around_the_target(op, value, expected):
    target = 10.0 if op == "<=" else 15.0
    assert status_for(value, check(op, target)) == expected


def test_no_value_is_no_data_never_met():
    assert status_for(None, check("<", 15)) == "no_data"
    assert status_for(float("nan"), check("<", 15)) == "no_data"


def test_at_risk_when_met_within_the_margin():
    goal = check("<", 15, at_risk=0.1)
    assert status_for(13.4, goal) == "met"
    assert status_for(13.6, goal) == "at_risk"
    assert status_for(15.0, goal) == "missed"


def test_goal_without_samples_evaluates_to_no_data_with_reason(engine):
    with Session(engine) as session:
        result = evaluate_check(session, check("<", 15), W, now=W.end)
    assert result.status == "no_data"
    assert result.value is None
    assert result.samples == 0
    assert result.reason.startswith("no data")


def _pr_sha(session: Session, *, number: int, sha: str, pushed: datetime, ready_after: timedelta):
    repo = {"full_name": "acme/web"}
    pr = {
        "number": number,
        "state": "open",
        "head": {"sha": sha, "ref": "b"},
        "created_at": pushed.isoformat(),
        "updated_at": pushed.isoformat(),
    }
    github.ingest_webhook(
        session,
        "pull_request",
        {"action": "opened", "pull_request": pr, "repository": repo},
        received_at=pushed,
    )
    run = {
        "id": number * 10,
        "event": "pull_request",
        "head_sha": sha,
        "status": "completed",
        "conclusion": "success",
        "pull_requests": [],
        "created_at": pushed.isoformat(),
    }
    github.ingest_webhook(
        session,
        "workflow_run",
        {"action": "completed", "workflow_run": run, "repository": repo},
        received_at=pushed,
    )
    deployment = {
        "id": number * 100,
        "sha": sha,
        "environment": f"pr-{number}",
        "created_at": pushed.isoformat(),
    }
    ready = pushed + ready_after
    github.ingest_webhook(
        session,
        "deployment_status",
        {
            "deployment": deployment,
            "repository": repo,
            "deployment_status": {
                "id": number * 1000,
                "state": "success",
                "created_at": ready.isoformat(),
            },
        },
        received_at=ready,
    )


def test_lead_time_exactly_on_target_is_missed_and_converted_to_minutes(engine):
    t = datetime(2025, 11, 12, 9, tzinfo=UTC)
    with Session(engine) as session, session.begin():
        _pr_sha(session, number=1, sha="a" * 40, pushed=t, ready_after=timedelta(minutes=15))
    with Session(engine) as session:
        result = evaluate_check(session, check("<", 15), W, now=W.end)
    assert result.value == pytest.approx(15.0)
    assert result.samples == 1
    assert result.status == "missed"


def test_trend_has_one_point_per_day_of_the_window(engine):
    t = datetime(2025, 11, 12, 9, tzinfo=UTC)
    with Session(engine) as session, session.begin():
        _pr_sha(session, number=1, sha="b" * 40, pushed=t, ready_after=timedelta(minutes=9))
    with Session(engine) as session:
        result = evaluate_check(session, check("<", 15), W, now=W.end, with_trend=True)
    assert len(result.trend) == 14
    assert [p.value for p in result.trend if p.value is not None] == [pytest.approx(9.0)]


def test_shipped_sprint_file_encodes_every_seed_goal():
    sprint = load_sprint(SPRINT_FILE)
    metrics = {(g.metric, g.aggregation) for g in sprint.goals}
    assert ("ci.pr_preview_lead_time", "p50") in metrics
    assert ("ci.pr_preview_lead_time", "p95") in metrics
    for needed in (
        "failover.rto",
        "failover.rpo",
        "policy.signed_active_share",
        "policy.drift",
        "policy.decision_log_latency",
        "exports.token_watermark_coverage",
        "exports.download_5xx",
        "slo.error_budget_policy_coverage",
        "incidents.postmortems_generated",
    ):
        assert needed in {m for m, _ in metrics}
    assert [g.stage for g in sprint.gates] == ["dev", "stage", "prod"]


def test_invalid_sprint_names_file_goal_id_field_and_problem(tmp_path):
    raw = yaml.safe_load(SPRINT_FILE.read_text())
    raw["goals"][2]["target"]["unit"] = "%"
    raw["goals"][3]["target"].pop("value")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(SprintConfigError) as err:
        load_sprint(bad)
    problems = err.value.problems
    assert (
        f"{bad}: failover-rto: target.unit: '%' does not fit failover.rto, which is measured in s"
        in problems
    )
    assert f"{bad}: failover-rpo: target.value: Field required" in problems


def test_yaml_syntax_error_is_reported_with_its_line(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("slug: x\ngoals: [\n")
    with pytest.raises(SprintConfigError, match=r"broken.yaml: sprint: line \d+: not valid YAML"):
        load_sprint(bad)


def test_drift_on_an_empty_store_says_why_there_is_no_data(engine):
    drift = Check(
        id="d", title="d", metric="policy.drift", target={"op": "==", "value": 0, "unit": "count"}
    )
    with Session(engine) as session:
        result = evaluate_check(session, drift, W, now=W.end)
    assert result.status == "no_data"
    assert result.reason == "no data: no OPA status reports for a pinned bundle"


def test_query_modules_import_no_metric_registry():
    """The registry (store.metrics) imports the query modules, never the other way round."""
    import ast

    registry = {"store.metrics", "store.goals", "store.queries.catalog"}
    offenders = []
    for path in sorted((ROOT / "store" / "queries").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{path.name}: {n}" for n in names if n in registry]
    assert offenders == []


def test_every_metric_is_registered_explicitly_with_a_definition():
    from store.metrics import BASE_UNITS, METRICS, known_metrics

    assert len(METRICS) == len(known_metrics()) >= 17
    for metric in METRICS:
        assert metric.unit in BASE_UNITS
        assert metric.definition and "  " not in metric.definition
        assert metric.fn.__module__ == metric.daily.__module__
        assert metric.fn.__module__.startswith("store.queries.")


def test_the_prod_gate_turns_ready_once_its_preconditions_hold_today(engine, tmp_path):
    """Issue 15: approvals and soak read "now" (injected), not the sprint window that ended."""
    from actions.base import ActionPolicy, Actor
    from actions.bundle_pin import PinConfig, PinOpaBundle, RegistryPins
    from actions.registry import ActionService
    from store.db import session_factory, session_scope
    from store.goals import evaluate_gates
    from store.models import BundlePin
    from tests.conftest import FakeClock
    from tests.peers_actions import BUNDLE, REV_2, register_revisions, report_status

    sprint = load_sprint(SPRINT_FILE)
    today = sprint.window.end + timedelta(days=40)  # the sprint is long over
    clock = FakeClock(today)
    svc = ActionService(
        [PinOpaBundle([RegistryPins(clock=clock)], lambda r: None, PinConfig(), clock=clock)],
        ActionPolicy(),
        clock=clock,
    )

    def prod_gate(session: Session, at: datetime):
        return next(g for g in evaluate_gates(session, sprint, now=at) if g.stage == "prod")

    with session_scope(session_factory(engine)) as session:
        register_revisions(session, tmp_path, added_at=today - timedelta(days=10))
        session.add(
            BundlePin(
                bundle=BUNDLE,
                environment="stage",
                revision=REV_2,
                pinned_at=today - timedelta(days=3),
                pinned_by="sam",
                reason="soak",
            )
        )
        report_status(session, "stage", ["stage-opa-1"], REV_2, at=today - timedelta(days=3))
        report_status(session, "stage", ["stage-opa-1"], REV_2, at=today - timedelta(minutes=1))
        before = prod_gate(session, today)
        planned = svc.plan(
            session,
            Actor("sam", frozenset({"sre"})),
            "opa.pin-bundle",
            {"bundle": BUNDLE, "revision": REV_2},
            "prod",
        )
        assert planned.plan is not None
        approved = svc.approve(session, Actor("cara", frozenset({"captain"})), planned.plan.plan_id)
        assert approved.ok, approved.message
        after = prod_gate(session, today + timedelta(hours=1))  # an hour after she approved
        clock.now = today + timedelta(days=2)  # two days later the approval is no longer "today"
        later = next(g for g in evaluate_gates(session, sprint, now=clock.now) if g.stage == "prod")

    soak = {c.id: c for c in before.preconditions}["stage-soak-48h"]
    assert soak.status == "met" and soak.value == pytest.approx(72.0)  # as of now, not Nov 24
    assert not before.ready
    assert {c.id: c.status for c in before.preconditions}["prod-approvals"] == "no_data"
    assert after.ready, [(c.id, c.reason) for c in after.preconditions]
    assert {c.id: c.value for c in after.preconditions}["prod-approvals"] == 1
    assert not later.ready
