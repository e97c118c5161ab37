"""The AppContext that page callbacks work with, set once by `create_app`.

Dash Pages load page modules by file and their callbacks cannot take extra arguments, so the
context lives here instead of being closed over.
"""

from __future__ import annotations

from console.context import AppContext

_current: AppContext | None = None


def set_context(ctx: AppContext) -> None:
    """Make ``ctx`` the context every page callback uses."""
    global _current
    _current = ctx


def get_context() -> AppContext:
    """Return the context set by `create_app`; raise RuntimeError if there is none yet."""
    if _current is None:
        raise RuntimeError(
            "no AppContext is set: build the console with console.app.create_app(ctx) "
            "(or call console.runtime.set_context(ctx)) before a page callback runs"
        )
    return _current
