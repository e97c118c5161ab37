"""Page callbacks, registered on the app that serves them (no global Dash registry).

Dash Pages executes every page file anew for each app it builds, and `dash.callback` puts the
callbacks in one process-wide list that the first app to serve a request takes over. Two apps in
one process (tests, a WSGI server that builds twice) would then see each page callback twice or
not at all. Pages therefore decorate with `console.callbacks.callback` instead: it records the
callback (keyed by module and name, so a re-executed page replaces its own entries) and returns
the function unchanged, and `create_app` registers every recorded callback with `app.callback`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from dash import Dash

F = TypeVar("F", bound=Callable[..., Any])

_recorded: dict[str, tuple[tuple[Any, ...], dict[str, Any], Callable[..., Any]]] = {}


def callback(*args: Any, **kwargs: Any) -> Callable[[F], F]:
    """Record a page callback (same arguments as `dash.callback`); the function is unchanged."""

    def record(fn: F) -> F:
        _recorded[f"{fn.__module__}.{fn.__qualname__}"] = (args, kwargs, fn)
        return fn

    return record


def register(app: Dash) -> int:
    """Register every recorded page callback with ``app``; return how many."""
    for args, kwargs, fn in _recorded.values():
        app.callback(*args, **kwargs)(fn)
    return len(_recorded)
