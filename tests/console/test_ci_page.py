"""The CI page without a browser: builders from frames, the callbacks on the demo sprint, and the
numbers agreeing with the sprint goals that use the same metric."""

from __future__ import annotations

import importlib
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
from dash import dcc, html

from console.app import create_app
from console.components import ci as view
from console.context import AppContext
from store.goals import evaluate_goals
from store.queries.ci import LEAD_TIME_COLUMNS, QUARANTINE_COLUMNS
from tests.console.test_components import text_of, walk, with_class

T = datetime(2025, 11, 12, 9, tzinfo=UTC)


def lead_times(*rows: tuple[Any, ...]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=LEAD_TIME_COLUMNS)


def page() -> Any:
    return importlib.import_module("console.pages.ci")


def test_trend_has_p50_p95_and_the_15_and_25_minute_target_lines() -> None:
    daily = pd.DataFrame(
        [(date(2025, 11, 12), 600.0, 1200.0, 4)], columns=["day", "p50_s", "p95_s", "count"]
    )

    fig = view.trend_figure(daily, view.CiTargets())

    assert [t.name for t in fig.data] == ["p50", "p95"]
    assert list(fig.data[0].y) == [10.0] and list(fig.data[1].y) == [20.0]
    assert sorted(shape.y0 for shape in fig.layout.shapes) == [15.0, 25.0]


def test_slowest_prs_link_to_github_and_unmapped_shas_say_so() -> None:
    df = lead_times(
        (
            "acme/web",
            7,
            "a" * 40,
            T,
            T + timedelta(minutes=30),
            1800.0,
            "https://github.com/acme/web/pull/7",
            "Shard e2e",
        ),
        ("acme/web", None, "b" * 40, T, T + timedelta(minutes=5), 300.0, None, None),
    )

    table = view.slowest_table(df)

    links = [c for c in walk(table) if isinstance(c, html.A)]
    assert [(a.children, a.href) for a in links] == [("#7", "https://github.com/acme/web/pull/7")]
    rows = [text_of(r) for r in walk(table) if isinstance(r, html.Tr)][1:]
    assert rows[0].startswith("#7 Shard e2e aaaaaaa") and rows[0].endswith("30.0 min")
    assert rows[1].startswith("unmapped")


def test_quarantine_rows_show_owner_status_and_expiry() -> None:
    df = pd.DataFrame(
        [
            ("acme/web", "t::a", None, T, T, T + timedelta(days=14), "c" * 40, True, 2),
            ("acme/web", "t::b", "ana", T, T, T + timedelta(days=1), "d" * 40, False, 0),
        ],
        columns=QUARANTINE_COLUMNS,
    )

    rows = view.quarantine_rows(df)

    assert [(r["test_id"], r["owner"], r["status"], r["expires_at"]) for r in rows] == [
        ("t::a", "unowned", "quarantined", "2025-11-26T09:00:00Z"),
        ("t::b", "ana", "expired", "2025-11-13T09:00:00Z"),
    ]


def test_change_text_names_the_direction_or_the_missing_side() -> None:
    assert view.change_text(1260.0, 876.0) == "−30 % (21.0 min → 14.6 min)"
    assert view.change_text(None, 876.0) == "needs lead times in both windows"


def test_layout_is_a_skeleton_with_page_prefixed_ids(demo_ctx: AppContext) -> None:
    create_app(demo_ctx)

    layout = page().layout()

    ids = [c.id for c in walk(layout) if getattr(c, "id", None)]
    assert ids == ["ci-repo", "ci-loading", "ci-body"]
    assert all(i.startswith("ci-") for i in ids)


def test_demo_sprint_page_shows_goal_numbers_cache_shards_and_quarantine(
    demo_ctx: AppContext,
) -> None:
    create_app(demo_ctx)
    ci = page()
    options, repo = ci.fill_repos("sprint-27", None)

    body = ci.show_ci("sprint-27", "sprint", repo)

    sprint = demo_ctx.sprint("sprint-27")
    with demo_ctx.session() as session:
        goals = {g.id: g for g in evaluate_goals(session, sprint, with_trend=False)}
    assert repo == "acme/web" and {"label": "acme/web", "value": "acme/web"} in options
    strip = text_of(with_class(body, "qd-summary")[0])
    p50 = goals["ci-lead-time-p50"]
    assert f"{p50.value:.1f} min" in strip  # the page and the goal agree on one definition
    assert f"{p50.samples} SHAs with a ready preview" in strip
    assert "before/after: −" in strip  # faster than the baseline
    sections = {getattr(s, "data-section") for s in walk(body) if hasattr(s, "data-section")}
    assert sections == {
        "trend",
        "stages",
        "before-after",
        "slowest",
        "waiting",
        "cache",
        "shards",
        "flaky",
    }
    graphs = {g.id for g in walk(body) if isinstance(g, dcc.Graph)}
    assert graphs == {"ci-trend", "ci-histogram", "ci-before-after", "ci-cache", "ci-shards"}
    text = text_of(body)
    assert "exact-key hits" in text and "slowest/fastest" in text
    assert "tests/shard2/test_checkout.py::test_retry_budget" in str(body.to_plotly_json())


def test_baseline_range_shows_the_before_window(demo_ctx: AppContext) -> None:
    create_app(demo_ctx)

    body = page().show_ci("sprint-27", "baseline", "acme/web")

    assert text_of(body).startswith("acme/web · Baseline (before): 2025-10-27T00:00:00Z")
    assert "No cache lookups reported in this window." in text_of(body)
