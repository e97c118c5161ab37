"""Pages without a browser: layouts render without arguments, callbacks called directly, and the
Flask test client answers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dash
import pytest
from dash import Dash, html

from console.app import create_app
from console.context import AppContext
from console.shell import choose, sprint_options
from store.ingest import IngestResult, record_rejects, record_sync_run
from store.migrate import upgrade
from tests.conftest import make_settings
from tests.console.test_components import text_of, walk, with_class

SPRINT_GOALS = 11


@pytest.fixture
def app(ctx: AppContext) -> Dash:
    return create_app(ctx)


@pytest.fixture
def demo_app(demo_ctx: AppContext) -> Dash:
    return create_app(demo_ctx)


def page_module(name: str) -> Any:
    """The page module as Dash loaded it (import after `create_app`, never before)."""
    import importlib

    return importlib.import_module(f"console.pages.{name}")


def goal_statuses(board: Any) -> dict[str, str]:
    return {
        getattr(card, "data-goal"): getattr(card, "data-status")
        for card in with_class(board, "qd-goal")
    }


def test_every_page_layout_renders_without_arguments(app: Dash) -> None:
    layouts = {page["path"]: page["layout"]() for page in dash.page_registry.values()}

    assert {"/", "/ingest-health"} <= set(layouts)
    for layout in layouts.values():
        assert isinstance(layout, html.Div)
        assert layout.to_plotly_json()
    assert [c.id for c in walk(layouts["/"]) if getattr(c, "id", None)] == [
        "overview-loading",
        "overview-board",
    ]


def test_pages_are_loaded_once_as_console_pages_modules(app: Dash) -> None:
    modules = sorted(page["module"] for page in dash.page_registry.values())

    assert "console.pages.overview" in modules
    assert "console.pages.ingest_health" in modules


def test_navigation_lists_pages_in_order(app: Dash) -> None:
    from console import shell

    names = [text_of(link) for link in with_class(shell.layout(), "qd-nav-link")]

    assert names[0] == "Overview"
    assert names.index("Overview") < names.index("Ingest health")


def test_overview_on_an_empty_store_shows_no_data_for_every_goal(app: Dash) -> None:
    board = page_module("overview").show_board("sprint-27", "sprint")

    statuses = goal_statuses(board)
    assert len(statuses) == SPRINT_GOALS
    assert set(statuses.values()) == {"no_data"}
    assert text_of(board).count("no data:") >= SPRINT_GOALS


def test_overview_without_a_selection_yet_uses_the_default_sprint_window(demo_app: Dash) -> None:
    board = page_module("overview").show_board(None, None)

    subtitle = text_of(with_class(board, "qd-subtitle"))
    assert "Sprint window: 2025-11-10 00:00 UTC → 2025-11-24 00:00 UTC" in subtitle


def test_overview_baseline_range_evaluates_the_baseline_window(demo_app: Dash) -> None:
    board = page_module("overview").show_board("sprint-27", "baseline")

    subtitle = text_of(with_class(board, "qd-subtitle"))
    assert "Baseline (before): 2025-10-27 00:00 UTC → 2025-11-10 00:00 UTC" in subtitle


def test_overview_shows_the_promotion_gates_in_order_with_prod_blocked(demo_app: Dash) -> None:
    board = page_module("overview").show_board("sprint-27", "sprint")

    rows = {getattr(c, "data-stage"): c for c in walk(board) if hasattr(c, "data-stage")}
    assert list(rows) == ["dev", "stage", "prod"]
    assert "Promotion gates (dev → stage → prod)" in text_of(board)
    prod = text_of(rows["prod"])
    assert "BLOCKED" in prod
    assert "Approvals recorded for prod" in prod
    assert "no guarded action recorded for prod" in prod  # why the precondition fails


BAD_SPRINT = """\
slug: sprint-27
title: Broken sprint
window: {start: "2025-11-10T00:00:00Z", end: "2025-11-24T00:00:00Z"}
goals:
  - id: ci-lead-time-p50
    title: lead time
    epic: EPIC-DV
    owner: CI
    metric: ci.no_such_metric
    target: {op: "<", value: 15, unit: min}
  - id: failover-rto
    title: RTO
    epic: EPIC-MR
    owner: Platform
    metric: failover.rto
    aggregation: latest
