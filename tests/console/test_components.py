"""Builders: evaluated results / frames in, Dash components and figures out (no server)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
import pytest
from dash import dcc, html
from dash.development.base_component import Component

from console.components import errors, goals, ingest
from store.goals import CheckResult, GateResult, TrendPoint

# ------------------------------------------------------------------------ component-tree helpers


def walk(node: Any) -> Iterator[Component]:
    """Every component in the tree under ``node`` (depth first)."""
    if isinstance(node, Component):
        yield node
        yield from walk(getattr(node, "children", None))
    elif isinstance(node, list | tuple):
        for child in node:
            yield from walk(child)


def text_of(node: Any) -> str:
    """The visible text under ``node``, pieces joined by single spaces."""
    if isinstance(node, str | int | float):
        return str(node)
    if isinstance(node, Component):
        return text_of(getattr(node, "children", None))
    if isinstance(node, list | tuple):
        return " ".join(t for t in (text_of(c) for c in node) if t)
    return ""


def with_class(node: Any, class_name: str) -> list[Component]:
    """Components under ``node`` whose className contains ``class_name``."""
    return [c for c in walk(node) if class_name in (getattr(c, "className", None) or "").split()]


def result(
    status: str = "met",
    *,
    value: float | None = 13.8,
    unit: str = "min",
    target: dict[str, Any] | None = None,
    reason: str = "13.8 min meets < 15 min",
    trend: list[TrendPoint] | None = None,
    page: str = "/ci",
    check_id: str = "ci-lead-time-p50",
    title: str = "PR→preview median < 15 min",
) -> CheckResult:
    return CheckResult(
        id=check_id,
        title=title,
        metric="ci.pr_preview_lead_time",
        aggregation="p50",
        definition="Time from PR head push to the preview being ready.",
        page=page,
        status=status,  # type: ignore[arg-type]
        value=value,
        unit=unit,
        target=target or {"op": "<", "value": 15.0, "unit": unit},
        samples=42,
        detail="42 SHAs with a ready preview",
        reason=reason,
        epic="EPIC-DV",
        owner="CI/CD Engineer",
        trend=trend if trend is not None else [],
        trend_direction="improving" if trend else "unknown",
    )


TREND = [
    TrendPoint(date(2025, 11, 10), 18.0),
    TrendPoint(date(2025, 11, 11), None),
    TrendPoint(date(2025, 11, 12), 14.2),
]

# ------------------------------------------------------------------------ status and formatting


@pytest.mark.parametrize(
    ("status", "text", "css"),
    [
        ("met", "MET", "qd-status--met"),
        ("at_risk", "AT RISK", "qd-status--at-risk"),
        ("missed", "MISSED", "qd-status--missed"),
        ("no_data", "NO DATA", "qd-status--no-data"),
    ],
)
def test_status_badge_shows_text_and_colour_class_for_each_status(
    status: str, text: str, css: str
) -> None:
    badge = goals.status_badge(status)

    assert badge.children == text
    assert css in badge.className.split()


@pytest.mark.parametrize(
    ("value", "unit", "shown"),
    [
        (13.8, "min", "13.8 min"),
        (99.4, "%", "99.4 %"),
        (100.0, "%", "100 %"),
        (0.0, "count", "0"),
        (3.0, "count", "3"),
        (42.0, "s", "42 s"),
        (48.5, "h", "48.5 h"),
        (0.25, "s", "0.25 s"),
        (None, "min", "—"),
        (float("nan"), "%", "—"),
    ],
)
def test_format_value_writes_the_unit_counts_bare_and_a_dash_for_no_value(
    value: float | None, unit: str, shown: str
) -> None:
    assert goals.format_value(value, unit) == shown


@pytest.mark.parametrize(
    ("target", "shown"),
    [
        ({"op": "<", "value": 15.0, "unit": "min"}, "< 15 min"),
        ({"op": ">=", "value": 100.0, "unit": "%"}, "≥ 100 %"),
        ({"op": "<=", "value": 10.0, "unit": "min"}, "≤ 10 min"),
        ({"op": "==", "value": 0.0, "unit": "count"}, "= 0"),
    ],
)
def test_format_target_uses_comparison_symbols(target: dict[str, Any], shown: str) -> None:
    assert goals.format_target(target) == shown


# ------------------------------------------------------------------------ goal cards


def test_goal_card_shows_value_target_samples_trend_reason_and_definition() -> None:
    card = goals.goal_card(result("at_risk", trend=TREND), pages={})

    shown = text_of(card)
    assert "AT RISK" in shown
    assert "13.8 min" in shown
    assert "< 15 min" in shown
    assert "42 samples" in shown
    assert "Trend: improving" in shown
    assert "13.8 min meets < 15 min" in shown
    assert "EPIC-DV" in shown and "CI/CD Engineer" in shown
    definition = with_class(card, "qd-goal-definition")[0]
    assert isinstance(definition, html.Details)
    assert "Time from PR head push" in text_of(definition)
    assert "qd-status--at-risk" in card.className.split()


def test_no_data_card_is_grey_and_never_green() -> None:
    card = goals.goal_card(
        result("no_data", value=None, reason="no data: 0 SHAs with a ready preview"), pages={}
    )

    classes = " ".join(c.className or "" for c in walk(card) if hasattr(c, "className"))
    assert "qd-status--no-data" in card.className.split()
    assert "qd-status--met" not in classes
    assert "NO DATA" in text_of(card)
    assert "—" in text_of(with_class(card, "qd-goal-value"))
    assert "no data: 0 SHAs with a ready preview" in text_of(card)


def test_goal_card_links_its_area_page_only_when_that_page_is_registered() -> None:
    registered = goals.goal_card(result(), pages={"/ci": goals.PageRef("CI", "/ci")})
    missing = goals.goal_card(result(), pages={})

    links = [c for c in walk(registered) if isinstance(c, dcc.Link)]
    assert [link.href for link in links] == ["/ci"]
    assert not [c for c in walk(missing) if isinstance(c, dcc.Link)]
    assert "CI page" in text_of(with_class(missing, "qd-area-text"))


def test_sparkline_plots_the_daily_values_with_the_target_dashed() -> None:
    fig = goals.sparkline_figure(TREND, 15.0)

    target, daily = fig.data
    assert target.line.dash == "dash"
    assert list(target.y) == [15.0, 15.0]
    assert list(daily.y) == [18.0, None, 14.2]
    assert daily.connectgaps is False


def test_card_without_daily_values_shows_a_note_instead_of_a_chart() -> None:
    card = goals.goal_card(result("no_data", value=None, trend=[]), pages={})

    assert not [c for c in walk(card) if isinstance(c, dcc.Graph)]
    assert "No daily values" in text_of(with_class(card, "qd-sparkline-empty"))


def test_card_with_daily_values_has_a_static_sparkline_without_mode_bar() -> None:
    card = goals.goal_card(result("met", trend=TREND), pages={})

    (graph,) = [c for c in walk(card) if isinstance(c, dcc.Graph)]
    assert graph.config["displayModeBar"] is False


def test_status_summary_counts_goals_per_status() -> None:
    results = [result("met"), result("met"), result("missed"), result("no_data", value=None)]

    strip = goals.status_summary(results)

    counts = {
        getattr(item, "data-status"): text_of(with_class(item, "qd-summary-count"))
        for item in with_class(strip, "qd-summary-item")
    }
    assert counts == {"met": "2", "at_risk": "0", "missed": "1", "no_data": "1"}
    assert "4 goals" in text_of(strip)


# ------------------------------------------------------------------------ promotion gates


def gate(ready: bool, preconditions: list[CheckResult]) -> GateResult:
    return GateResult(
        stage="prod",
        action="Enable decision logs; ramp egress controls",
        rollback="Disable annotations/flags",
        ready=ready,
        preconditions=preconditions,
        verification=[
            result("no_data", value=None, check_id="prod-no-5xx", title="No 5xx on downloads")
        ],
    )


def test_gates_table_shows_blocked_with_the_failing_preconditions_reason() -> None:
    soak = result("met", check_id="stage-soak-48h", title="Stage soak 48 h", reason="72 h meets")
    approvals = result(
        "missed",
        value=0.0,
        unit="count",
        check_id="prod-approvals",
        title="Approvals recorded for prod",
        reason="0 count is not >= 1 count",
    )

    table = goals.gates_table([gate(False, [soak, approvals])])

    (row,) = [c for c in walk(table) if getattr(c, "data-stage", None) == "prod"]
    shown = text_of(row)
    assert "BLOCKED" in shown and "READY" not in shown
    assert "Approvals recorded for prod" in shown
    assert "0 count is not >= 1 count" in shown
    assert "72 h meets" not in shown  # a met precondition needs no reason
    assert "Disable annotations/flags" in shown
    assert with_class(row, "qd-gate--blocked")


def test_gates_table_shows_ready_and_lists_verification_separately() -> None:
    table = goals.gates_table([gate(True, [result("met", check_id="prod-approvals")])])

    cells = [c for c in walk(table) if isinstance(c, html.Td)]
    assert with_class(table, "qd-gate--ready")
    verification = [c for c in cells if "No 5xx on downloads" in text_of(c)]
    assert len(verification) == 1
    assert "PR→preview" not in text_of(verification[0])


def test_sprint_without_gates_says_so() -> None:
    assert "no promotion gates" in text_of(goals.gates_table([]))


# ------------------------------------------------------------------------ error panels


def test_config_error_panel_lists_every_problem_line() -> None:
    problems = [
        "sprint-27.yaml: ci-lead-time-p50: metric: unknown metric 'ci.nope'",
        "sprint-27.yaml: failover-rto: target: Field required",
    ]

    panel = errors.config_error_panel(problems)

    assert [text_of(li) for li in walk(panel) if isinstance(li, html.Li)] == problems
    assert panel.role == "alert"


def test_store_error_message_is_one_line_without_sql() -> None:
    from sqlalchemy.exc import OperationalError

    exc = OperationalError("SELECT *\nFROM goals", {}, Exception("no such table: sync_runs"))

    message = errors.store_error_message("Goal evaluation", exc)

    assert message == "Goal evaluation failed: OperationalError: no such table: sync_runs"


# ------------------------------------------------------------------------ ingest health


def runs_frame(**overrides: Any) -> pd.DataFrame:
    row = {
        "source": "github",
        "started_at": datetime(2025, 11, 20, 10, 0, 0),  # naive, as SQLite returns it
        "finished_at": datetime(2025, 11, 20, 10, 0, 5),
        "status": "failed",
        "rows_stored": 0,
        "rows_duplicate": 2,
        "rows_rejected": 1,
        "error": "HTTP 502 from api.github.com",
        "runs": 7,
    }
    row.update(overrides)
    return pd.DataFrame([row])


@pytest.mark.parametrize(
    ("status", "text", "css"),
    [
        ("ok", "OK", "qd-run--ok"),
        ("partial", "PARTIAL", "qd-run--partial"),
        ("failed", "FAILED", "qd-run--failed"),
        ("running", "RUNNING", "qd-run--running"),
    ],
)
def test_run_status_badge_shows_text_and_colour_class(status: str, text: str, css: str) -> None:
    badge = ingest.run_status_badge(status)

    assert badge.children == text
    assert css in badge.className.split()


def test_runs_table_shows_status_counts_error_and_utc_iso_times() -> None:
    table = ingest.runs_table(runs_frame())

    (row,) = [c for c in walk(table) if getattr(c, "data-source", None) == "github"]
    cells = [text_of(c) for c in row.children]
    assert cells == [
        "github",
        "FAILED",
        "2025-11-20T10:00:00Z",
        "2025-11-20T10:00:05Z",
        "0",
        "2",
        "1",
        "7",
        "HTTP 502 from api.github.com",
    ]


def test_running_collector_has_no_finish_time_yet() -> None:
    table = ingest.runs_table(runs_frame(status="running", finished_at=None, error=None))

    (row,) = [c for c in walk(table) if getattr(c, "data-source", None) == "github"]
    assert [text_of(c) for c in row.children][1:4] == ["RUNNING", "2025-11-20T10:00:00Z", "—"]


def test_format_timestamp_converts_aware_times_to_utc() -> None:
    aware = pd.Timestamp("2025-11-20T12:00:00+02:00")

    assert ingest.format_timestamp(aware) == "2025-11-20T10:00:00Z"
    assert ingest.format_timestamp(datetime(2025, 11, 20, 10, tzinfo=UTC)) == "2025-11-20T10:00:00Z"


def test_empty_frames_show_the_empty_states() -> None:
    empty_runs = pd.DataFrame(columns=["source", "status"])
    empty = pd.DataFrame(columns=["id", "source", "received_at", "item_index", "reason"])

    assert text_of(ingest.runs_table(empty_runs)) == "No collector has run yet"
    assert text_of(ingest.rejects_table(empty)) == "No rejects — every item received was stored"
    assert text_of(ingest.reject_counts_table(pd.DataFrame(columns=["source", "rejects"]))) == (
        "No rejects — every item received was stored"
    )


def test_reject_payload_preview_is_cut_to_300_characters_and_shown_to_operators_only() -> None:
    rejects = pd.DataFrame(
        [
            {
                "id": 9,
                "source": "opa",
                "received_at": datetime(2025, 11, 20, 10),
                "item_index": 3,
                "reason": "missing decision_id",
                "payload": "x" * 1000,
            }
        ]
    )

    table = ingest.rejects_table(rejects, show_payloads=True)
    hidden = ingest.rejects_table(rejects)  # an anonymous reader or a viewer

    assert not [c for c in walk(hidden) if isinstance(c, html.Details)]
    assert "x" * 10 not in text_of(hidden) and ingest.PAYLOADS_HIDDEN in text_of(hidden)
    (details,) = [c for c in walk(table) if isinstance(c, html.Details)]
    (pre,) = [c for c in walk(details) if isinstance(c, html.Pre)]
    assert pre.children == "x" * 300 + "…"
    assert "missing decision_id" in text_of(table)
    assert "3" in [text_of(c) for c in walk(table) if isinstance(c, html.Td)]


def test_reject_counts_list_the_source_with_most_rejects_first() -> None:
    counts = pd.DataFrame(
        [
            {"source": "ci", "rejects": 2, "last_at": datetime(2025, 11, 20)},
            {"source": "opa", "rejects": 5, "last_at": datetime(2025, 11, 21)},
        ]
    )

    table = ingest.reject_counts_table(counts)

    sources = [getattr(c, "data-source") for c in walk(table) if hasattr(c, "data-source")]
    assert sources == ["opa", "ci"]
