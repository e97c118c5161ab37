"""Sprint: the plan live — backlog per epic and week, DoR, risks, calendar — and, with
`?rows=<goal or check id>`, the rows behind that number (the Overview's cards link here).

One evaluation (the Overview's) per selection change; builders in console.components.sprint.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import dash
from dash import Input, Output, dcc, html

from console.callbacks import callback
from console.components import errors
from console.components import sprint as view
from console.runtime import get_context
from console.shell import BASELINE_RANGE, RANGE_STORE, SPRINT_RANGE, SPRINT_STORE
from store.goals import (
    SprintConfigError,
    effective_window,
    evaluate_gates,
    evaluate_goals,
    find_check,
    rows_url,
)
from store.queries.rows import backlog_prs, metric_rows

dash.register_page(__name__, path="/sprint", name="Sprint", title="Quarterdeck — Sprint", order=1)

log = logging.getLogger(__name__)

BODY = "sprint-body"
QUERY = "sprint-query"


def layout(rows: str | None = None, sprint: str | None = None, **_query: Any) -> html.Div:
    """Skeleton only; the query (`rows`, `sprint`) goes to a store for `show_sprint`."""
    return html.Div(
        [
            dcc.Store(id=QUERY, data={"rows": rows, "sprint": sprint}),
            dcc.Loading(
                html.Div(html.P("Reading the sprint…", className="qd-muted"), id=BODY),
                type="dot",
                delay_show=200,
            ),
        ],
        className="qd-page qd-page--sprint",
    )


@callback(
    Output(BODY, "children"),
    Input(SPRINT_STORE, "data"),
    Input(RANGE_STORE, "data"),
    Input(QUERY, "data"),
)
def show_sprint(slug: str | None, range_key: str | None, query: dict[str, Any] | None) -> Any:
    """Evaluate the sprint as the Overview does; show the rows asked for, then the plan."""
    ctx = get_context()
    query = query or {}
    range_key = range_key if range_key in (SPRINT_RANGE, BASELINE_RANGE) else SPRINT_RANGE
    chosen = query.get("sprint") if query.get("sprint") in ctx.sprint_slugs() else slug
    try:
        sprint = ctx.sprint(chosen or ctx.settings.default_sprint)
    except SprintConfigError as exc:
        return errors.config_error_panel(exc.problems)
    window = sprint.baseline_window() if range_key == BASELINE_RANGE else sprint.window.window()
    now = datetime.now(UTC)
    wanted = find_check(sprint, str(query["rows"])) if query.get("rows") else None
    try:
        with ctx.session() as session:
            goals = evaluate_goals(session, sprint, window=window, now=now, with_trend=False)
            gates = evaluate_gates(session, sprint, window=window, now=now)
            prs = backlog_prs(session, [b.id for b in sprint.backlog])
            page = (
                metric_rows(
                    session,
                    wanted.metric,
                    effective_window(window, now),
                    wanted.aggregation,
                    wanted.params,
                    limit=200,
                )
                if wanted is not None
                else None
            )
    except Exception as exc:
        log.exception("sprint page failed for %s", sprint.slug)
        return errors.store_error_panel(errors.store_error_message("Reading the sprint", exc))
    results = {r.id: r for r in goals}
    for gate in gates:
        for c in (*gate.preconditions, *gate.verification):
            results.setdefault(c.id, c)
    parts: list[Any] = [html.H1(sprint.title, className="qd-title")]
    if query.get("rows") and wanted is None:
        parts.append(html.P(f"No goal or check {query['rows']!r} in this sprint.", role="alert"))
    if wanted is not None and page is not None:
        key = "baseline" if range_key == BASELINE_RANGE else "sprint"
        parts.append(
            view.rows_view(results[wanted.id], page, api_url=rows_url(sprint.slug, wanted.id, key))
        )
    parts += [
        view.calendar_section(sprint, now.date()),
        view.backlog_section(sprint, results, prs),
        view.dor_section(sprint, results),
        view.risks_section(sprint, results),
    ]
    return html.Div(parts, className="qd-board")