"""


@pytest.fixture
def bad_sprint_ctx(tmp_path: Path) -> Iterator[AppContext]:
    sprints = tmp_path / "data" / "sprints"
    sprints.mkdir(parents=True)
    (sprints / "sprint-27.yaml").write_text(BAD_SPRINT, encoding="utf-8")
    context = AppContext.from_settings(make_settings(tmp_path, data_dir=tmp_path / "data"))
    upgrade(context.engine)
    yield context
    context.engine.dispose()


def test_invalid_sprint_file_shows_every_problem_line_and_no_traceback(
    bad_sprint_ctx: AppContext,
) -> None:
    create_app(bad_sprint_ctx)

    panel = page_module("overview").show_board("sprint-27", "sprint")

    problems = [text_of(li) for li in walk(panel) if isinstance(li, html.Li)]
    assert len(problems) == 2
    assert any(
        "ci-lead-time-p50: metric: unknown metric 'ci.no_such_metric'" in p for p in problems
    )
    assert any("failover-rto: target" in p for p in problems)
    assert "The sprint file is invalid" in text_of(panel)
    assert "Traceback" not in text_of(panel)


def test_missing_sprint_file_is_shown_as_a_problem(app: Dash) -> None:
    panel = page_module("overview").show_board("sprint-99", "sprint")

    assert "no such sprint file" in text_of(panel)


def test_unreadable_store_shows_a_one_line_error(tmp_path: Path) -> None:
    unmigrated = AppContext.from_settings(make_settings(tmp_path))  # no tables
    create_app(unmigrated)

    overview = page_module("overview").show_board("sprint-27", "sprint")
    ingest = page_module("ingest_health").show_ingest_health(0)

    for panel in (overview, ingest):
        (message,) = [c for c in walk(panel) if isinstance(c, html.P)]
        assert "failed: OperationalError: no such table" in message.children
        assert "\n" not in message.children
    unmigrated.engine.dispose()


def test_ingest_health_on_an_empty_store_shows_both_empty_states(app: Dash) -> None:
    body = page_module("ingest_health").show_ingest_health(0)

    shown = text_of(body)
    assert "No collector has run yet" in shown
    assert "No rejects — every item received was stored" in shown


def test_ingest_health_shows_last_runs_and_newest_rejects_first(ctx: AppContext, app: Dash) -> None:
    with ctx.session() as session:
        start = datetime(2025, 11, 20, 10, tzinfo=UTC)
        record_sync_run(session, source="opa", started_at=start, result=IngestResult(stored=5))
        record_sync_run(
            session,
            source="opa",
            started_at=start.replace(hour=11),
            finished_at=start.replace(hour=11, second=3),
            result=IngestResult(stored=3, duplicates=1, rejected=2),
        )
        record_rejects(session, source="opa", rejects=[(0, "older: missing decision_id", {"a": 1})])
        record_rejects(session, source="opa", rejects=[(4, "newer: bad timestamp", {"b": 2})])

    body = page_module("ingest_health").show_ingest_health(1)

    (runs_table,) = with_class(body, "qd-runs")
    (run,) = [c for c in walk(runs_table) if getattr(c, "data-source", None) == "opa"]
    cells = [text_of(c) for c in run.children]
    assert cells[:8] == [
        "opa",
        "PARTIAL",
        "2025-11-20T11:00:00Z",
        "2025-11-20T11:00:03Z",
        "3",
        "1",
        "2",
        "2",
    ]
    reasons = [text_of(c) for c in with_class(body, "qd-reject-reason")]
    assert reasons == ["newer: bad timestamp", "older: missing decision_id"]
    assert "2 " in text_of(with_class(body, "qd-reject-counts"))


def test_flask_client_serves_the_pages_and_health(app: Dash) -> None:
    client = app.server.test_client()

    assert client.get("/").status_code == 200
    assert client.get("/ingest-health").status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/_dash-layout").status_code == 200


def test_page_markup_loads_no_external_urls(app: Dash) -> None:
    client = app.server.test_client()

    index = client.get("/").get_data(as_text=True)

    assert "quarterdeck.css" in index
    for marker in ("https://", "http://", "//cdn", "unpkg", "jsdelivr"):
        assert f'src="{marker}' not in index and f'href="{marker}' not in index


@pytest.mark.parametrize(
    ("chosen", "stored", "expected"),
    [
        ("sprint-28", "sprint-27", "sprint-28"),  # the user's choice wins
        (None, "sprint-28", "sprint-28"),  # the session remembers
        (None, None, "sprint-27"),  # first visit: the default
        (None, "gone", "sprint-27"),  # a remembered sprint whose file is gone
    ],
)
def test_shell_selection_prefers_choice_then_session_then_default(
    chosen: str | None, stored: str | None, expected: str
) -> None:
    assert choose(chosen, stored, ["sprint-27", "sprint-28"], "sprint-27") == expected


def test_sprint_options_keep_a_missing_default_selectable() -> None:
    options = sprint_options(["sprint-28"], "sprint-27")

    assert [o["value"] for o in options] == ["sprint-28", "sprint-27"]
    assert options[-1]["label"] == "sprint-27 (no file)"
