"""JSON beside the Failover page: `GET /api/failover/runs` and `GET /api/failover/runs/<id>`.

They read the same store queries as the page, so the JSON and the page never disagree.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from flask import Blueprint, Response, jsonify, request

from console.context import AppContext
from console.http.receivers import error
from store.models import FAILOVER_PHASES
from store.queries.failover import RPO_TARGET_S, RTO_TARGET_S, get_run, list_runs

MAX_RUNS = 500


def _iso(value: Any) -> str | None:
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(pd.Timestamp(value).tz_convert("UTC").isoformat()).replace("+00:00", "Z")


def _num(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def run_summary(row: Any) -> dict[str, Any]:
    """One row of `list_runs` as JSON, with its verdicts and links."""
    rto, rpo = _num(row.rto_s), _num(row.rpo_s)
    return {
        "id": row.run_key,
        "environment": row.environment,
        "kind": row.kind,
        "started_at": _iso(row.started_at),
        "ended_at": _iso(row.ended_at),
        "in_progress": _iso(row.ended_at) is None,
        "phases": {p: _iso(getattr(row, f"{p}_at")) for p in FAILOVER_PHASES},
        "rto_s": rto,
        "rto_target_s": RTO_TARGET_S,
        "rto_met": None if rto is None else rto <= RTO_TARGET_S,
        "rpo_s": rpo,
        "rpo_target_s": RPO_TARGET_S,
        "rpo_met": None if rpo is None else rpo <= RPO_TARGET_S,
        "links": {
            "self": f"/api/failover/runs/{row.run_key}",
            "page": f"/failover?run={row.run_key}",
        },
    }


def make_blueprint(ctx: AppContext) -> Blueprint:
    """Build the blueprint; handlers close over ``ctx``."""
    bp = Blueprint("quarterdeck_traffic", __name__)

    @bp.get("/api/failover/runs")
    def failover_runs() -> Response:
        environment = request.args.get("environment") or None
        try:
            limit = max(1, min(MAX_RUNS, int(request.args.get("limit", "100"))))
        except ValueError:
            limit = 100
        with ctx.session() as session:
            runs = list_runs(session, limit=limit, environment=environment)
        return jsonify({"runs": [run_summary(r) for r in runs.itertuples(index=False)]})

    @bp.get("/api/failover/runs/<run_id>")
    def failover_run(run_id: str) -> tuple[Response, int]:
        with ctx.session() as session:
            detail = get_run(session, run_id, now=datetime.now(UTC))
        if detail is None:
            return error(404, f"no failover run {run_id!r}")
        body = detail.as_dict()
        body["rto_met"] = None if detail.rto_s is None else detail.rto_s <= RTO_TARGET_S
        body["rpo_met"] = None if detail.rpo_s is None else detail.rpo_s <= RPO_TARGET_S
        return jsonify(body), 200

    return bp
