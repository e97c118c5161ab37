"""The rows behind each number: for every goal and gate check of the demo, the rows are exactly
the samples; lead-time stages add up to each SHA's lead time; the plan's sections load."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from store.goals import effective_window, evaluate_gates, evaluate_goals, find_check
from store.metrics import Window, known_metrics
from store.queries import ci
from store.queries.rows import BUILDERS, metric_rows, row_count

AS_OF = datetime(2025, 11, 20, 12, 0, tzinfo=UTC)  # inside the demo sprint: a clipped window


def _checks(sprint):  # type: ignore[no-untyped-def]
    yield from sprint.goals
    for gate in sprint.gates:
        yield from gate.preconditions
        yield from gate.verification


def test_every_registered_metric_has_a_rows_builder():
    assert set(BUILDERS) == set(known_metrics())


@pytest.mark.parametrize("range_key", ["sprint", "baseline"])
@pytest.mark.parametrize("now", [None, AS_OF])
def test_rows_count_equals_samples_for_every_demo_goal_and_check(demo_ctx, range_key, now):
    sprint = demo_ctx.sprint(demo_ctx.settings.default_sprint)
    window = sprint.baseline_window() if range_key == "baseline" else sprint.window.window()
    now = now or datetime.now(UTC)
    with demo_ctx.session() as session:
        results = evaluate_goals(session, sprint, window=window, now=now, with_trend=False)
        gates = evaluate_gates(session, sprint, window=window, now=now)
        checked = 0
        for result in [*results, *(c for g in gates for c in (*g.preconditions, *g.verification))]:
            check = find_check(sprint, result.id)
            assert check is not None
            page = metric_rows(
                session,
                check.metric,
                effective_window(window, now),
                check.aggregation,
                check.params,
                limit=1,
            )
            assert row_count(page) == result.samples, (result.id, page.total, result.samples)
            assert result.rows_url and result.rows_url.startswith(f"/api/rows/{sprint.slug}/")
            checked += 1
    assert checked == len(list(_checks(sprint)))
    # The demo is not empty: most numbers stand on rows.
    if range_key == "sprint":
        assert sum(1 for r in results if r.samples) >= 8


def test_lead_time_rows_link_their_pr_and_stages_sum_to_the_total(demo_ctx):
    sprint = demo_ctx.sprint(demo_ctx.settings.default_sprint)
    goal = sprint.goal("ci-lead-time-p50")
    with demo_ctx.session() as session:
        page = metric_rows(
            session, goal.metric, sprint.window.window(), goal.aggregation, goal.params, limit=1000
        )
    assert page.total > 0 and page.kind == "shas"
    slowest = page.rows[0]["seconds"]
    assert all(r["seconds"] <= slowest for r in page.rows)
    for row in page.rows:
        stages = [row[c] for c in ci.STAGE_COLUMNS]
        assert sum(s or 0 for s in stages) == pytest.approx(row["seconds"], abs=1e-6)
        assert all(s is None or s >= 0 for s in stages)
    assert any(r["source_url"] and "/pull/" in r["source_url"] for r in page.rows)


def test_stages_cut_the_interval_and_unknown_moments_fall_into_the_next_stage(engine):
    import pandas as pd
    from sqlalchemy.orm import Session

    from store.models import CiRun, Deployment

    t0 = datetime(2025, 11, 12, 10, 0, tzinfo=UTC)
    with Session(engine) as session:
        session.add_all(
            [
                CiRun(
                    repo="acme/web",
                    run_id=1,
                    run_attempt=1,
                    workflow_name="ci",
                    event="pull_request",
                    head_sha="a" * 40,
                    status="completed",
                    conclusion="success",
                    created_at=t0,
                    run_started_at=t0 + timedelta(minutes=2),
                    updated_at=t0 + timedelta(minutes=9),
                ),
                Deployment(
                    repo="acme/web",
                    deployment_id=7,
                    sha="a" * 40,
                    environment="preview-1",
                    created_at=t0 + timedelta(minutes=10),
                ),
                CiRun(
                    repo="acme/web",
                    run_id=2,
                    run_attempt=1,
                    workflow_name="ci",
                    event="pull_request",
                    head_sha="b" * 40,
                    status="completed",
                    conclusion="failure",
                    created_at=t0,
                    run_started_at=None,
                    updated_at=t0 + timedelta(minutes=5),
                ),
            ]
        )
        session.commit()
        lead = pd.DataFrame(
            [
                ("acme/web", 1, "a" * 40, t0, t0 + timedelta(minutes=14), 840.0, None, ""),
                ("acme/web", 2, "b" * 40, t0, t0 + timedelta(minutes=6), 360.0, None, ""),
            ],
            columns=ci.LEAD_TIME_COLUMNS,
        )
        out = ci.lead_time_stages_frame(session, lead)
    a, b = out.iloc[0], out.iloc[1]
    assert [a.queue_s, a.ci_s, a.handoff_s, a.boot_s] == [120.0, 420.0, 60.0, 240.0]
    # No run start, no success, no deployment: everything is "boot" — still the whole total.
    assert [b.queue_s, b.ci_s, b.handoff_s] == [None, None, None] and b.boot_s == 360.0
    summary = {s.stage: s for s in ci.summarize_stages(out)}
    assert summary["queue"].count == 1 and summary["boot"].count == 2


def test_rows_are_paged_and_never_show_nan(demo_ctx):
    sprint = demo_ctx.sprint(demo_ctx.settings.default_sprint)
    goal = sprint.goal("export-download-no-5xx")
    with demo_ctx.session() as session:
        first = metric_rows(
            session, goal.metric, sprint.window.window(), goal.aggregation, goal.params, limit=5
        )
        second = metric_rows(
            session,
            goal.metric,
            sprint.window.window(),
            goal.aggregation,
            goal.params,
            offset=5,
            limit=5,
        )
    assert first.total == second.total and first.next_offset == 5
    assert {r["event_id"] for r in first.rows}.isdisjoint({r["event_id"] for r in second.rows})
    for row in first.rows + second.rows:
        assert "nan" not in {str(v) for v in row.values()}


def test_empty_store_gives_no_rows_for_every_metric(engine):
    from sqlalchemy.orm import Session

    window = Window(datetime(2025, 11, 10, tzinfo=UTC), datetime(2025, 11, 24, tzinfo=UTC))
    with Session(engine) as session:
        for metric in BUILDERS:
            params = {"policy_services": ["web"]} if metric.startswith("slo.") else {}
            agg = known_metrics()[metric].aggregations[0]
            page = metric_rows(session, metric, window, agg, params)
            assert page.total == 0 and page.rows == [], metric
