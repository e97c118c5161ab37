"""CI: PR→preview lead time (trend, distribution, before/after, slowest PRs, SHAs waiting), cache
hit ratio, shard balance and the flaky-test quarantine, for the shell's sprint and time range.

One read (`ci_page_data`) and one builder (`ci_view`) per selection change.
"""

from __future__ import annotations

import logging
from typing import Any

import dash
from dash import Input, Output, State, dcc, html

from console.callbacks import callback
from console.components import ci as view
from console.components import errors
from console.runtime import get_context
from console.shell import BASELINE_RANGE, RANGE_OPTIONS, RANGE_STORE, SPRINT_RANGE, SPRINT_STORE
from store.goals import UNIT_FACTORS, SprintConfigError, evaluate_goals
from store.metrics import get_metric
from store.queries.ci import ci_page_data, list_repos, utc_now

dash.register_page(__name__, path="/ci", name="CI", title="Quarterdeck — CI", order=10)

log = logging.getLogger(__name__)

REPO = "ci-repo"
BODY = "ci-body"
LOADING = "ci-loading"
METRIC = "ci.pr_preview_lead_time"
# Seconds per target unit (UNIT_FACTORS maps base values to the unit: 1 s = 1/60 min).
UNIT_SECONDS = {unit: 1 / factor for unit, (base, factor) in UNIT_FACTORS.items() if base == "s"}


def layout() -> html.Div:
    """Skeleton only; `fill_repos` and `show_ci` fill it."""
    return html.Div(
        [
            html.H1("CI velocity", className="qd-title"),
            html.Label(
                [
                    html.Span("Repository", className="qd-selector-label"),
                    dcc.Dropdown(id=REPO, options=[], clearable=False, searchable=True),
                ],
                className="qd-selector",
                style={"maxWidth": "360px"},
            ),
            dcc.Loading(
                html.Div(html.P("Reading CI data…", className="qd-muted"), id=BODY),
                id=LOADING,
                type="dot",
                delay_show=200,
            ),
        ],
        className="qd-page qd-page--ci",
    )


def _goal_repo(slug: str | None) -> str | None:
    """The repository the sprint's lead-time goals are measured on (the top repo)."""
    ctx = get_context()
    try:
        sprint = ctx.sprint(slug or ctx.settings.default_sprint)
    except SprintConfigError:
        return None
    repos = {g.params.get("repo") for g in sprint.goals if g.metric == METRIC}
    repos.discard(None)
    return str(next(iter(repos))) if len(repos) == 1 else None


@callback(
    Output(REPO, "options"),
    Output(REPO, "value"),
    Input(SPRINT_STORE, "data"),
    State(REPO, "value"),
)
def fill_repos(slug: str | None, chosen: str | None) -> tuple[list[dict[str, str]], str]:
    """List the repositories with CI data; keep the choice, else the sprint goals' repo."""
    try:
        with get_context().session() as session:
            repos = list_repos(session)
    except Exception:
        log.exception("listing CI repositories failed")
        repos = []
    if chosen is not None and (chosen == "" or chosen in repos):
        return view.repo_options(repos), chosen
    default = _goal_repo(slug)
    return view.repo_options(repos), default if default in repos else ""


@callback(
    Output(BODY, "children"),
    Input(SPRINT_STORE, "data"),
    Input(RANGE_STORE, "data"),
    Input(REPO, "value"),
)
def show_ci(slug: str | None, range_key: str | None, repo: str | None) -> Any:
    """Read the CI data for the sprint window (or its baseline) and build the page body."""
    ctx = get_context()
    range_key = range_key if range_key in (SPRINT_RANGE, BASELINE_RANGE) else SPRINT_RANGE
    try:
        sprint = ctx.sprint(slug or ctx.settings.default_sprint)
    except SprintConfigError as exc:
        return errors.config_error_panel(exc.problems)
    baseline = sprint.baseline_window()
    window = baseline if range_key == BASELINE_RANGE else sprint.window.window()
    now = utc_now()
    settings = ctx.settings.github
    try:
        with ctx.session() as session:
            data = ci_page_data(
                session,
                window=window,
                baseline=baseline,
                as_of=now,
                repo=repo or None,
                preview_pattern=settings.preview_environment_pattern,
            )
            # The goals' own evaluation (as on the Overview) for the figures that measure them.
            goals = {
                g.aggregation: g
                for g in evaluate_goals(session, sprint, window=window, now=now, with_trend=False)
                if g.metric == METRIC
                and (repo or None) == sprint.goal(g.id).params.get("repo")
                and sprint.goal(g.id).params.get("preview_pattern")
                in (None, settings.preview_environment_pattern)
            }
    except Exception as exc:  # a failing query shows a one-line panel, not a broken page
        log.exception("CI page query failed")
        return errors.store_error_panel(errors.store_error_message("Reading CI data", exc))
    label = next(str(o["label"]) for o in RANGE_OPTIONS if o["value"] == range_key)
    return view.ci_view(
        data,
        range_label=label,
        repo=repo or None,
        targets=view.targets_from_goals(sprint.goals, UNIT_SECONDS),
        definition=get_metric(METRIC).definition,
        read_at=now,
        quarantine_days=settings.quarantine_days,
        goals=goals,
    )
