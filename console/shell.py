"""The frame around every page: header, navigation, sprint and time-range selectors, shared stores.

`layout()` does no I/O (Dash calls it with no arguments on the first request); the sprint options
come from a callback. The selection lives in the session-storage stores `shell-sprint-store` and
`shell-range-store`, which pages take as inputs.
"""

from __future__ import annotations

from typing import Any

import dash
from dash import ALL, Dash, Input, Output, dcc, html, no_update

from console.components.html_attrs import aria_attrs
from console.runtime import get_context

SPRINT = "shell-sprint"
RANGE = "shell-range"
SPRINT_STORE = "shell-sprint-store"
RANGE_STORE = "shell-range-store"
LOCATION = "shell-location"
NAV_LINK = "shell-nav-link"
INBOX_COUNT = "shell-inbox-count"

SPRINT_RANGE = "sprint"
BASELINE_RANGE = "baseline"
RANGE_OPTIONS = [
    {"label": "Sprint window", "value": SPRINT_RANGE},
    {"label": "Baseline (before)", "value": BASELINE_RANGE},
]
RANGE_VALUES = [str(option["value"]) for option in RANGE_OPTIONS]

NAV_CLASS = "qd-nav-link"
NAV_ACTIVE_CLASS = "qd-nav-link qd-nav-link--active"


def nav_pages() -> list[dict[str, Any]]:
    """Return the registered pages in navigation order (`order`, then name)."""
    pages = list(dash.page_registry.values())
    return sorted(
        pages, key=lambda p: (p.get("order") is None, p.get("order") or 0, str(p["name"]))
    )


def _nav() -> html.Nav:
    return html.Nav(
        [
            dcc.Link(
                page["name"],
                href=page["relative_path"],
                id={"type": NAV_LINK, "path": page["path"]},
                className=NAV_CLASS,
            )
            for page in nav_pages()
        ],
        className="qd-nav",
        **aria_attrs(label="Pages"),
    )


def _selectors() -> html.Div:
    return html.Div(
        [
            html.Label(
                [
                    html.Span("Sprint", className="qd-selector-label"),
                    dcc.Dropdown(
                        id=SPRINT,
                        options=[],
                        clearable=False,
                        searchable=False,
                        className="qd-sprint-dropdown",
                    ),
                ],
                className="qd-selector",
            ),
            html.Div(
                [
                    html.Span("Time range", className="qd-selector-label"),
                    dcc.RadioItems(
                        id=RANGE,
                        options=RANGE_OPTIONS,
                        value=None,
                        inline=True,
                        className="qd-range",
                    ),
                ],
                className="qd-selector",
            ),
        ],
        className="qd-selectors",
    )


def layout() -> html.Div:
    """The shell skeleton; no I/O."""
    return html.Div(
        [
            dcc.Location(id=LOCATION),
            dcc.Store(id=SPRINT_STORE, storage_type="session"),
            dcc.Store(id=RANGE_STORE, storage_type="session"),
            html.Header(
                [
                    html.A("Quarterdeck", href=dash.get_relative_path("/"), className="qd-brand"),
                    _nav(),
                    html.Div(id=INBOX_COUNT, className="qd-inbox-count"),
                    _selectors(),
                ],
                className="qd-header",
            ),
            html.Main(dash.page_container, className="qd-main"),
        ],
        className="qd-shell",
    )


def choose(chosen: str | None, stored: str | None, allowed: list[str], default: str) -> str:
    """Pick the selection: the user's choice, else the remembered one, else the default."""
    if chosen in allowed:
        return str(chosen)
    if stored in allowed:
        return str(stored)
    return default


def sprint_options(slugs: list[str], default: str) -> list[dict[str, str]]:
    """Dropdown options for the sprint files; a missing default stays selectable (and errors)."""
    options = [{"label": slug, "value": slug} for slug in slugs]
    if default not in slugs:
        options.append({"label": f"{default} (no file)", "value": default})
    return options


def register_callbacks(app: Dash) -> None:
    """Attach the shell's callbacks to ``app`` (once per app, unlike module-level callbacks)."""

    # One callback per selector keeps control and store in step both ways; Dash allows an
    # input that is also an output only within a single callback.
    @app.callback(
        Output(SPRINT, "options"),
        Output(SPRINT, "value"),
        Output(SPRINT_STORE, "data"),
        Input(SPRINT, "value"),
        Input(SPRINT_STORE, "data"),
    )
    def sync_sprint(chosen: str | None, stored: str | None) -> tuple[Any, Any, Any]:
        ctx = get_context()
        default = ctx.settings.default_sprint
        options = sprint_options(ctx.sprint_slugs(), default)
        allowed = [str(o["value"]) for o in options]
        # When the store changed (restored from the session storage), the store wins.
        user_choice = chosen if dash.ctx.triggered_id == SPRINT else None
        selected = choose(user_choice, stored, allowed, default)
        return (
            options,
            no_update if selected == chosen else selected,
            no_update if selected == stored else selected,
        )

    @app.callback(
        Output(RANGE, "value"),
        Output(RANGE_STORE, "data"),
        Input(RANGE, "value"),
        Input(RANGE_STORE, "data"),
    )
    def sync_range(chosen: str | None, stored: str | None) -> tuple[Any, Any]:
        user_choice = chosen if dash.ctx.triggered_id == RANGE else None
        selected = choose(user_choice, stored, RANGE_VALUES, SPRINT_RANGE)
        return (
            no_update if selected == chosen else selected,
            no_update if selected == stored else selected,
        )

    @app.callback(Output(INBOX_COUNT, "children"), Input(LOCATION, "pathname"))
    def inbox_count(_pathname: str | None) -> Any:
        """Plans waiting for the signed-in approver (nothing for anyone who may not approve)."""
        import flask

        from console.auth.users import actor_of
        from console.components.actions import inbox_indicator
        from console.wiring import build_service

        identity = getattr(flask.g, "identity", None)
        if identity is None:
            return None
        actor = actor_of(identity)
        if not actor.may_approve:
            return None
        ctx = get_context()
        with ctx.session() as session:
            waiting = build_service(ctx.settings).inbox(session, actor)
        return inbox_indicator(len(waiting))

    @app.callback(
        Output({"type": NAV_LINK, "path": ALL}, "className"),
        Input(LOCATION, "pathname"),
    )
    def mark_current_page(pathname: str | None) -> list[str]:
        current = dash.strip_relative_path(pathname or "/")
        return [
            NAV_ACTIVE_CLASS
            if dash.strip_relative_path(dash.get_relative_path(out["id"]["path"])) == current
            else NAV_CLASS
            for out in dash.ctx.outputs_list
        ]
