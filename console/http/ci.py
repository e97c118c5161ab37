"""CI velocity over HTTP: the GitHub webhook receiver, CI job reports, the lead-time API.

- `POST /ingest/github`: GitHub webhooks, HMAC-SHA256 signed (`X-Hub-Signature-256`), idempotent
  by `X-GitHub-Delivery`. 401 on a bad or missing signature; 202 for events we do not use.
- `POST /ingest/ci`: job reports (`collectors.ci_ingest` schema; JSON, or JUnit XML as the body
  with the report fields as query parameters), bearer token. A bad batch stores nothing.
- `GET /api/ci/lead-times?repo=&from=&to=`: per-SHA PR→preview lead times with p50, p95, count
  and the SHAs still waiting.
- `GET /api/ci/quarantine?repo=`: the active flaky-test quarantine, for CI to skip those tests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import pandas as pd
from flask import Blueprint, Response, jsonify, request

from collectors import ci_ingest, github
from collectors.base import InvalidItem, parse_time
from console.context import AppContext
from console.http.api import iso
from console.settings import PLACEHOLDER_SECRETS, Settings
from console.settings.github import DEMO_CI_TOKEN, DEMO_WEBHOOK_SECRET
from store.ingest import record_rejects, record_sync_run, utcnow
from store.metrics import Window, get_metric
from store.queries.ci import (
    lead_time_frame,
    quarantine_frame,
    summarize_lead_times,
    waiting_shas_frame,
)

log = logging.getLogger(__name__)

WEBHOOK_SOURCE = "github-webhook"
MAX_WEBHOOK_BYTES = 25 * 1024 * 1024  # GitHub caps webhook payloads at 25 MB
MAX_CI_BYTES = 25 * 1024 * 1024
MAX_REPORTS = 1000
DEFAULT_API_DAYS = 14
MAX_API_DAYS = 400
_XML_TYPES = ("application/xml", "text/xml", "application/junit+xml")
_INT_PARAMS = ("run_id", "run_attempt")


def _secret(value: Any, settings: Settings, demo_value: str, name: str) -> str | None:
    secret = value.get_secret_value() if value is not None else None
    if not secret and settings.demo_mode:
        return demo_value
    if secret and secret in PLACEHOLDER_SECRETS and not settings.demo_mode:
        log.error("%s is a placeholder; the receiver refuses requests until it is set", name)
        return None
    return secret or None


def webhook_secret(settings: Settings) -> str | None:
    """The webhook secret in force (demo mode falls back to the printed demo secret)."""
    return _secret(
        settings.github.webhook_secret,
        settings,
        DEMO_WEBHOOK_SECRET,
        "QUARTERDECK_GITHUB__WEBHOOK_SECRET",
    )


def ci_token(settings: Settings) -> str | None:
    """The `/ingest/ci` bearer token: `QUARTERDECK_INGEST__CI_TOKEN`, else the GitHub setting."""
    ingest = getattr(settings, "ingest", None)
    value = getattr(ingest, "ci_token", None) or settings.github.ci_ingest_token
    return _secret(value, settings, DEMO_CI_TOKEN, "QUARTERDECK_INGEST__CI_TOKEN")


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """Check `X-Hub-Signature-256: sha256=<hex>` against HMAC-SHA256(secret, body).

    The hex digests are compared with `hmac.compare_digest` so timing reveals nothing.
    """
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().encode())


def _error(status: int, message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify({"error": message, **extra}), status


def _webhook_payload(body: bytes, content_type: str) -> Any:
    """The JSON payload of a delivery (GitHub sends JSON, or a form field `payload`)."""
    if content_type.startswith("application/x-www-form-urlencoded"):
        fields = parse_qs(body.decode("utf-8", errors="replace"))
        if "payload" not in fields:
            raise ValueError("form body has no `payload` field")
        return json.loads(fields["payload"][0])
    return json.loads(body)


def _parse_bound(name: str, value: str | None, default: datetime) -> datetime:
    if not value:
        return default
    try:
        if len(value) == 10:  # a bare date means midnight UTC
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        return parse_time(value, field=name)
    except (ValueError, InvalidItem) as exc:
        raise ValueError(f"{name}: {value!r} is not a date or RFC 3339 timestamp") from exc


def _xml_report(args: Any, body: bytes) -> dict[str, Any]:
    """A job report from query parameters plus a JUnit XML body."""
    report: dict[str, Any] = {k: v for k, v in args.items() if k not in ("shard", "cache")}
    for key in _INT_PARAMS:
        if key in report:
            try:
                report[key] = int(report[key])
            except ValueError as exc:
                raise InvalidItem(f"{key}: expected an integer, got {report[key]!r}") from exc
    if "duration_s" in report:
        try:
            report["duration_s"] = float(report["duration_s"])
        except ValueError as exc:
            raise InvalidItem(
                f"duration_s: expected a number, got {report['duration_s']!r}"
            ) from exc
    if "shard" in args:
        index, _, total = str(args["shard"]).partition("/")
        if not (index.isdigit() and total.isdigit()):
            raise InvalidItem(f"shard: expected INDEX/TOTAL, got {args['shard']!r}")
        report["shard"] = {"index": int(index), "total": int(total)}
    report["junit_xml"] = body.decode("utf-8", errors="replace")
    return report


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The frame's rows as plain dicts (missing values as None)."""
    return [
        {str(k): (None if _missing(v) else v) for k, v in row.items()}
        for row in df.to_dict("records")
    ]


