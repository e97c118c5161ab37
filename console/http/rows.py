"""`GET /api/rows/<sprint>/<check>`: the rows behind a goal's (or gate check's) number.

The window, clipping to now and params are those of the evaluation (`store.goals`), and the rows
come from `store.queries.rows`, so `total` equals the goal's `samples` (for rows that weigh more
than one sample, the sum of the `weight` column does). Paged with `offset` and `limit`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request

from console.context import AppContext
from console.http.receivers import error
from store.goals import (
    RANGES,
    SprintConfigError,
    effective_window,
    evaluate_check,
    find_check,
    rows_url,
    rows_view,
)
from store.queries.rows import DEFAULT_LIMIT, MAX_LIMIT, metric_rows

log = logging.getLogger(__name__)


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name}: must be a whole number") from exc
    if not low <= value <= high:
        raise ValueError(f"{name}: must be between {low} and {high}")
    return value


def make_blueprint(ctx: AppContext) -> Blueprint:
    """Build the rows API; handlers close over ``ctx``."""
    bp = Blueprint("quarterdeck_rows", __name__)

    @bp.get("/api/rows/<slug>/<check_id>")
    def rows(slug: str, check_id: str) -> tuple[Response, int]:
        if slug not in ctx.sprint_slugs():
            return error(404, f"unknown sprint {slug!r}")
        try:
            sprint = ctx.sprint(slug)
        except SprintConfigError as exc:
            return error(500, "invalid sprint file", problems=exc.problems)
        check = find_check(sprint, check_id)
        if check is None:
            return error(404, f"sprint {slug!r} has no goal or gate check {check_id!r}")
        range_key = request.args.get("range") or "sprint"
        if range_key not in RANGES:
            return error(400, f"range: must be one of {', '.join(RANGES)}")
        try:
            offset = _int_arg("offset", 0, 0, 10**9)
            limit = _int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        except ValueError as exc:
            return error(400, str(exc))
        window = sprint.baseline_window() if range_key == "baseline" else sprint.window.window()
        now = datetime.now(UTC)
        effective = effective_window(window, now)
        try:
            with ctx.session() as session:
                result = evaluate_check(session, check, window, now=now)
                page = metric_rows(
                    session,
                    check.metric,
                    effective,
                    check.aggregation,
                    check.params,
                    offset=offset,
                    limit=limit,
                )
        except Exception as exc:
            log.exception("rows of %s/%s failed", slug, check_id)
            return error(503, f"store unavailable ({type(exc).__name__})")
        nxt = page.next_offset
        body: dict[str, Any] = {
            "sprint": sprint.slug,
            "check": check.id,
            "title": check.title,
            "metric": check.metric,
            "status": result.status,
            "samples": result.samples,
            "range": range_key,
            "window": {
                "start": effective.start.isoformat().replace("+00:00", "Z"),
                "end": effective.end.isoformat().replace("+00:00", "Z"),
            },
            "kind": page.kind,
            "note": page.note,
            "total": page.total,
            "weight": page.weight,
            "weight_sum": page.extra.get("weight_sum"),
            "offset": page.offset,
            "limit": page.limit,
            "columns": page.columns,
            "rows": page.rows,
            "next": (
                f"{rows_url(sprint.slug, check.id, range_key)}"
                f"{'&' if range_key != 'sprint' else '?'}offset={nxt}&limit={page.limit}"
                if nxt is not None
                else None
            ),
            "view": rows_view(sprint.slug, check.id, range_key),
        }
        return jsonify(body), 200

    return bp
