"""What every `quarterdeck` command shares: settings from the environment, the context, exits."""

from __future__ import annotations

import logging

import typer
from pydantic import ValidationError

from console.context import AppContext
from console.settings import Settings
from store.db import DatabaseUnavailable, check_connection

EXIT_CONFIG = 2
EXIT_DATABASE = 3


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        lines = [f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()]
        raise _fail("invalid settings: " + "; ".join(lines), EXIT_CONFIG) from exc


def _context(*, require_db: bool = True) -> AppContext:
    settings = _settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Alembic announces its dialect on every schema check (each /readyz): keep that quiet.
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
    try:
        ctx = AppContext.from_settings(settings)
        if require_db:
            check_connection(ctx.engine)
    except DatabaseUnavailable as exc:
        raise _fail(str(exc), EXIT_DATABASE) from exc
    except Exception as exc:  # an unparsable URL, a missing driver
        from store.db import safe_url

        url = safe_url(settings.resolved_database_url)
        raise _fail(f"cannot use database {url}: {exc}", EXIT_DATABASE) from exc
    return ctx
