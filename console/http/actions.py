"""Guarded actions over HTTP (`/api/actions/*`, `/api/audit/verify`).

`console.wiring.build_service` turns settings into the actions and their providers; the pages,
the CLI and these endpoints all go through it, so each path gets the same server-side checks.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, g, jsonify, request

from actions.dns_weights import known_records
from actions.registry import Response as ActionResponse
from actions.registry import plan_dict
from console.auth.users import actor_of
from console.context import AppContext
from console.http.receivers import request_json
from console.wiring import build_service
from store.audit import verify_chain
from store.queries.actions import recent_plans


def _answer(result: ActionResponse) -> tuple[Response, int]:
    status = (
        200 if result.ok else (404 if result.plan is None and "no plan" in result.message else 409)
    )
    if not result.ok and any(
        w in result.message for w in ("may not", "needs the admin", "two-person")
    ):
        status = 403
    return jsonify(result.as_dict()), status


def make_blueprint(ctx: AppContext) -> Blueprint:
    """Build the action API; every handler needs a signed-in identity and its permission.

    The role of each route is the permission table's (`console.auth.permissions`), checked by
    the auth gate before the handler runs; the action service checks again (the CLI's path).
    """
    bp = Blueprint("quarterdeck_actions", __name__)

    def body() -> dict[str, Any]:
        if not request.get_data(cache=True).strip():
            return {}
        try:
            data = request_json()
        except ValueError as exc:
            refusal = jsonify({"error": f"body: {exc}"})
            refusal.status_code = 400
            abort(refusal)
        if not isinstance(data, dict):
            refusal = jsonify({"error": "body: expected a JSON object"})
            refusal.status_code = 400
            abort(refusal)
        return data

    @bp.before_request
    def need_identity() -> tuple[Response, int] | None:
        if getattr(g, "identity", None) is None:
            return jsonify({"error": "sign in first"}), 401
        return None

    @bp.get("/api/actions/plans")
    def plans() -> Response:
        limit = min(int(request.args.get("limit", "50")), 500)
        with ctx.session() as session:
            return jsonify([plan_dict(p) for p in recent_plans(session, limit=limit)])

    @bp.get("/api/actions/inbox")
    def inbox() -> Response:
        """Plans waiting for the signed-in user's approval (empty for non-approvers)."""
        with ctx.session() as session:
            return jsonify(build_service(ctx.settings).inbox(session, actor_of(g.identity)))

    @bp.get("/api/actions/plans/<plan_id>")
    def one_plan(plan_id: str) -> tuple[Response, int]:
        """One plan with its steps left, who acts next and what the caller may do."""
        service = build_service(ctx.settings)
        with ctx.session() as session:
            found = service.get(session, plan_id)
            if found is None:
                return jsonify({"error": f"no plan {plan_id!r}"}), 404
            steps = service.next_steps(session, found, actor_of(g.identity))
            return jsonify(plan_dict(found) | {"next_steps": steps}), 200

    @bp.get("/api/actions/records")
    def records() -> Response:
        """The weighted records the Route 53 collector knows (the flip form's picker)."""
        with ctx.session() as session:
            return jsonify(known_records(session))

    @bp.post("/api/actions/plan")
    def plan() -> tuple[Response, int]:
        data = body()
        with ctx.session() as session:
            result = build_service(ctx.settings).plan(
                session,
                actor_of(g.identity),
                str(data.get("action", "")),
                dict(data.get("params") or {}),
                str(data.get("environment", "")),
                reason=str(data.get("reason", "")),
            )
            return _answer(result)

    @bp.post("/api/actions/<plan_id>/approve")
    def approve(plan_id: str) -> tuple[Response, int]:
        with ctx.session() as session:
            return _answer(
                build_service(ctx.settings).approve(session, actor_of(g.identity), plan_id)
            )

    @bp.post("/api/actions/<plan_id>/apply")
    def apply(plan_id: str) -> tuple[Response, int]:
        data = body()
        with ctx.session() as session:
            result = build_service(ctx.settings).apply(
                session,
                actor_of(g.identity),
                plan_id,
                reason=str(data.get("reason", "")),
                # absent: live where the environment allows it (a rehearsal elsewhere)
                live=None if data.get("live") is None else bool(data.get("live")),
                override=[str(r) for r in data.get("override") or []],
            )
            return _answer(result)

    @bp.post("/api/actions/<plan_id>/verify")
    def verify(plan_id: str) -> tuple[Response, int]:
        with ctx.session() as session:
            return _answer(
                build_service(ctx.settings).verify(session, actor_of(g.identity), plan_id)
            )

    @bp.post("/api/actions/<plan_id>/rollback")
    def rollback(plan_id: str) -> tuple[Response, int]:
        with ctx.session() as session:
            result = build_service(ctx.settings).rollback(
                session, actor_of(g.identity), plan_id, reason=str(body().get("reason", ""))
            )
            return _answer(result)

    @bp.get("/api/audit/verify")
    def audit_verify() -> tuple[Response, int]:
        with ctx.session() as session:
            verdict = verify_chain(session)
        return jsonify(verdict.as_dict()), 200 if verdict.ok else 409

    return bp
