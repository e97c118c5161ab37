"""Policy: decision search (server-side paged grid + detail), allow/deny over time with bundle
pins, decision-log latency per instance, drift (instances × bundles) and bundle signatures.

The grid uses ag-grid's infinite row model: each block is one SQL query (`decisions_block`).
A new search replaces the grid under a new pattern-matching id, which drops ag-grid's block
cache, so results never mix two searches.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

import dash
import dash_ag_grid as dag
from dash import ALL, MATCH, Input, Output, State, dcc, html, no_update

from console.callbacks import callback
from console.components import errors
from console.components import policy as view
from console.runtime import get_context
from console.shell import BASELINE_RANGE, RANGE_STORE, SPRINT_STORE
from store.goals import SprintConfigError
from store.metrics import Window
from store.queries import decision_filter as search
from store.queries.policy import (
    DecisionFilter,
    SearchError,
    StaleRule,
    allow_deny_frame,
    bundle_revisions_frame,
    decisions_block,
    delivery_frame,
    drift_frame,
    get_decision,
    latency_by_instance_frame,
    newest_decision_at,
    pin_changes_frame,
    upload_cadence_frame,
)

dash.register_page(__name__, path="/policy", name="Policy", title="Quarterdeck — Policy", order=20)

log = logging.getLogger(__name__)

SEARCH = "policy-search"
SINCE = "policy-since"
UNTIL = "policy-until"
VERDICT = "policy-verdict"
SEARCH_BUTTON = "policy-search-button"
SEARCH_ERROR = "policy-search-error"
SEARCH_RANGE = "policy-search-range"
DELIVERY = "policy-delivery"
QUERY = "policy-query"
GRID_HOLDER = "policy-grid-holder"
GRID = "policy-grid"
DETAIL = "policy-detail"
CHART = "policy-allow-deny"
LATENCY = "policy-latency"
DRIFT = "policy-drift"
REVISIONS = "policy-revisions"

VERDICT_OPTIONS = [
    {"label": "All", "value": "all"},
    {"label": "Allow", "value": "allow"},
    {"label": "Deny", "value": "deny"},
]
BLOCK_SIZE = 100


def _section(title: str, body_id: str, note: str = "") -> html.Section:
    return html.Section(
        [
            html.H2(title, className="qd-section-title"),
            html.P(note, className="qd-muted") if note else None,
            dcc.Loading(html.Div(html.P("Loading…", className="qd-muted"), id=body_id)),
        ],
        className="qd-section",
    )


def layout() -> html.Div:
    """Skeleton only; the callbacks fill every part."""
    return html.Div(
        [
            html.H1("Policy", className="qd-title"),
            html.Section(
                [
                    html.H2("Decision search", className="qd-section-title"),
                    html.Div(
                        [
                            dcc.Input(
                                id=SEARCH,
                                type="text",
                                placeholder="e.g. verdict:deny path:acme/exports/* ana",
                                debounce=True,
                                style={"flex": "3 1 420px", "minWidth": "260px"},
                            ),
                            dcc.Input(
                                id=SINCE,
                                type="text",
                                placeholder="since (YYYY-MM-DD)",
                                debounce=True,
                                style={"flex": "0 0 170px", "width": "170px"},
                            ),
                            dcc.Input(
                                id=UNTIL,
                                type="text",
                                placeholder="until (YYYY-MM-DD)",
                                debounce=True,
                                style={"flex": "0 0 170px", "width": "170px"},
                            ),
                            dcc.RadioItems(
                                id=VERDICT,
                                options=VERDICT_OPTIONS,
                                value="all",
                                inline=True,
                                style={"flex": "0 0 auto", "whiteSpace": "nowrap"},
                                labelStyle={"display": "inline-block", "marginRight": "10px"},
                            ),
                            html.Button("Search", id=SEARCH_BUTTON, n_clicks=0),
                        ],
                        className="policy-controls",
                        style={"display": "flex", "gap": "8px", "alignItems": "center"},
                    ),
                    html.Div(id=SEARCH_ERROR, className="policy-search-error", role="alert"),
                    html.P(id=SEARCH_RANGE, className="qd-muted policy-search-range"),
                    html.P(
                        "Fields: "
                        + ", ".join(f"{k}:…" for k in search.SEARCH_KEYS)
                        + "; other words are full-text matched in input and result "
                        "(all must occur; word* for a prefix). Without since:/until:, the range "
                        "named below.",
                        className="qd-muted",
                    ),
                    dcc.Store(id=QUERY),
                    html.Div(id=GRID_HOLDER),
                    html.Div(view.decision_detail(None), id=DETAIL),
                ],
                className="qd-section",
            ),
            _section(
                "Allow / deny over time",
                CHART,
                "Per policy path and day; dashed lines mark bundle pins.",
            ),
            _section(
                "Decision-log latency",
                LATENCY,
                "received_at − timestamp per decision; target p99 < 60 s.",
            ),
            _section(
                "Drift",
                DRIFT,
                "Latest status per instance (its identity label) and bundle vs its pin; "
                "instances silent beyond their reporting interval are listed apart as stale.",
            ),
            _section(
                "Decision-log delivery",
                DELIVERY,
                "Per instance, from its status reports: the decision_logs plugin, upload errors, "
                "OPA's drop counters, and what to change.",
            ),
            _section("Bundle revisions", REVISIONS, "Signature verified as OPA verifies it."),
        ],
        className="qd-page qd-page--policy",
    )


def _window(slug: str | None, range_key: str | None) -> Window:
    ctx = get_context()
    sprint = ctx.sprint(slug or ctx.settings.default_sprint)
    return sprint.baseline_window() if range_key == BASELINE_RANGE else sprint.window.window()


def _filter_json(filters: DecisionFilter) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in vars(filters).items()}


def _filter_from(data: dict[str, Any]) -> DecisionFilter:
    values = dict(data)
    for key in ("start", "end"):
        if values.get(key):
            values[key] = datetime.fromisoformat(values[key])
    return DecisionFilter(**values)


@callback(
    Output(QUERY, "data"),
    Output(SEARCH_ERROR, "children"),
    Output(SEARCH_RANGE, "children"),
    Input(SEARCH, "value"),
    Input(SINCE, "value"),
    Input(UNTIL, "value"),
    Input(VERDICT, "value"),
    Input(SEARCH_BUTTON, "n_clicks"),
    Input(SPRINT_STORE, "data"),
    Input(RANGE_STORE, "data"),
)
def parse_query(
    text: str | None,
    since: str | None,
    until: str | None,
    verdict: str | None,
    _clicks: int | None,
    slug: str | None,
    range_key: str | None,
) -> tuple[Any, Any, Any]:
    """Turn the controls into a query, or say what is wrong next to them (and which range)."""
    parsed = search.parse_search_text(text, since=since or "", until=until or "")
    if parsed.errors:
        return no_update, [html.P(msg) for msg in parsed.errors.values()], no_update
    filters = parsed.filters
    values = _filter_json(filters)
    if verdict in ("allow", "deny") and filters.allowed is None:
        values["allowed"] = verdict == "allow"
    shown = "Showing the range typed in since:/until:."
    if filters.start is None and filters.end is None:
        try:
            window = _window(slug, range_key)
            with get_context().session() as session:
                newest = newest_decision_at(session)
        except SprintConfigError as exc:
            return no_update, [html.P(p) for p in exc.problems], no_update
        except Exception:
            log.exception("newest decision lookup failed")
            newest = None
        start, end, shown = view.default_search_range(
            window.start, window.end, newest, datetime.now(UTC)
        )
        values["start"], values["end"] = start.isoformat(), end.isoformat()
    return values, None, shown


@callback(Output(GRID_HOLDER, "children"), Input(QUERY, "data"))
def show_grid(query: dict[str, Any] | None) -> Any:
    """A fresh grid for each query (its id carries the query's hash)."""
    if query is None:
        return no_update
    generation = hashlib.sha256(json.dumps(query, sort_keys=True).encode()).hexdigest()[:12]
    return dag.AgGrid(
        id={"type": GRID, "query": generation},
        columnDefs=view.GRID_COLUMNS,
        defaultColDef={"sortable": False, "resizable": True},
        rowModelType="infinite",
        getRowId="params.data.decision_id",
        dashGridOptions={
            "rowSelection": {
                "mode": "singleRow",
                "checkboxes": False,
                "enableClickSelection": True,
            },
            "cacheBlockSize": BLOCK_SIZE,
            "maxBlocksInCache": 20,
            "infiniteInitialRowCount": 1,
        },
        style={"height": "420px"},
        className="ag-theme-alpine policy-grid",
    )


@callback(
    Output({"type": GRID, "query": MATCH}, "getRowsResponse"),
    Input({"type": GRID, "query": MATCH}, "getRowsRequest"),
    State(QUERY, "data"),
    prevent_initial_call=True,
)
def fetch_rows(request: dict[str, Any] | None, query: dict[str, Any] | None) -> Any:
    """Answer one block request of the grid with one SQL query."""
    if not request or query is None:
        return no_update
    start = int(request.get("startRow") or 0)
    end = int(request.get("endRow") or start + BLOCK_SIZE)
    try:
        with get_context().session() as session:
            rows, more = decisions_block(
                session, filters=_filter_from(query), offset=start, limit=end - start
            )
    except SearchError as exc:
        log.info("search refused: %s", exc)
        return {"rowData": [], "rowCount": 0}
    except Exception:
        log.exception("decision search failed")
        return {"rowData": [], "rowCount": start}
    data = view.grid_rows(rows)
    return {"rowData": data, "rowCount": None if more else start + len(data)}


@callback(
    Output(DETAIL, "children"),
    Input({"type": GRID, "query": ALL}, "cellClicked"),
    prevent_initial_call=True,
)
def show_detail(clicks: list[dict[str, Any] | None]) -> Any:
    """Open the clicked decision."""
    clicked = next((c for c in clicks if c), None)
    if not clicked or not clicked.get("rowId"):
        return no_update
    try:
        with get_context().session() as session:
            decision = get_decision(session, str(clicked["rowId"]))
    except Exception as exc:
        log.exception("reading a decision failed")
        return errors.store_error_panel(errors.store_error_message("Reading the decision", exc))
    return view.decision_detail(decision)


@callback(Output(CHART, "children"), Input(SPRINT_STORE, "data"), Input(RANGE_STORE, "data"))
def show_chart(slug: str | None, range_key: str | None) -> Any:
    """Allow/deny per path and day over the selected window, pins as annotations."""
    try:
        window = _window(slug, range_key)
        with get_context().session() as session:
            series = allow_deny_frame(session, window=window)
            pins = pin_changes_frame(session, window=window)
    except SprintConfigError as exc:
        return errors.config_error_panel(exc.problems)
    except Exception as exc:
        log.exception("allow/deny query failed")
        return errors.store_error_panel(errors.store_error_message("Reading decisions", exc))
    if series.empty:
        return html.P("No decisions in this time range.", className="qd-muted")
    return dcc.Graph(figure=view.allow_deny_figure(series, pins), config={"displayModeBar": False})


@callback(Output(LATENCY, "children"), Input(SPRINT_STORE, "data"), Input(RANGE_STORE, "data"))
def show_latency(slug: str | None, range_key: str | None) -> Any:
    """Latency p50/p99 per instance and the upload-cadence warning."""
    try:
        window = _window(slug, range_key)
        with get_context().session() as session:
            latency = latency_by_instance_frame(session, window=window)
            cadence = upload_cadence_frame(session, window=window)
    except SprintConfigError as exc:
        return errors.config_error_panel(exc.problems)
    except Exception as exc:
        log.exception("latency query failed")
        return errors.store_error_panel(errors.store_error_message("Reading latency", exc))
    if latency.empty:
        return html.P("No decisions in this time range: latency unknown.", className="qd-muted")
    return view.latency_table(latency, cadence)


@callback(
    Output(DRIFT, "children"),
    Output(REVISIONS, "children"),
    Output(DELIVERY, "children"),
    Input(SPRINT_STORE, "data"),
    Input(RANGE_STORE, "data"),
)
def show_drift(slug: str | None, range_key: str | None) -> tuple[Any, Any, Any]:
    """Drift as of the window's end (or now, if earlier), decision-log delivery, the registry."""
    try:
        window = _window(slug, range_key)
        as_of = min(window.end, datetime.now(UTC))
        opa = get_context().settings.opa
        rule = StaleRule(intervals=opa.stale_after_intervals, min_silence_s=opa.stale_min_s)
        with get_context().session() as session:
            drift = drift_frame(session, as_of=as_of, stale=rule)
            revisions = bundle_revisions_frame(session)
            delivery = delivery_frame(session, as_of=as_of, since=window.start)
    except SprintConfigError as exc:
        panel = errors.config_error_panel(exc.problems)
        return panel, panel, panel
    except Exception as exc:
        log.exception("drift query failed")
        panel = errors.store_error_panel(errors.store_error_message("Reading drift", exc))
        return panel, panel, panel
    drift_view: Any = (
        view.drift_table(drift)
        if not drift.empty
        else html.P("No OPA status reports yet: drift unknown.", className="qd-muted")
    )
    revisions_view: Any = (
        view.revisions_table(revisions)
        if not revisions.empty
        else html.P("No bundle revisions registered.", className="qd-muted")
    )
    delivery_view: Any = (
        view.delivery_table(delivery)
        if not delivery.empty
        else html.P("No OPA status reports in this window.", className="qd-muted")
    )
    return drift_view, revisions_view, delivery_view
