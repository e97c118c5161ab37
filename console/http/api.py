"""HTTP endpoints beside the pages: `/healthz`, `/readyz`, `/api/goals`."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import Engine

from console.context import AppContext
from store.db import DatabaseUnavailable, check_connection, safe_url
from store.goals import SprintConfigError, evaluate_goals
from store.migrate import current_revision, head_revision

log = logging.getLogger(__name__)

WRITE_PROBE = "UPDATE alembic_version SET version_num = version_num"


def iso(value: datetime | None) -> str | None:
    """ISO-8601 UTC with a `Z`, as every API timestamp is written."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _number(value: float | None) -> float | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return round(value, 4)


def readiness(ctx: AppContext) -> tuple[bool, str]:
    """Whether the store is reachable, migrated to head and takes writes; the reason when not."""
    try:
        check_connection(ctx.engine)
        current = current_revision(ctx.engine)
    except DatabaseUnavailable as exc:
        return False, str(exc)
    except Exception as exc:
        return False, f"cannot read schema version from {safe_url(ctx.engine.url)}: {exc}"
    head = head_revision()
    if current != head:
        return False, (
            f"database {safe_url(ctx.engine.url)} is at migration {current or 'none'}, "
            f"expected {head}: run `quarterdeck db upgrade`"
        )
    refused = write_refusal(ctx.engine)
    if refused:
        return False, refused
    return True, f"database at migration {head}, accepting writes"


def write_refusal(engine: Engine) -> str | None:
    """Why the store refuses a write right now, or None when it takes one.

    The probe is one no-op `UPDATE` of the migration table, rolled back: it needs the write
    lock (SQLite) or a read-write transaction (PostgreSQL), so a read-only file, a read-only
    role or standby (`default_transaction_read_only`) or a held lock shows, and no row changes.
    """
    try:
        with engine.connect() as conn:
            transaction = conn.begin()
            try:
                if engine.dialect.name == "postgresql":
                    conn.exec_driver_sql("SET LOCAL statement_timeout = 2000")
                conn.exec_driver_sql(WRITE_PROBE)
            finally:
                transaction.rollback()
    except Exception as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return f"database {safe_url(engine.url)} refuses writes: {reason}"
    return None


def make_api(ctx: AppContext) -> Blueprint:
    """Build the blueprint; handlers close over ``ctx``."""
    api = Blueprint("quarterdeck_api", __name__)

    @api.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    @api.get("/readyz")
    def readyz() -> tuple[Response, int]:
        ok, reason = readiness(ctx)
        return jsonify({"status": "ready" if ok else "unavailable", "reason": reason}), (
            200 if ok else 503
        )

    @api.get("/api/goals")
    def goals() -> tuple[Response, int]:
        slug = request.args.get("sprint") or ctx.settings.default_sprint
        if slug not in ctx.sprint_slugs():
            return jsonify(
                {"error": f"unknown sprint {slug!r}", "sprints": ctx.sprint_slugs()}
            ), 404
        try:
            sprint = ctx.sprint(slug)
        except SprintConfigError as exc:
            return jsonify({"error": "invalid sprint file", "problems": exc.problems}), 500
        window = sprint.window.window()
        try:
            with ctx.session() as session:
                results = evaluate_goals(session, sprint, with_trend=False)
        except Exception as exc:
            log.exception("goal evaluation failed")
            return jsonify({"error": f"store unavailable: {type(exc).__name__}"}), 503
        body: dict[str, Any] = {
            "sprint": sprint.slug,
            "title": sprint.title,
            "window": {"start": iso(window.start), "end": iso(window.end)},
            "evaluated_at": iso(datetime.now(UTC)),
            "goals": [
                {
                    "id": r.id,
                    "title": r.title,
                    "status": r.status,
                    "value": _number(r.value),
                    "unit": r.unit,
                    "target": {
                        "op": r.target["op"],
                        "value": r.target["value"],
                        "unit": r.target["unit"],
                    },
                    "samples": r.samples,
                    "rows_url": r.rows_url,
                    "rows_view": r.rows_view,
                    "metric": r.metric,
                    "aggregation": r.aggregation,
                    "epic": r.epic,
                    "owner": r.owner,
                    "reason": r.reason,
                    "definition": r.definition,
                }
                for r in results
            ],
        }
        return jsonify(body), 200

    return api
