"""Error panels shared by the pages: an invalid sprint file, an unreadable store."""

from __future__ import annotations

from collections.abc import Sequence

from dash import html

MAX_MESSAGE = 300


def store_error_message(action: str, exc: BaseException) -> str:
    """One line naming what failed and why (the driver's message, without SQL or links)."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    text = f"{action} failed: {type(exc).__name__}" + (f": {reason[0]}" if reason else "")
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def store_error_panel(message: str) -> html.Div:
    """A one-line error when the store cannot be read."""
    return html.Div(
        [html.H2("The store could not be read", className="qd-error-title"), html.P(message)],
        className="qd-error",
        role="alert",
    )


def refusal_panel(message: str) -> html.Div:
    """A refusal: the signed-in user (or nobody) lacks the role; says which role is needed."""
    return html.Div(
        [html.H2("Not allowed", className="qd-error-title"), html.P(message)],
        className="qd-error",
        role="alert",
    )


def config_error_panel(problems: Sequence[str]) -> html.Div:
    """Every problem of an invalid sprint file, one per line (never a stack trace)."""
    return html.Div(
        [
            html.H2("The sprint file is invalid", className="qd-error-title"),
            html.P("Fix these problems in the sprint file, then reload:"),
            html.Ul([html.Li(html.Code(line)) for line in problems], className="qd-problems"),
        ],
        className="qd-error",
        role="alert",
    )
