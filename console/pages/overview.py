"""Overview: the sprint's goals board and the promotion gates (dev → stage → prod).

Takes the sprint and time range from the shell's stores; one evaluation per selection change.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import dash
from dash import Input, Output, dcc, html

from console.callbacks import callback
from console.components import errors
from console.components import goals as board
from console.runtime import get_context
from console.shell import BASELINE_RANGE, RANGE_OPTIONS, RANGE_STORE, SPRINT_RANGE, SPRINT_STORE
from store.goals import SprintConfigError, evaluate_gates, evaluate_goals

dash.register_page(__name__, path="/", name="Overview", title="Quarterdeck — Overview", order=0)

log = logging.getLogger(__name__)

BOARD = "overview-board"
LOADING = "overview-loading"


def layout() -> html.Div:
    """Skeleton only; `show_board` fills it."""
    return html.Div(
        dcc.Loading(
            html.Div(
                html.P("Evaluating the sprint goals…", className="qd-muted"),
                id=BOARD,
            ),
            id=LOADING,
            type="dot",
            delay_show=200,
        ),
        className="qd-page qd-page--overview",
    )


def registered_pages() -> dict[str, board.PageRef]:
    """The registered pages by path, for the goals' area links."""
    return {
        str(p["path"]): board.PageRef(str(p["name"]), str(p["relative_path"]))
        for p in dash.page_registry.values()
    }


@callback(Output(BOARD, "children"), Input(SPRINT_STORE, "data"), Input(RANGE_STORE, "data"))
def show_board(slug: str | None, range_key: str | None) -> html.Div:
    """Evaluate the selected sprint's goals and gates over the selected window."""
    ctx = get_context()
    range_key = range_key if range_key in (SPRINT_RANGE, BASELINE_RANGE) else SPRINT_RANGE
    try:
        sprint = ctx.sprint(slug or ctx.settings.default_sprint)
    except SprintConfigError as exc:
        return errors.config_error_panel(exc.problems)
    window = sprint.baseline_window() if range_key == BASELINE_RANGE else sprint.window.window()
    now = datetime.now(UTC)
    try:
        with ctx.session() as session:
            goals = evaluate_goals(session, sprint, window=window, now=now)
            gates = evaluate_gates(session, sprint, window=window, now=now)
    except Exception as exc:  # a failing query shows a one-line panel, not a broken page
        log.exception("goal evaluation failed for sprint %s", sprint.slug)
        return errors.store_error_panel(errors.store_error_message("Goal evaluation", exc))
    label = next(str(o["label"]) for o in RANGE_OPTIONS if o["value"] == range_key)
    return board.overview_board(
        sprint_title=sprint.title,
        window=window,
        range_label=label,
        goals=goals,
        gates=gates,
        pages=registered_pages(),
        evaluated_at=now,
    )
