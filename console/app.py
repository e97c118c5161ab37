"""The console's composition: the Dash app with its pages, shell and HTTP API on one Flask server.

Dash is created as `Dash("console", …)` so the page files import as `console.pages.<name>` exactly
once; `assets_folder` is the top-level `assets/` (CSS only, nothing from a CDN).
"""

from __future__ import annotations

from pathlib import Path

from dash import Dash

from console import callbacks as page_callbacks
from console import shell
from console.context import AppContext
from console.http import actions, api, auth, bundles, ci, egress, metrics, policy, rows, traffic
from console.http import reliability as rel
from console.runtime import set_context

CONSOLE_DIR = Path(__file__).resolve().parent
PAGES_DIR = CONSOLE_DIR / "pages"
ASSETS_DIR = CONSOLE_DIR.parent / "assets"


def create_app(ctx: AppContext) -> Dash:
    """Build the console for ``ctx``: pages, shell layout and callbacks, `/healthz` and `/api/*`."""
    set_context(ctx)
    app = Dash(
        "console",
        use_pages=True,
        pages_folder=str(PAGES_DIR),
        assets_folder=str(ASSETS_DIR),
        suppress_callback_exceptions=False,
        title="Quarterdeck",
        update_title=None,  # type: ignore[arg-type]  # documented: None disables it
        serve_locally=True,
    )
    app.layout = shell.layout
    shell.register_callbacks(app)
    # The pages were executed by Dash() above; their callbacks are registered on this app only.
    page_callbacks.register(app)
    app.server.register_blueprint(api.make_api(ctx))
    # Sign-in first: its before_app_request hook sets the identity every later handler reads.
    for module in (auth, metrics, actions, bundles, ci, egress, policy, traffic, rows, rel):
        app.server.register_blueprint(module.make_blueprint(ctx))
    return app
