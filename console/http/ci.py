"""CI velocity over HTTP: the GitHub webhook receiver, CI job reports, the lead-time API.

- `POST /ingest/github`: GitHub webhooks, HMAC-SHA256 signed (`X-Hub-Signature-256`), idempotent
  by `X-GitHub-Delivery`. 401 on a bad or missing signature; 202 for events we do not use.
- `POST /ingest/ci`: job reports (`collectors.ci_ingest` schema; JSON, or JUnit XML as the body
  with the report fields as query parameters), bearer token. A bad batch stores nothing.

Both receivers are thin: credential check (`console.http.receivers`), bounded read, one
collector call (`ci_ingest.receive_*`), counts out. What the store cannot hold is dead-lettered
by the collector; 503 only when storage fails.
- `GET /api/ci/lead-times?repo=&from=&to=`: per-SHA PR→preview lead times with p50, p95, count
  and the SHAs still waiting.
- `GET /api/ci/quarantine?repo=`: the active flaky-test quarantine, for CI to skip those tests.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from flask import Blueprint, Response, jsonify, request

from collectors import ci_ingest
from collectors.base import InvalidItem, PayloadTooLarge, parse_time
from console.context import AppContext
from console.http.api import iso
from console.http.receivers import (
    BodyTooLarge,
    bearer_refusal,
    demo_secret,
    error,
    read_body,
    signature_refusal,
)
from console.settings import Settings
from console.settings.github import DEMO_CI_TOKEN, DEMO_WEBHOOK_SECRET
from store.ingest import IngestResult, utcnow
from store.metrics import Window, get_metric
from store.queries.ci import (
    lead_time_frame,
    quarantine_frame,
    summarize_lead_times,
    waiting_shas_frame,
)

log = logging.getLogger(__name__)

WEBHOOK_SOURCE = ci_ingest.WEBHOOK_SOURCE
MAX_WEBHOOK_BYTES = 25 * 1024 * 1024  # GitHub caps webhook payloads at 25 MB
MAX_CI_BYTES = 25 * 1024 * 1024
MAX_REPORTS = ci_ingest.MAX_REPORTS
DEFAULT_API_DAYS = 14
MAX_API_DAYS = 400
WEBHOOK_SETTING = "QUARTERDECK_GITHUB__WEBHOOK_SECRET"
CI_SETTING = "QUARTERDECK_INGEST__CI_TOKEN"


def webhook_secret(settings: Settings) -> str | None:
    """The webhook secret in force (demo mode falls back to the printed demo secret)."""
    return demo_secret(
        settings.github.webhook_secret,
        demo_mode=settings.demo_mode,
        demo_value=DEMO_WEBHOOK_SECRET,
        setting=WEBHOOK_SETTING,
    )


def ci_token(settings: Settings) -> str | None:
    """The `/ingest/ci` bearer token: `QUARTERDECK_INGEST__CI_TOKEN`, else the GitHub setting."""
    value = settings.ingest.ci_token or settings.github.ci_ingest_token
    return demo_secret(
        value, demo_mode=settings.demo_mode, demo_value=DEMO_CI_TOKEN, setting=CI_SETTING
    )


def _error(status: int, message: str, **extra: Any) -> tuple[Response, int]:
    return error(status, message, **extra)


def _counts(result: IngestResult) -> dict[str, Any]:
    return result.as_dict() | {"rejects": result.reasons[:100]}


def _parse_bound(name: str, value: str | None, default: datetime) -> datetime:
    if not value:
        return default
    try:
        if len(value) == 10:  # a bare date means midnight UTC
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        return parse_time(value, field=name)
    except (ValueError, InvalidItem) as exc:
        raise ValueError(f"{name}: {value!r} is not a date or RFC 3339 timestamp") from exc


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
        try:
            body = read_body(MAX_WEBHOOK_BYTES) if secret else b""
        except BodyTooLarge as exc:
            return _error(413, str(exc))
        refused = signature_refusal(
            secret, body, header_name="X-Hub-Signature-256", setting=WEBHOOK_SETTING
        )
        if refused:
            return refused
        event = request.headers.get("X-GitHub-Event")
        delivery = request.headers.get("X-GitHub-Delivery")
        if not event:
            return _error(400, "missing X-GitHub-Event header")
        if not delivery:
            return _error(400, "missing X-GitHub-Delivery header")
        try:
            with ctx.session() as session:
                result = ci_ingest.receive_github_delivery(
                    session,
                    body,
                    content_type=request.content_type or "",
                    event=event,
                    delivery_id=delivery,
                    received_at=utcnow(),
                )
        except Exception as exc:
            log.exception("storing GitHub delivery %s failed", delivery)
            return _error(503, f"store unavailable: {type(exc).__name__}")
        if result.duplicates:
            return jsonify({"delivery": delivery, "duplicate": True}), 200
        if result.refused:
            return _error(400, result.refused, delivery=delivery)
        if result.ignored:
            return jsonify({"delivery": delivery, "event": event, "ignored": True}), 202
        return jsonify({"delivery": delivery, "event": event, **_counts(result)}), 200

    @bp.post("/ingest/ci")
    def ingest_ci() -> tuple[Response, int]:
        refused = bearer_refusal(ci_token(ctx.settings), setting=CI_SETTING, path="/ingest/ci")
        if refused:
            return refused
        try:
            body = read_body(MAX_CI_BYTES)
            with ctx.session() as session:
                result = ci_ingest.receive_job_reports(
                    session,
                    body,
                    content_type=request.content_type or "",
                    params=request.args.to_dict(),
                    received_at=utcnow(),
                    quarantine_days=ctx.settings.github.quarantine_days,
                )
        except (BodyTooLarge, PayloadTooLarge) as exc:
            return _error(413, str(exc))
        except Exception as exc:
            log.exception("storing CI job reports failed")
            return _error(503, f"store unavailable: {type(exc).__name__}")
        if result.refused:
            return _error(400, result.refused, problems=result.reasons)
        return jsonify(_counts(result)), 200

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
