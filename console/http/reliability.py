"""Reliability HTTP: `POST /ingest/incidents`, `POST /ingest/alertmanager`, `GET /api/incidents`,
`GET /api/gates/<service>`.

- `/ingest/incidents` (bearer token) takes one incident object or a list; one invalid incident
  refuses the batch with 400 naming it, and stores nothing (a later report updates resolution).
  An Alertmanager webhook body sent there is read as one (the collector tells them apart).
- `/ingest/alertmanager` takes Alertmanager's webhook (version 4) authenticated as its
  `http_config` can: `authorization: {type: Bearer, credentials…}` or `basic_auth` with the
  token as password (any user name); both go through `console.http.receivers`. Alertmanager
  drops a 4xx and retries a 5xx, so a body is refused (400) only when it is not a webhook at
  all; a bad alert is dead-lettered and the rest stored; 503 only when storage fails.
- `/api/incidents?status=open|resolved` lists incidents with their alerts (signed-in users).
- `/api/gates/<service>` answers 200 `{"state": "normal"}` or 423 `{"state": "freeze", "reason"}`
  from the error-budget policy, so CI can ask before deploying (`?at=` evaluates another
  instant); each SLO says whether it had data and which no-data policy applied.

Handlers are thin: credential check, bounded read, one collector or query call, JSON out.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request
from sqlalchemy.orm import Session

from collectors import incidents
from collectors.base import InvalidItem, parse_time
from console import evidence_service as service
from console.context import AppContext
from console.http.receivers import (
    BodyTooLarge,
    bearer_matches,
    bearer_refusal,
    demo_secret,
    read_body,
)
from console.http.receivers import error as _error
from console.settings.ingest import DEMO_INCIDENTS_TOKEN
from store.ingest import IngestResult, utcnow
from store.queries.reliability import incidents_with_alerts, policy_state
from store.slo import BURN_WINDOWS, SloConfigError, format_duration

log = logging.getLogger(__name__)

MAX_INCIDENT_BYTES = 10 * 1024 * 1024
MAX_INCIDENTS = incidents.MAX_INCIDENTS
INCIDENTS_SETTING = "QUARTERDECK_INGEST__INCIDENTS_TOKEN"


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def incidents_token(ctx: AppContext) -> str | None:
    """The incidents/Alertmanager bearer token (the demo token in demo mode when none is set)."""
    cfg = service.config(ctx)
    return demo_secret(
        cfg.incidents_token,
        demo_mode=cfg.demo_mode,
        demo_value=DEMO_INCIDENTS_TOKEN,
        setting=INCIDENTS_SETTING,
    )


def _basic_as_bearer(expected: str | None) -> tuple[Response, int] | bool:
    """Alertmanager's `basic_auth`: True when its password is the token, a refusal when not,
    False when the request does not use Basic at all."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    if not expected:
        return _error(503, f"receiver disabled: set {INCIDENTS_SETTING}")
    try:
        _user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        password = ""
    if password and bearer_matches(expected, f"Bearer {password}"):
        return True
    response, status = _error(401, f"basic credentials are not valid for {request.path}")
    response.headers["WWW-Authenticate"] = 'Basic realm="quarterdeck"'
    return response, status


def _receive(
    ctx: AppContext, source: str, *, basic: bool, store: Callable[[Session, bytes], IngestResult]
) -> tuple[Response, int]:
    """Credential → bounded read → one collector call → counts (400 refused, 503 store down)."""
    token = incidents_token(ctx)
    via_basic = _basic_as_bearer(token) if basic else False
    if isinstance(via_basic, tuple):
        return via_basic
    if via_basic is not True:
        refused = bearer_refusal(token, setting=INCIDENTS_SETTING, path=request.path)
        if refused:
            return refused
    try:
        body = read_body(MAX_INCIDENT_BYTES)
        with ctx.session() as session:
            result = store(session, body)
    except BodyTooLarge as exc:
        return _error(413, str(exc))
    except Exception as exc:
        log.exception("storing %s failed", source)
        return _error(503, f"store unavailable: {type(exc).__name__}")
    if result.refused:
        return _error(400, result.refused, problems=result.reasons)
    return jsonify(result.as_dict() | {"rejects": result.reasons[:100]}), 200


