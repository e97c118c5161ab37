"""OPA receivers (`/ingest/opa/logs`, `/ingest/opa/status`) and the policy APIs.

OPA retries every non-2xx upload forever and a refused chunk blocks the ones behind it, so the
decision-log receiver answers 2xx as soon as the whole chunk is durable — valid events stored,
invalid ones dead-lettered with index and reason, in one transaction — and 503 when the store
fails (nothing half-written; OPA's retry then lands). Only what no retry can fix gets a 4xx:
a wrong token (401), a body over the limits (413), a body that is not gzip/JSON (400).
"""

from __future__ import annotations

import base64
import hmac
import logging
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request
from pydantic import SecretStr

from collectors import opa
from console.components.policy import parse_api_args, parse_time_bound
from console.context import AppContext
from console.http.api import iso
from store.ingest import IngestResult, record_rejects, record_sync_run, utcnow
from store.queries.policy import SearchError, drift_frame, search_decisions

log = logging.getLogger(__name__)

_READ_STEP = 64 * 1024


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _authorise(expected: SecretStr | None, *, demo_mode: bool, setting: str) -> None:
    """Check the OPA `credentials.bearer` token in constant time."""
    if expected is None:
        if demo_mode:
            return
        raise _Refused(503, f"receiver disabled: set {setting} to the token OPA sends")
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), expected.get_secret_value().encode()
    ):
        raise _Refused(401, "missing or wrong bearer token")


def _read_body(limit: int) -> bytes:
    """Read at most ``limit`` bytes of the request body; 413 beyond (never buffering more)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _Refused(413, f"body of {declared} bytes is over the {limit} byte limit")
    stream = request.stream
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(min(_READ_STEP, limit + 1 - size))
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            raise _Refused(413, f"body is over the {limit} byte limit")
    return b"".join(parts)


def _error(status: int, message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify({"error": message, **extra}), status


def make_blueprint(ctx: AppContext) -> Blueprint:
    """Build the blueprint; handlers close over ``ctx``."""
    bp = Blueprint("quarterdeck_policy", __name__)
    settings = ctx.settings.opa
    options = opa.DecisionOptions(
        result_field=settings.result_field, environment_label=settings.environment_label
    )

    def _decode(source: str, received_at: datetime) -> Any:
        body = _read_body(settings.max_body_bytes)
        try:
            return opa.decode_chunk(
                body,
                content_encoding=request.headers.get("Content-Encoding"),
                limit=settings.max_decompressed_bytes,
            )
        except opa.PayloadTooLarge as exc:
            raise _Refused(413, str(exc)) from exc
        except opa.BadPayload as exc:
            # Dead-letter what came in (bounded) so Ingest health shows the sender's mistake.
            _dead_letter(source, str(exc), body, received_at)
            raise _Refused(400, str(exc)) from exc

    def _dead_letter(source: str, reason: str, body: bytes, received_at: datetime) -> None:
        payload = _printable(body)
        try:
            with ctx.session() as session:
                record_rejects(
                    session,
                    source=source,
                    rejects=[(None, reason, payload)],
                    received_at=received_at,
                )
                record_sync_run(
                    session,
                    source=source,
                    started_at=received_at,
                    result=IngestResult(rejected=1, reasons=[reason]),
                )
        except Exception:
            log.exception("%s: could not dead-letter an unreadable body", source)

    def _store(source: str, received_at: datetime, write: Any) -> tuple[Response, int]:
        try:
            with ctx.session() as session:
                result: IngestResult = write(session)
                record_sync_run(session, source=source, started_at=received_at, result=result)
        except Exception as exc:
            log.exception("%s: storing a batch failed; answering 503 so OPA retries", source)
            return _error(
                503, f"store unavailable ({type(exc).__name__}); nothing was stored, retry"
            )
        body = result.as_dict() | {"rejects": result.reasons[:100]}
        return jsonify(body), 200

    def _logs() -> tuple[Response, int]:
        received_at = utcnow()
        try:
            _authorise(
                settings.logs_token,
                demo_mode=ctx.settings.demo_mode,
                setting="QUARTERDECK_OPA__LOGS_TOKEN",
            )
            events = _decode(opa.SOURCE_LOGS, received_at)
        except _Refused as exc:
            return _error(exc.status, exc.message)
        if not isinstance(events, list):
            _dead_letter(
                opa.SOURCE_LOGS, "body: expected a JSON array of decision events", b"", received_at
            )
            return _error(400, "body: expected a JSON array of decision events")
        return _store(
            opa.SOURCE_LOGS,
            received_at,
            lambda s: opa.ingest_decisions(s, events, received_at=received_at, options=options),
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
        try:
            _authorise(
                settings.status_token or settings.logs_token,
                demo_mode=ctx.settings.demo_mode,
                setting="QUARTERDECK_OPA__STATUS_TOKEN",
            )
            report = _decode(opa.SOURCE_STATUS, received_at)
        except _Refused as exc:
            return _error(exc.status, exc.message)
        return _store(
            opa.SOURCE_STATUS,
            received_at,
            lambda s: opa.ingest_status(
                s, report, received_at=received_at, environment_label=settings.environment_label
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
            return _error(400, "invalid query", problems=sorted(parsed.errors.values()))
        try:
            with ctx.session() as session:
                page = search_decisions(
                    session, filters=parsed.filters, limit=limit, cursor=cursor, with_bodies=True
                )
        except SearchError as exc:
            return _error(400, str(exc))
        except Exception as exc:
            log.exception("decision search failed")
            return _error(503, f"store unavailable ({type(exc).__name__})")
        return jsonify(
            {
                "decisions": [_decision_json(d) for d in page.rows],
                "next_cursor": page.next_cursor,
            }
        ), 200

    @bp.get("/api/policy/drift")
    def drift() -> tuple[Response, int]:
        unknown = sorted(set(request.args) - {"environment", "as_of"})
        if unknown:
            return _error(400, f"unknown parameter(s) {', '.join(unknown)}; use environment, as_of")
        try:
            as_of = (
                parse_time_bound(request.args["as_of"])
                if request.args.get("as_of")
                else datetime.now(UTC)
            )
        except ValueError as exc:
            return _error(400, f"as_of: {exc}")
        try:
            with ctx.session() as session:
                df = drift_frame(
                    session, as_of=as_of, environment=request.args.get("environment") or None
                )
        except Exception as exc:
            log.exception("drift query failed")
            return _error(503, f"store unavailable ({type(exc).__name__})")
        pinned = df[df["pinned_revision"].notna()]
        drifted = sorted(set(pinned[pinned["drifted"].astype(bool)]["instance_id"]))
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
            }
            for r in df.to_dict("records")
        ]
        return jsonify(
            {
                "as_of": iso(as_of),
                "drifted_instances": drifted,
                "drift": len(drifted) if len(pinned) else None,
                "rows": rows,
            }
        ), 200

    return bp


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _printable(body: bytes) -> str:
    """A body as text for the dead-letter table (PostgreSQL text refuses NUL; gzip is binary)."""
    try:
        text = body.decode("utf-8")
        if "\x00" not in text:
            return text
    except UnicodeDecodeError:
        pass
    head = body[:8192]
    return f"binary body, {len(body)} bytes; first {len(head)} as base64: " + (
        base64.b64encode(head).decode()
    )


def _decision_json(decision: dict[str, Any]) -> dict[str, Any]:
    out = dict(decision)
    out.pop("id", None)
    for key in ("timestamp", "received_at"):
        out[key] = iso(out[key])
    return out
