"""WSGI entry point for gunicorn workers (`gunicorn console.wsgi:server`).

Settings come from the environment; the schema must already be migrated (`quarterdeck db
upgrade`), which `/readyz` reports until it is.
"""

from __future__ import annotations

from console.app import create_app
from console.context import AppContext
from console.settings import Settings

app = create_app(AppContext.from_settings(Settings()))
server = app.server