def _gate_body(ctx: AppContext, service_name: str, at: datetime) -> tuple[dict[str, Any], int]:
    slos = service.slo_definitions(ctx)
    if not any(s.service == service_name for s in slos):
        return {"error": f"no SLO is defined for service {service_name!r}"}, 404
    with ctx.session() as session:
        state, reason, statuses = policy_state(session, slos, service=service_name, as_of=at)
    body: dict[str, Any] = {
        "service": service_name,
        "state": state,
        "as_of": _iso(at),
        "slos": [
            {
                "slo": s.slo.slo,
                "objective": s.slo.objective,
                "window": s.slo.window,
                "state": s.state,
                "no_data": s.no_data,
                "no_data_policy": s.slo.policy.no_data,
                "policy_applied": "no_data" if s.no_data else "budget",
                "samples": s.samples,
                "budget_remaining": None
                if s.budget_remaining is None
                else round(s.budget_remaining, 6),
                "burn_rates": {
                    format_duration(w): None if s.burn[w] is None else round(s.burn[w] or 0, 4)
                    for w in BURN_WINDOWS
                },
                "alerts": [f"{p.pair.severity} {p.pair.label}" for p in s.firing],
                "reason": s.reason,
            }
            for s in statuses
        ],
    }
    if reason:
        body["reason"] = reason
    return body, 423 if state == "freeze" else 200


def make_blueprint(ctx: AppContext) -> Blueprint:
    """Build the reliability blueprint; handlers close over ``ctx``."""
    bp = Blueprint("reliability", __name__)
    if incidents_token(ctx) == DEMO_INCIDENTS_TOKEN:
        log.warning(
            "demo mode: /ingest/incidents and /ingest/alertmanager bearer token is %r",
            DEMO_INCIDENTS_TOKEN,
        )

    @bp.post("/ingest/incidents")
    def ingest_incidents() -> tuple[Response, int]:
        return _receive(
            ctx,
            incidents.SOURCE,
            basic=False,
            store=lambda s, body: incidents.receive_incidents(s, body, received_at=utcnow()),
        )

    @bp.post("/ingest/alertmanager")
    def ingest_alertmanager() -> tuple[Response, int]:
        return _receive(
            ctx,
            incidents.AM_SOURCE,
            basic=True,
            store=lambda s, body: incidents.receive_alertmanager(s, body, received_at=utcnow()),
        )

    @bp.get("/api/incidents")
    def list_incidents() -> tuple[Response, int]:
        status = request.args.get("status") or None
        if status not in (None, "open", "resolved"):
            return _error(400, f"status: {status!r} is not open or resolved")
        try:
            with ctx.session() as session:
                found = incidents_with_alerts(session, status=status)
        except Exception as exc:
            log.exception("listing incidents failed")
            return _error(503, f"store unavailable: {type(exc).__name__}")
        return jsonify({"status": status or "all", "incidents": found}), 200

    @bp.get("/api/gates/<service_name>")
    def gate(service_name: str) -> tuple[Response, int]:
        at = utcnow()
        if request.args.get("at"):
            try:
                at = parse_time(request.args["at"], field="at")
            except InvalidItem as exc:
                return _error(400, str(exc))
        try:
            body, status = _gate_body(ctx, service_name, at)
        except SloConfigError as exc:
            return _error(500, "invalid SLO definitions", problems=exc.problems)
        except Exception as exc:
            log.exception("error-budget gate for %s failed", service_name)
            return _error(503, f"store unavailable: {type(exc).__name__}")
        return jsonify(body), status

    return bp
