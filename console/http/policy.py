"""OPA receivers (`/ingest/opa/logs`, `/ingest/opa/status`) and the policy APIs.

OPA retries every non-2xx upload forever and a refused chunk blocks the ones behind it, so the
decision-log receiver answers 2xx as soon as the whole chunk is durable — valid events stored,
invalid ones dead-lettered with index and reason, in one transaction — and 503 when the store
fails (nothing half-written; OPA's retry then lands). Only what no retry can fix gets a 4xx:
a wrong token (401), a body over the limits (413), a body that is not gzip/JSON (400).

Events the store cannot hold (too deep, NUL, lone surrogate, NaN, oversize) are dead-lettered
by the collector like any invalid event. Each handler is one call — bytes in,
`opa.receive_decision_log` / `opa.receive_status`, counts out. Both need OPA's
`credentials.bearer` token in every mode; demo mode configures `DEMO_OPA_TOKEN`.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, jsonify, request

from collectors import opa
from collectors.base import PayloadTooLarge
from console.context import AppContext
from console.http.api import iso
from console.http.receivers import BodyTooLarge, bearer_refusal, demo_secret, error, read_body
from console.settings import Settings
from console.settings.ingest import DEMO_OPA_TOKEN
from store.ingest import IngestResult, utcnow
from store.queries.decision_filter import parse_api_args, parse_time_bound
from store.queries.policy import SearchError, StaleRule, drift_frame, search_decisions

log = logging.getLogger(__name__)

LOGS_SETTING = "QUARTERDECK_OPA__LOGS_TOKEN"
STATUS_SETTING = "QUARTERDECK_OPA__STATUS_TOKEN"


def logs_token(settings: Settings) -> str | None:
    """The `/ingest/opa/logs` bearer token (OPA's `credentials.bearer`); the demo's in demo mode."""
    return demo_secret(
        settings.opa.logs_token,
        demo_mode=settings.demo_mode,
        demo_value=DEMO_OPA_TOKEN,
        setting=LOGS_SETTING,
    )


def status_token(settings: Settings) -> str | None:
    """The `/ingest/opa/status` bearer token: its own setting, else the logs token."""
    return demo_secret(
        settings.opa.status_token or settings.opa.logs_token,
        demo_mode=settings.demo_mode,
        demo_value=DEMO_OPA_TOKEN,
        setting=STATUS_SETTING,
    )


def make_blueprint(ctx: AppContext) -> Blueprint:
    """Build the blueprint; handlers close over ``ctx``."""
    bp = Blueprint("quarterdeck_policy", __name__)
    settings = ctx.settings.opa
    options = opa.DecisionOptions(
        result_field=settings.result_field,
        environment_label=settings.environment_label,
        instance_label=settings.instance_label,
    )
    stale_rule = StaleRule(
        intervals=settings.stale_after_intervals, min_silence_s=settings.stale_min_s
    )
    if ctx.settings.demo_mode and logs_token(ctx.settings) == DEMO_OPA_TOKEN:
        log.warning("demo mode: /ingest/opa/* bearer token is %r", DEMO_OPA_TOKEN)

    def _receive(source: str, token: str | None, setting: str, store: Any) -> tuple[Response, int]:
        """Bytes in → one collector call → counts out (401/413/400/503 around it)."""
        refused = bearer_refusal(token, setting=setting, path=request.path)
        if refused:
            return refused
        try:
            body = read_body(settings.max_body_bytes)
        except BodyTooLarge as exc:
            return error(413, str(exc))
        try:
            with ctx.session() as session:
                result: IngestResult = store(session, body)
        except PayloadTooLarge as exc:
            return error(413, str(exc))
        except Exception as exc:
            log.exception("%s: storing a batch failed; answering 503 so OPA retries", source)
            return error(
                503, f"store unavailable ({type(exc).__name__}); nothing was stored, retry"
            )
        if result.refused:
            return error(400, result.refused, **result.as_dict())
        return jsonify(result.as_dict() | {"rejects": result.reasons[:100]}), 200

    def _logs() -> tuple[Response, int]:
        received_at = utcnow()
        return _receive(
            opa.SOURCE_LOGS,
            logs_token(ctx.settings),
            LOGS_SETTING,
            lambda session, body: opa.receive_decision_log(
                session,
                body,
                content_encoding=request.headers.get("Content-Encoding"),
                received_at=received_at,
                limit=settings.max_decompressed_bytes,
                options=options,
            ),
        )

    @bp.post("/ingest/opa/logs")
    def opa_logs() -> tuple[Response, int]:
        return _logs()

    @bp.post("/ingest/opa/logs/<partition>")
    def opa_logs_partition(partition: str) -> tuple[Response, int]:
        # OPA's deprecated `partition_name` appends a path segment; the events say who sent them.
        return _logs()

    def _status() -> tuple[Response, int]:
        received_at = utcnow()
        return _receive(
            opa.SOURCE_STATUS,
            status_token(ctx.settings),
            STATUS_SETTING,
            lambda session, body: opa.receive_status(
                session,
                body,
                content_encoding=request.headers.get("Content-Encoding"),
                received_at=received_at,
                limit=settings.max_decompressed_bytes,
                environment_label=settings.environment_label,
                instance_label=settings.instance_label,
            ),
        )

    @bp.post("/ingest/opa/status")
    def opa_status() -> tuple[Response, int]:
        return _status()

    @bp.post("/ingest/opa/status/<partition>")
    def opa_status_partition(partition: str) -> tuple[Response, int]:
        return _status()

    @bp.get("/api/decisions")
    def decisions() -> tuple[Response, int]:
        parsed, limit, cursor = parse_api_args(request.args)
        if parsed.errors:
            return error(400, "invalid query", problems=sorted(parsed.errors.values()))
        try:
            with ctx.session() as session:
                page = search_decisions(
                    session, filters=parsed.filters, limit=limit, cursor=cursor, with_bodies=True
                )
        except SearchError as exc:
            return error(400, str(exc))
        except Exception as exc:
            log.exception("decision search failed")
            return error(503, f"store unavailable ({type(exc).__name__})")
        return jsonify(
            {
                "decisions": [_decision_json(d) for d in page.rows],
                "next_cursor": page.next_cursor,
            }
        ), 200

    @bp.get("/api/policy/drift")
    def drift() -> tuple[Response, int]:
        """Latest status per instance × bundle against the pin (see docs/policy.md).

        `instance_id` is the identity label's value (`QUARTERDECK_OPA__INSTANCE_LABEL`, else
        `labels.id`); a `stale` instance (silent for `silent_s` > the stale rule's multiple of
        its own `interval_s`) is listed but never counted in `drift`.
        """
        unknown = sorted(set(request.args) - {"environment", "as_of"})
        if unknown:
            return error(400, f"unknown parameter(s) {', '.join(unknown)}; use environment, as_of")
        try:
            as_of = (
                parse_time_bound(request.args["as_of"]) if request.args.get("as_of") else utcnow()
            )
        except ValueError as exc:
            return error(400, f"as_of: {exc}")
        try:
            with ctx.session() as session:
                df = drift_frame(
                    session,
                    as_of=as_of,
                    environment=request.args.get("environment") or None,
                    stale=stale_rule,
                )
        except Exception as exc:
            log.exception("drift query failed")
            return error(503, f"store unavailable ({type(exc).__name__})")
        pinned = df[df["pinned_revision"].notna()]
        drifted = sorted(set(pinned[pinned["drifted"].astype(bool)]["instance_id"]))
        stale = sorted(set(df[df["stale"].astype(bool)]["instance_id"]))
        live = pinned[~pinned["instance_id"].isin(stale)]
        rows = [
            {
                "instance_id": r["instance_id"],
                "environment": _text(r["environment"]),
                "bundle": r["bundle"],
                "active_revision": _text(r["active_revision"]),
                "pinned_revision": _text(r["pinned_revision"]),
                "drifted": bool(r["drifted"]),
                "code": _text(r["code"]),
                "reported_at": iso(r["reported_at"]),
                "stale": bool(r["stale"]),
                "silent_s": _seconds(r["silent_s"]),
                "interval_s": _seconds(r["interval_s"]),
            }
            for r in df.to_dict("records")
        ]
        return jsonify(
            {
                "as_of": iso(as_of),
                "drifted_instances": drifted,
                "stale_instances": stale,
                "drift": len(drifted) if len(live) else None,
                "rows": rows,
            }
        ), 200

    return bp


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _seconds(value: Any) -> float | None:
    """A duration in seconds for JSON (pandas' NaN for "unknown" becomes null)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
        return round(float(value), 3)
    return None


def _decision_json(decision: dict[str, Any]) -> dict[str, Any]:
    out = dict(decision)
    out.pop("id", None)
    for key in ("timestamp", "received_at"):
        out[key] = iso(out[key])
    return out