def _missing(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def _when(value: Any) -> datetime | None:
    return None if value is None else pd.Timestamp(value).to_pydatetime()


def _lead_time_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "repo": row["repo"],
        "pr": None if row["pr"] is None else int(row["pr"]),
        "pr_url": row["pr_url"],
        "title": row["title"],
        "sha": row["sha"],
        "started_at": iso(_when(row["started_at"])),
        "preview_ready_at": iso(_when(row["preview_ready_at"])),
        "seconds": float(row["seconds"]),
    }


def make_blueprint(ctx: AppContext) -> Blueprint:
    """Build the CI blueprint; handlers close over ``ctx``."""
    bp = Blueprint("ci", __name__)
    if ctx.settings.demo_mode:
        if not ctx.settings.github.webhook_secret:
            log.warning("demo mode: GitHub webhook secret is %r", DEMO_WEBHOOK_SECRET)
        if ci_token(ctx.settings) == DEMO_CI_TOKEN:
            log.warning("demo mode: /ingest/ci bearer token is %r", DEMO_CI_TOKEN)

    @bp.post("/ingest/github")
    def ingest_github() -> tuple[Response, int]:
        secret = webhook_secret(ctx.settings)
        if secret is None:
            return _error(
                503, "webhook secret not configured: set QUARTERDECK_GITHUB__WEBHOOK_SECRET"
            )
        if (request.content_length or 0) > MAX_WEBHOOK_BYTES:
            return _error(413, f"payload larger than {MAX_WEBHOOK_BYTES} bytes")
        body = request.get_data()
        header = request.headers.get("X-Hub-Signature-256")
        if header is None:
            return _error(401, "missing X-Hub-Signature-256 header")
        if not signature_ok(secret, body, header):
            return _error(401, "X-Hub-Signature-256 does not match the body and webhook secret")
        event = request.headers.get("X-GitHub-Event")
        delivery = request.headers.get("X-GitHub-Delivery")
        if not event:
            return _error(400, "missing X-GitHub-Event header")
        if not delivery:
            return _error(400, "missing X-GitHub-Delivery header")
        try:
            payload = _webhook_payload(body, request.content_type or "")
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(400, f"body is not a JSON webhook payload: {exc}")
        if not isinstance(payload, dict):
            return _error(400, "body: expected a JSON object")
        received = utcnow()
        try:
            with ctx.session() as session:
                result, duplicate = github.ingest_delivery(
                    session,
                    delivery_id=delivery,
                    event=event,
                    payload=payload,
                    received_at=received,
                )
                if result.rejected:
                    # Keep only the dead letter: no delivery row, no half of the event.
                    session.rollback()
                    record_rejects(
                        session,
                        source=github.SOURCE,
                        rejects=[(None, "; ".join(result.reasons), payload)],
                        received_at=received,
                    )
                if not duplicate:
                    record_sync_run(
                        session, source=WEBHOOK_SOURCE, started_at=received, result=result
                    )
        except Exception as exc:
            log.exception("storing GitHub delivery %s failed", delivery)
            return _error(503, f"store unavailable: {type(exc).__name__}")
        if duplicate:
            return jsonify({"delivery": delivery, "duplicate": True}), 200
        if result.rejected:
            return _error(400, "; ".join(result.reasons), delivery=delivery)
        if result.ignored:
            return jsonify({"delivery": delivery, "event": event, "ignored": True}), 202
        return jsonify({"delivery": delivery, "event": event, **result.as_dict()}), 200

    @bp.post("/ingest/ci")
    def ingest_ci() -> tuple[Response, int]:
        token = ci_token(ctx.settings)
        if token is None:
            return _error(503, "CI ingest token not configured: set QUARTERDECK_INGEST__CI_TOKEN")
        auth = request.headers.get("Authorization", "")
        scheme, _, presented = auth.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            response, status = _error(401, "missing bearer token (Authorization: Bearer …)")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response, status
        if not hmac.compare_digest(presented.strip().encode(), token.encode()):
            response, status = _error(401, "bearer token is not valid for /ingest/ci")
            response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            return response, status
        if (request.content_length or 0) > MAX_CI_BYTES:
            return _error(413, f"body larger than {MAX_CI_BYTES} bytes")
        body = request.get_data()
        content_type = (request.content_type or "").split(";")[0].strip().lower()
        try:
            if content_type in _XML_TYPES:
                reports: Any = [_xml_report(request.args, body)]
            else:
                try:
                    parsed = json.loads(body)
                except (ValueError, UnicodeDecodeError) as exc:
                    return _error(400, f"body: malformed JSON ({exc})")
                reports = parsed if isinstance(parsed, list) else [parsed]
        except InvalidItem as exc:
            return _error(400, str(exc))
        if not reports:
            return _error(400, "body: expected a job report object or a non-empty list of them")
        if len(reports) > MAX_REPORTS:
            return _error(413, f"body: more than {MAX_REPORTS} job reports in one request")
        received = utcnow()
        try:
            with ctx.session() as session:
                result = ci_ingest.ingest_job_reports(
                    session,
                    reports,
                    received_at=received,
                    all_or_nothing=True,
                    quarantine_days=ctx.settings.github.quarantine_days,
                )
                record_sync_run(
                    session, source=ci_ingest.SOURCE, started_at=received, result=result
                )
        except Exception as exc:
            log.exception("storing CI job reports failed")
            return _error(503, f"store unavailable: {type(exc).__name__}")
        if result.rejected:
            return _error(400, "invalid job report: nothing stored", problems=result.reasons)
        return jsonify({"reports": len(reports), **result.as_dict()}), 200

    @bp.get("/api/ci/lead-times")
    def lead_times() -> tuple[Response, int]:
        now = utcnow()
        repo = request.args.get("repo") or None
        try:
            end = _parse_bound("to", request.args.get("to"), now)
            start = _parse_bound(
                "from", request.args.get("from"), end - timedelta(days=DEFAULT_API_DAYS)
            )
            window = Window(start, end)
        except ValueError as exc:
            return _error(400, str(exc))
        if end - start > timedelta(days=MAX_API_DAYS):
            return _error(400, f"from/to: window longer than {MAX_API_DAYS} days")
        pattern = ctx.settings.github.preview_environment_pattern
        try:
            with ctx.session() as session:
                df = lead_time_frame(session, window=window, repo=repo, preview_pattern=pattern)
                waiting = waiting_shas_frame(
                    session, as_of=min(end, now), since=start, repo=repo, preview_pattern=pattern
                )
        except Exception as exc:
            log.exception("lead-time query failed")
            return _error(503, f"store unavailable: {type(exc).__name__}")
        summary = summarize_lead_times(df)
        body: dict[str, Any] = {
            "repo": repo,
            "from": iso(start),
            "to": iso(end),
            "definition": get_metric("ci.pr_preview_lead_time").definition,
            "preview_environment_pattern": pattern,
            "p50_s": summary.p50_s,
            "p95_s": summary.p95_s,
            "count": summary.count,
            "rows": [_lead_time_row(r) for r in records(df)],
            "waiting": {
                "count": len(waiting),
                "rows": [
                    {
                        "repo": w["repo"],
                        "sha": w["sha"],
                        "started_at": iso(_when(w["started_at"])),
                        "waiting_s": float(w["waiting_s"]),
                    }
                    for w in records(waiting)
                ],
            },
        }
        return jsonify(body), 200

    @bp.get("/api/ci/quarantine")
    def quarantine() -> tuple[Response, int]:
        repo = request.args.get("repo") or None
        now = utcnow()
        try:
            with ctx.session() as session:
                df = quarantine_frame(session, as_of=now, repo=repo)
        except Exception as exc:
            log.exception("quarantine query failed")
            return _error(503, f"store unavailable: {type(exc).__name__}")
        active = df[df["active"]] if not df.empty else df
        return jsonify(
            {
                "repo": repo,
                "as_of": iso(now),
                "tests": [
                    {
                        "repo": q["repo"],
                        "test_id": q["test_id"],
                        "owner": q["owner"] if isinstance(q["owner"], str) else None,
                        "last_flaked_at": iso(_when(q["last_flaked_at"])),
                        "expires_at": iso(_when(q["expires_at"])),
                    }
                    for q in records(active)
                ],
            }
        ), 200

    return bp
