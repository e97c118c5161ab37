"""The goal trend: every metric's `daily` equals the metric evaluated day by day, in a number of
statements that does not grow with the number of days."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event

from store.goals import Check, evaluate_goals, trend_windows
from store.metrics import METRICS, Window, known_metrics

DIALECTS = ["demo_ctx", pytest.param("pg_demo_ctx", marks=pytest.mark.postgres)]


def _cases(sprint: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """(metric, aggregation, params) of every sprint check, then every metric × aggregation."""
    checks: list[Check] = list(sprint.goals)
    for gate in sprint.gates:
        checks += [*gate.preconditions, *gate.verification]
    seen = {(c.metric, c.aggregation): c.params for c in checks}
    for metric in METRICS:
        for agg in metric.aggregations:
            seen.setdefault((metric.id, agg), {})
    return [(m, a, p) for (m, a), p in seen.items()]


@contextmanager
def counting(engine: Engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_every_metric_has_a_daily_function():
    assert all(callable(m.daily) for m in known_metrics().values())


@pytest.mark.parametrize("context", DIALECTS)
def test_daily_values_equal_the_metric_evaluated_per_day(context, request):
    ctx = request.getfixturevalue(context)
    sprint = ctx.sprint()
    sprint_window = sprint.window.window()
    # The sprint, its baseline, and a window cut mid-day (a short last day).
    spans = [
        (sprint_window, sprint_window.end),
        (sprint.baseline_window(), sprint.baseline_window().end),
        (sprint_window, sprint_window.start + timedelta(days=5, hours=7, minutes=30)),
    ]
    cases = _cases(sprint)
    assert len(cases) >= len(METRICS)
    compared = 0
    with ctx.session() as session:
        for metric_id, agg, params in cases:
            metric = known_metrics()[metric_id]
            for window, as_of in spans:
                windows = trend_windows(window, as_of, state=metric.state)
                daily = metric.daily(session, windows, agg, params)
                per_day = [metric.fn(session, w, agg, params) for w in windows]
                label = f"{metric_id}/{agg} {window.start:%Y-%m-%d}..{as_of:%m-%d %H:%M}"
                assert [(v.value, v.samples, v.detail) for v in daily] == [
                    (v.value, v.samples, v.detail) for v in per_day
                ], label
                compared += sum(v.value is not None for v in per_day)
    assert compared > 100  # the demo gives most metrics data on most days


def test_the_daily_function_of_a_sum_refuses_windows_that_are_not_consecutive(demo_ctx):
    start = demo_ctx.sprint().window.window().start
    gap = [
        Window(start, start + timedelta(days=1)),
        Window(start + timedelta(days=2), start + timedelta(days=3)),
    ]
    with demo_ctx.session() as session, pytest.raises(ValueError, match="not consecutive"):
        known_metrics()["exports.download_5xx"].daily(session, gap, "value", {})


def test_the_trend_costs_a_bounded_number_of_statements(demo_ctx):
    sprint = demo_ctx.sprint()
    own = sprint.window.window()
    four_weeks = Window(sprint.baseline_window().start, own.end)
    goals = len(sprint.goals)
    counts = {}
    with demo_ctx.session() as session:
        for name, window, trend in [
            ("plain", own, False),
            ("trend", own, True),
            ("trend-28d", four_weeks, True),
        ]:
            with counting(demo_ctx.engine) as statements:
                results = evaluate_goals(
                    session, sprint, window=window, now=own.end, with_trend=trend
                )
            counts[name] = len(statements)
            assert all(len(r.trend) == (window.end - window.start).days for r in results if trend)
    # Measured on the demo (11 goals): 31 statements without the trend, 64 with the 14-day trend
    # (one evaluation per day issued 314). A trend costs about one more evaluation per goal, and
    # twice the days cost no more statements.
    assert counts["trend"] <= 2 * counts["plain"] + goals, counts
    assert counts["trend-28d"] <= counts["trend"] + goals, counts
