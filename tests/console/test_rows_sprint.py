"""The rows API behind every goal, one status per number (CI page = Overview), the Sprint page."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from console.app import create_app
from console.components import ci as ci_view
from console.components import sprint as sprint_view
from store.goals import evaluate_gates, evaluate_goals
from store.queries.ci import summarize_lead_times
from store.queries.rows import backlog_prs


@pytest.fixture
def demo_client(demo_ctx):
    return create_app(demo_ctx).server.test_client()


def _walk(component):  # type: ignore[no-untyped-def]
    yield component
    children = getattr(component, "children", None)
    if isinstance(children, list | tuple):
        for child in children:
            yield from _walk(child)
    elif children is not None:
        yield from _walk(children)


def _attr(component, name):  # type: ignore[no-untyped-def]
    return getattr(component, name.replace("-", "_"), None) or getattr(
        component, "_data_attrs", {}
    ).get(name)


def test_rows_api_returns_exactly_samples_rows_for_every_goal(demo_client, demo_ctx):
    goals = demo_client.get("/api/goals").get_json()["goals"]
    sprint = demo_ctx.sprint()
    with demo_ctx.session() as session:
        results = {r.id: r for r in evaluate_goals(session, sprint, with_trend=False)}
    for goal in goals:
        url = goal["rows_url"]  # the API names the rows behind each number
        assert url == results[goal["id"]].rows_url, goal["id"]
        body = demo_client.get(url + "?limit=1000").get_json()
        assert body["samples"] == goal["samples"] and body["status"] == goal["status"], goal["id"]
        counted = body["weight_sum"] if body["weight"] else body["total"]
        assert counted == goal["samples"], goal["id"]
        seen = len(body["rows"])
        while body["next"]:
            body = demo_client.get(body["next"]).get_json()
            seen += len(body["rows"])
        assert seen == body["total"]


def test_rows_api_refuses_bad_input_with_a_clear_4xx(demo_client):
    assert demo_client.get("/api/rows/nope/ci-lead-time-p50").status_code == 404
    assert demo_client.get("/api/rows/sprint-27/nope").status_code == 404
    bad = demo_client.get("/api/rows/sprint-27/ci-lead-time-p50?limit=0")
    assert bad.status_code == 400 and "limit" in bad.get_json()["error"]
    assert demo_client.get("/api/rows/sprint-27/ci-lead-time-p50?range=x").status_code == 400


def test_ci_page_headline_status_is_the_overview_status(demo_ctx):
    sprint = demo_ctx.sprint()
    now = datetime.now(UTC)
    with demo_ctx.session() as session:
        goals = evaluate_goals(session, sprint, now=now, with_trend=False)
    by_agg = {g.aggregation: g for g in goals if g.metric == "ci.pr_preview_lead_time"}
    summary = summarize_lead_times(__import__("pandas").DataFrame({"seconds": [1.0]}))
    strip = ci_view.summary_strip(
        summary, summary, 0, ci_view.CiTargets(900.0, 1500.0), goals=by_agg
    )
    shown = {
        getattr(c, "__dict__", {}).get("data-figure"): getattr(c, "__dict__", {}).get("data-status")
        for c in _walk(strip)
        if getattr(c, "__dict__", {}).get("data-figure") in ("p50", "p95")
    }
    assert shown == {"p50": by_agg["p50"].status, "p95": by_agg["p95"].status}
    other = ci_view.summary_strip(summary, summary, 0, ci_view.CiTargets(900.0, 1500.0))
    texts = [c for c in _walk(other) if isinstance(c, str)]
    assert "NOT THE GOAL" in texts


def test_sprint_page_shows_17_items_in_6_epics_dor_risks_and_calendar(demo_ctx):
    sprint = demo_ctx.sprint()
    with demo_ctx.session() as session:
        goals = evaluate_goals(session, sprint, with_trend=False)
        gates = evaluate_gates(session, sprint)
        prs = backlog_prs(session, [b.id for b in sprint.backlog])
    results = {r.id: r for r in goals}
    for gate in gates:
        for c in (*gate.preconditions, *gate.verification):
            results.setdefault(c.id, c)
    backlog = sprint_view.backlog_section(sprint, results, prs)
    items = [c for c in _walk(backlog) if getattr(c, "__dict__", {}).get("data-item")]
    epics = [c for c in _walk(backlog) if getattr(c, "__dict__", {}).get("data-epic")]
    assert len(items) == 17 and len(epics) == 6
    assert {c.__dict__["data-state"] for c in items} <= {"done", "in progress", "not started"}
    dor = [
        c
        for c in _walk(sprint_view.dor_section(sprint, results))
        if getattr(c, "__dict__", {}).get("data-kind")
    ]
    assert len(dor) == 4 and sum(c.__dict__["data-kind"] == "automatic" for c in dor) == 2
    risks = [
        c
        for c in _walk(sprint_view.risks_section(sprint, results))
        if getattr(c, "__dict__", {}).get("data-risk")
    ]
    assert len(risks) == 4
    cal = sprint_view.calendar_section(sprint, date(2025, 11, 18))
    assert "3 day(s) to the release cut (2025-11-21)" in str(cal)
