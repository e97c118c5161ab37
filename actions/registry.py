"""The guarded-action lifecycle: plan → rules → approval → apply → verify → audit (and rollback).

Every entry point checks the actor's role here, server-side, whatever the UI showed. Refusals
return a :class:`Response` instead of raising, so the caller commits the refusal's audit row
together with the untouched world.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from actions.base import (
    SYSTEM_CLOCK,
    ActionPolicy,
    Actor,
    ApplyOutcome,
    Clock,
    GuardedAction,
    InvalidParams,
    PlanView,
    RuleResult,
)
from store.audit import append_audit
from store.models.actions import ActionApproval, ActionLock, ActionPlan

log = logging.getLogger(__name__)

TWO_PERSON_RULE = "two-person-approval"


def user_key(name: str) -> str:
    """One person, one key: names compare trimmed and case-folded (`Cara@X` is `cara@x`).

    The console hands over canonical names already (`console.auth.identity.user_key`, the same
    rule); this guards rows written before, and any other caller.
    """
    return name.strip().casefold()


IN_FLIGHT_RULE = "no-change-in-flight"
# "dry-run" is the status rows written before issue 15 carry; a rehearsal no longer changes it.
APPLICABLE = ("planned", "blocked", "approved", "dry-run")
WAITING = ("planned", "blocked", "approved", "dry-run")
ENVIRONMENT = re.compile(r"[a-z0-9][a-z0-9-]{0,49}")


@dataclass
class Response:
    """The answer to one lifecycle request: ok, a message for the person, the plan if any."""

    ok: bool
    message: str
    plan: ActionPlan | None = None
    blocked_by: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "message": self.message,
            "blocked_by": self.blocked_by,
            "plan": plan_dict(self.plan) if self.plan is not None else None,
        }


def plan_dict(plan: ActionPlan) -> dict[str, Any]:
    """A plan as JSON-ready data (CLI `--json`, API, page stores)."""
    return {
        "plan_id": plan.plan_id,
        "action": plan.action,
        "target": plan.target,
        "environment": plan.environment,
        "status": plan.status,
        "requested_by": plan.requested_by,
        "requested_at": plan.requested_at.isoformat(),
        "params": plan.params,
        "before": plan.before,
        "after": plan.after,
        "rules": plan.rules,
        "preview": plan.preview,
        "reason": plan.reason,
        "rollback_of": plan.rollback_of,
        "applied_by": plan.applied_by,
        "live": plan.live,
        "overrides": plan.overrides,
        "result": plan.result,
    }


def _view(plan: ActionPlan) -> PlanView:
    return PlanView(
        plan_id=plan.plan_id,
        environment=plan.environment,
        params=dict(plan.params),
        before=dict(plan.before),
        after=dict(plan.after),
        actor=plan.applied_by or plan.requested_by,
        reason=plan.reason,
    )


class ActionService:
    """Runs the lifecycle for the registered actions under one :class:`ActionPolicy`."""

    def __init__(
        self, actions: list[GuardedAction], policy: ActionPolicy, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.actions = {a.slug: a for a in actions}
        self.policy = policy
        self.clock = clock  # every expiry, deadline and audit time is read from this

    # -- helpers --------------------------------------------------------------------------

    def _audit(
        self,
        session: Session,
        actor: Actor | str,
        action: str,
        target: str,
        environment: str | None,
        outcome: str,
        **detail: Any,
    ) -> None:
        name = actor if isinstance(actor, str) else actor.name
        append_audit(
            session,
            actor=name,
            action=action,
            target=target,
            environment=environment,
            outcome=outcome,
            detail=detail,
            at=self.clock(),
        )

    def _refuse(
        self,
        session: Session,
        actor: Actor,
        action: str,
        target: str,
        environment: str | None,
        message: str,
        *,
        plan: ActionPlan | None = None,
        blocked_by: list[str] | None = None,
    ) -> Response:
        self._audit(
            session,
            actor,
            action,
            target,
            environment,
            "refused",
            message=message,
            plan_id=plan.plan_id if plan else None,
            blocked_by=blocked_by or [],
        )
        return Response(False, message, plan, blocked_by or [])

    def get(self, session: Session, plan_id: str) -> ActionPlan | None:
        """Return the stored plan ``plan_id`` or None."""
        return session.scalar(select(ActionPlan).where(ActionPlan.plan_id == plan_id))

    def is_production(self, environment: str) -> bool:
        return environment in self.policy.production_environments

    def lock_holder(
        self, session: Session, target: str, *, at: datetime, ignore: str | None = None
    ) -> ActionLock | None:
        """Return the lock on ``target`` that still blocks, if any.

        A lock is stale, and never blocks, once it expired (`lock_ttl_s`) or its change ended:
        its plan is no longer `applied` (verified, unverified, failed, rolled back), or
        its verify deadline passed — then the change is concluded here (`unverified` unless
        observed) and the lock released. ``ignore`` names a plan whose lock does not count (a
        rollback's own original).
        """
        lock = session.scalar(select(ActionLock).where(ActionLock.target == target))
        if lock is None or _aware(lock.expires_at) <= at or lock.plan_id == ignore:
            return None
        holder = self.get(session, lock.plan_id)
        if holder is None:  # not a plan we can see: it blocks until it expires
            return lock
        if holder.status != "applied":
            return None
        deadline = holder.verify_deadline
        if deadline is not None and _aware(deadline) <= at:  # one last look, then conclude
            verdict = self.actions[holder.action].verify(session, _view(holder))
            self._conclude(session, holder, "quarterdeck", verdict)
            return None
        return lock

    def valid_approvals(self, session: Session, plan: ActionPlan, *, at: datetime) -> list[str]:
        """Return approvers whose approval of ``plan`` still counts (unexpired, not requester)."""
        rows = session.scalars(
            select(ActionApproval).where(ActionApproval.plan_id == plan.plan_id)
        ).all()
        requester = user_key(plan.requested_by)
        return [r.approver for r in rows if r.expires_at > at and user_key(r.approver) != requester]

    def plan_expires(self, plan: ActionPlan) -> datetime:
        """When ``plan`` stops being applicable (requested + `plan_ttl_s`)."""
        return plan.requested_at + timedelta(seconds=self.policy.plan_ttl_s)

    def _expire(self, session: Session, plan: ActionPlan) -> bool:
        """Mark a waiting plan past its expiry `expired` (audited once); True when expired."""
        if plan.status == "expired":
            return True
        if plan.status not in WAITING or self.clock() < _aware(self.plan_expires(plan)):
            return False
        plan.status = "expired"
        self._audit(
            session,
            "quarterdeck",
            plan.action,
            plan.target,
            plan.environment,
            "expired",
            plan_id=plan.plan_id,
        )
        return True

    def approvals(self, session: Session, plan: ActionPlan) -> list[dict[str, Any]]:
        """Every approval of ``plan``: approver, when, until when, and whether it still counts."""
        now = self.clock()
        requester = user_key(plan.requested_by)
        return [
            {
                "approver": a.approver,
                "approved_at": _aware(a.approved_at).isoformat(),
                "expires_at": _aware(a.expires_at).isoformat(),
                "valid": _aware(a.expires_at) > now and user_key(a.approver) != requester,
            }
            for a in session.scalars(
                select(ActionApproval)
                .where(ActionApproval.plan_id == plan.plan_id)
                .order_by(ActionApproval.approved_at)
            ).all()
        ]

    def next_steps(self, session: Session, plan: ActionPlan, actor: Actor | None) -> dict[str, Any]:
        """The steps left for ``plan``, who must act next, and what ``actor`` may do now.

        The page renders this (and enables its buttons from `may`); the service still checks
        every request itself.
        """
        now = self.clock()
        production = self.is_production(plan.environment)
        live_env = plan.environment in self.policy.live_environments
        approvers = self.valid_approvals(session, plan, at=now) if production else []
        waiting = plan.status in WAITING and now < _aware(self.plan_expires(plan))
        failed = [r["name"] for r in plan.rules if not r["passed"]]
        me = user_key(actor.name) if actor else None
        requester = user_key(plan.requested_by)
        steps: list[dict[str, Any]] = [
            {
                "step": "plan",
                "done": True,
                "text": f"planned by {plan.requested_by} (no change made)",
            }
        ]
        if production:
            steps.append(
                {
                    "step": "approve",
                    "done": bool(approvers) or plan.live,
                    "text": "approved by " + ", ".join(approvers)
                    if approvers
                    else f"a captain other than {plan.requested_by} approves",
                }
            )
        applied = plan.status in ("applied", "verified", "unverified", "failed")
        steps.append(
            {
                "step": "apply",
                "done": applied,
                "text": (
                    f"applied by {plan.applied_by}"
                    if applied
                    else ("apply changes the world" if live_env else "apply rehearses only")
                    + f" ({plan.environment} is {'' if live_env else 'not '}a live environment)"
                ),
            }
        )
        steps.append(
            {
                "step": "verify",
                "done": plan.status == "verified",
                "text": {
                    "verified": "the change was observed",
                    "unverified": "not observed: roll back or investigate",
                }.get(plan.status, "the change is read back after apply"),
            }
        )
        if not waiting and plan.status in WAITING:
            nxt = f"expired {self.plan_expires(plan):%Y-%m-%d %H:%M} UTC: plan again"
        elif plan.status == "blocked" and waiting:
            nxt = "blocked by " + ", ".join(failed) + ": fix the cause and plan again, or an admin"
            nxt += " applies with a break-glass override and a reason"
        elif waiting and production and not approvers:
            nxt = f"waiting for a captain other than {plan.requested_by} to approve"
        elif waiting:
            nxt = f"ready: {plan.requested_by} or another sre/captain applies"
        elif plan.status == "applied":
            nxt = "applied: verify to read the change back"
        elif plan.status in ("unverified", "failed"):
            nxt = f"{plan.status}: roll back (a new plan) or investigate"
        else:
            nxt = f"done ({plan.status})"
        may = {
            "approve": bool(
                actor
                and actor.may_approve
                and me != requester
                and waiting
                and production
                and not any(user_key(a) == me for a in self.valid_approvals(session, plan, at=now))
            ),
            "apply": bool(actor and actor.may_plan and waiting),
            "verify": bool(actor and actor.may_plan and plan.status == "applied"),
            "rollback": bool(
                actor
                and actor.may_plan
                and plan.status in ("applied", "verified", "unverified", "failed")
            ),
            "override": bool(actor and actor.may_override and waiting and failed),
        }
        return {
            "steps": steps,
            "next": nxt,
            "may": may,
            "live": live_env,
            "expires_at": _aware(self.plan_expires(plan)).isoformat(),
            "approvals": self.approvals(session, plan),
        }

    def inbox(self, session: Session, actor: Actor | None) -> list[dict[str, Any]]:
        """Plans waiting for ``actor``'s approval: production, unexpired, not theirs, unapproved.

        Empty for anyone who may not approve. Each entry is `plan_dict` plus `age_s`,
        `expires_at`.
        """
        if actor is None or not actor.may_approve:
            return []
        now = self.clock()
        me = user_key(actor.name)
        rows = session.scalars(
            select(ActionPlan)
            .where(
                ActionPlan.status.in_(WAITING),
                ActionPlan.environment.in_(sorted(self.policy.production_environments)),
            )
            .order_by(ActionPlan.requested_at)
        ).all()
        waiting = []
        for plan in rows:
            if user_key(plan.requested_by) == me or now >= _aware(self.plan_expires(plan)):
                continue
            if self.valid_approvals(session, plan, at=now):
                continue
            waiting.append(
                plan_dict(plan)
                | {
                    "age_s": (now - _aware(plan.requested_at)).total_seconds(),
                    "expires_at": _aware(self.plan_expires(plan)).isoformat(),
                }
            )
        return waiting

    # -- plan -----------------------------------------------------------------------------

    def plan(
        self,
        session: Session,
        actor: Actor,
        slug: str,
        params: dict[str, Any],
        environment: str,
        *,
        reason: str = "",
        rollback_of: str | None = None,
    ) -> Response:
        """Read state, compute the diff and every rule, store the plan and audit it."""
        target_hint = str(params.get("record") or params.get("bundle") or "?")
        action = self.actions.get(slug)
        if action is None:
            known = ", ".join(sorted(self.actions))
            return self._refuse(
                session,
                actor,
                slug,
                target_hint,
                environment,
                f"unknown action {slug!r} (known: {known})",
            )
        if not actor.may_plan:
            return self._refuse(
                session,
                actor,
                slug,
                target_hint,
                environment,
                f"{actor.name} may not plan changes (needs role sre, captain or admin)",
            )
        if not ENVIRONMENT.fullmatch(environment or ""):
            return self._refuse(
                session,
                actor,
                slug,
                target_hint,
                None,
                f"environment {environment!r}: 1–50 lower-case letters, digits or dashes",
            )
        try:
            proposal = action.propose(session, params, environment)
        except InvalidParams as exc:
            return self._refuse(session, actor, slug, target_hint, environment, str(exc))
        now = self.clock()
        rules = list(proposal.rules)
        lock = self.lock_holder(session, proposal.target, at=now, ignore=rollback_of)
        rules.append(
            RuleResult(
                IN_FLIGHT_RULE,
                lock is None,
                "no other change holds this target"
                if lock is None
                else f"plan {lock.plan_id} by {lock.holder} is in flight on this target",
            )
        )
        blocked = [r.name for r in rules if not r.passed]
        plan = ActionPlan(
            plan_id=uuid.uuid4().hex[:12],
            action=slug,
            target=proposal.target,
            environment=environment,
            requested_by=actor.name,
            requested_at=now,
            params=params,
            before=proposal.before,
            after=proposal.after,
            rules=[r.as_dict() for r in rules],
            preview=proposal.preview,
            state_token=proposal.state_token,
            status="blocked" if blocked else "planned",
            reason=reason,
            rollback_of=rollback_of,
            live=False,
            overrides=[],
            result={},
        )
        session.add(plan)
        session.flush()
        self._audit(
            session,
            actor,
            slug,
            plan.target,
            environment,
            plan.status,
            plan_id=plan.plan_id,
            before=plan.before,
            after=plan.after,
            blocked_by=blocked,
            reason=reason,
            rollback_of=rollback_of,
        )
        if blocked:
            return Response(False, "blocked by " + ", ".join(blocked), plan, blocked)
        needs = (
            " (production: needs another person's approval)"
            if self.is_production(environment)
            else ""
        )
        return Response(True, f"plan {plan.plan_id} ready{needs}", plan)

    # -- approve --------------------------------------------------------------------------

    def approve(self, session: Session, actor: Actor, plan_id: str) -> Response:
        """Record ``actor``'s approval: a captain or admin who did not request the change."""
        plan = self.get(session, plan_id)
        if plan is None:
            return self._refuse(session, actor, "approve", plan_id, None, f"no plan {plan_id!r}")
        refuse = self._refuse
        if not actor.may_approve:
            return refuse(
                session,
                actor,
                plan.action,
                plan.target,
                plan.environment,
                f"{actor.name} may not approve (needs role captain or admin)",
                plan=plan,
            )
        if user_key(actor.name) == user_key(plan.requested_by):
            return refuse(
                session,
                actor,
                plan.action,
                plan.target,
                plan.environment,
                "two-person rule: the requester cannot approve their own change",
                plan=plan,
            )
        if self._expire(session, plan):
            return refuse(
                session,
                actor,
                plan.action,
                plan.target,
                plan.environment,
                f"plan {plan_id} expired {self.plan_expires(plan):%Y-%m-%d %H:%M} UTC "
                "before it was applied: plan again",
                plan=plan,
            )
        if plan.status not in WAITING:
            return refuse(
                session,
                actor,
                plan.action,
                plan.target,
                plan.environment,
                f"plan {plan_id} is {plan.status}; nothing to approve",
                plan=plan,
            )
        now = self.clock()
        expires = now + timedelta(seconds=self.policy.approval_ttl_s)
        try:
            with session.begin_nested():
                session.add(
                    ActionApproval(
                        plan_id=plan_id, approver=actor.name, approved_at=now, expires_at=expires
                    )
                )
        except IntegrityError:
            existing = session.scalar(
                select(ActionApproval).where(
                    ActionApproval.plan_id == plan_id, ActionApproval.approver == actor.name
                )
            )
            if existing is not None:
                existing.approved_at, existing.expires_at = now, expires
        if plan.status == "planned":
            plan.status = "approved"
        self._audit(
            session,
            actor,
            plan.action,
            plan.target,
            plan.environment,
            "approved",
            plan_id=plan_id,
            requested_by=plan.requested_by,
            expires_at=expires.isoformat(),
        )
        return Response(True, f"approved until {expires:%Y-%m-%d %H:%M} UTC", plan)

    # -- apply ----------------------------------------------------------------------------

    def apply(
        self,
        session: Session,
        actor: Actor,
        plan_id: str,
        *,
        reason: str,
        live: bool | None = None,
        override: list[str] | None = None,
    ) -> Response:
        """Apply a stored plan after checking role, rules, approvals, drift and the lock.

        ``live=None`` (the default) applies for real where the environment allows it
        (`live_environments`) and rehearses elsewhere; ``live=False`` asks for a rehearsal. A
        rehearsal changes nothing, not even the plan's status: approval and apply stay open.
        """
        plan = self.get(session, plan_id)
        if plan is None:
            return self._refuse(session, actor, "apply", plan_id, None, f"no plan {plan_id!r}")
        action = self.actions[plan.action]

        def refuse(message: str, blocked: list[str] | None = None) -> Response:
            return self._refuse(
                session,
                actor,
                plan.action,
                plan.target,
                plan.environment,
                message,
                plan=plan,
                blocked_by=blocked,
            )

        if not actor.may_plan:
            return refuse(f"{actor.name} may not apply changes (needs role sre, captain or admin)")
        if not reason.strip():
            return refuse("a reason is required")
        if plan.status not in APPLICABLE:
            return refuse(f"plan {plan_id} is {plan.status}; plan again to change it")
        if self._expire(session, plan):
            return refuse(
                f"plan {plan_id} expired {self.plan_expires(plan):%Y-%m-%d %H:%M} UTC "
                "before it was applied: plan again"
            )
        if live is None:
            live = plan.environment in self.policy.live_environments
        now = self.clock()
        failed = [RuleResult(**r) for r in plan.rules if not r["passed"]]
        if live and self.is_production(plan.environment):
            approvers = self.valid_approvals(session, plan, at=now)
            if not approvers:
                failed.append(RuleResult(TWO_PERSON_RULE, False, self._approval_gap(session, plan)))
        overrides = sorted(set(override or []))
        if overrides and not actor.may_override:
            return refuse("break-glass override needs the admin role")
        blocking = [r for r in failed if r.name not in overrides]
        if blocking:
            text = "; ".join(f"{r.name} ({r.reason})" for r in blocking)
            return refuse("blocked by " + text, [r.name for r in blocking])
        hard = [r.name for r in failed if not r.overridable]
        if hard:
            return refuse("cannot be overridden: " + ", ".join(hard), hard)
        unused = [o for o in overrides if o not in {r.name for r in failed}]
        if unused:
            return refuse("override names rules that did not fail: " + ", ".join(unused))
        if live and plan.environment not in self.policy.live_environments:
            return refuse(
                f"live apply is not enabled for {plan.environment} "
                "(QUARTERDECK_ACTIONS__LIVE_ENVIRONMENTS); run it as a dry run"
            )
        view = _view(plan)
        try:
            token = action.current_token(session, view)
        except InvalidParams as exc:
            return refuse(f"cannot re-read the target: {exc}")
        if token != plan.state_token:
            return refuse("state changed since the plan was made: plan again", ["state-unchanged"])
        if overrides:
            self._audit(
                session,
                actor,
                plan.action,
                plan.target,
                plan.environment,
                "override",
                plan_id=plan_id,
                bypassed=overrides,
                reason=reason,
            )
        if not live:
            try:
                outcome = action.apply(session, view, live=False)
            except InvalidParams as exc:
                return refuse(f"cannot rehearse: {exc}")
            plan.result = {"dry_run": outcome.detail, "message": outcome.message}
            self._audit(
                session,
                actor,
                plan.action,
                plan.target,
                plan.environment,
                "dry-run" if outcome.ok else "failed",
                plan_id=plan_id,
                reason=reason,
                message=outcome.message,
                before=plan.before,
                after=plan.after,
            )
            note = (
                ""
                if plan.environment in self.policy.live_environments
                else f" ({plan.environment} is not a live environment: apply only rehearses)"
            )
            return Response(outcome.ok, outcome.message + note, plan)
        if not self._take_lock(session, plan, actor, now):
            return refuse(f"another change is in flight on {plan.target}", [IN_FLIGHT_RULE])
        plan.applied_by, plan.applied_at, plan.live = actor.name, now, True
        plan.reason = reason
        plan.overrides = overrides
        view = _view(plan)
        try:
            outcome = action.apply(session, view, live=True)
        except Exception as exc:  # a provider failure is recorded, never half-silent
            log.exception("apply of %s failed", plan_id)
            outcome = action_failure(exc)
        plan.result = {"message": outcome.message, **outcome.detail}
        if not outcome.ok:
            plan.status = "failed"
            self._release(session, plan.target, plan_id)
        elif outcome.verified is None:
            plan.status = "applied"
            plan.verify_deadline = now + timedelta(seconds=self.policy.verify_timeout_s)
        else:
            plan.status = "verified" if outcome.verified else "unverified"
            self._release(session, plan.target, plan_id)
        self._audit(
            session,
            actor,
            plan.action,
            plan.target,
            plan.environment,
            "applied" if outcome.ok else "failed",
            plan_id=plan_id,
            reason=reason,
            before=plan.before,
            after=plan.after,
            overrides=overrides,
            verified=outcome.verified,
            message=outcome.message,
            approvers=self.valid_approvals(session, plan, at=now),
            requested_by=plan.requested_by,
        )
        return Response(outcome.ok, outcome.message, plan)

    def _approval_gap(self, session: Session, plan: ActionPlan) -> str:
        others = [
            a
            for a in session.scalars(
                select(ActionApproval).where(ActionApproval.plan_id == plan.plan_id)
            ).all()
            if user_key(a.approver) != user_key(plan.requested_by)
        ]
        expired = ", ".join(
            f"{a.approver}'s approval expired {a.expires_at:%Y-%m-%d %H:%M} UTC" for a in others
        )
        need = (
            "production needs an unexpired approval by someone other than the requester "
            f"({plan.requested_by})"
        )
        return f"{expired}; {need}" if expired else need

    def _take_lock(self, session: Session, plan: ActionPlan, actor: Actor, now: datetime) -> bool:
        expires = now + timedelta(seconds=self.policy.lock_ttl_s)
        holder = self.lock_holder(session, plan.target, at=now, ignore=plan.rollback_of)
        if holder is not None and holder.plan_id != plan.plan_id:
            return False
        # Whatever lock is left is stale, this plan's own, or the one its rollback takes over.
        session.execute(delete(ActionLock).where(ActionLock.target == plan.target))
        session.flush()
        try:
            with session.begin_nested():
                session.add(
                    ActionLock(
                        target=plan.target,
                        plan_id=plan.plan_id,
                        holder=actor.name,
                        acquired_at=now,
                        expires_at=expires,
                    )
                )
        except IntegrityError:
            return False
        return True

    def _release(self, session: Session, target: str, plan_id: str) -> None:
        session.execute(
            delete(ActionLock).where(ActionLock.target == target, ActionLock.plan_id == plan_id)
        )

    # -- verify ---------------------------------------------------------------------------

    def verify(self, session: Session, actor: Actor, plan_id: str) -> Response:
        """Check an applied plan; past its deadline an unobserved change becomes `unverified`."""
        plan = self.get(session, plan_id)
        if plan is None:
            return Response(False, f"no plan {plan_id!r}")
        if not actor.may_plan:  # verify needs the role of apply
            return self._refuse(
                session,
                actor,
                plan.action,
                plan.target,
                plan.environment,
                f"{actor.name} may not verify changes (needs role sre, captain or admin)",
                plan=plan,
            )
        if plan.status != "applied":
            return Response(plan.status == "verified", f"plan {plan_id} is {plan.status}", plan)
        verdict = self.actions[plan.action].verify(session, _view(plan))
        now = self.clock()
        if verdict is None and plan.verify_deadline and now < _aware(plan.verify_deadline):
            return Response(False, "waiting for the change to be observed", plan)
        self._conclude(session, plan, actor.name, verdict)
        message = (
            "verified"
            if verdict
            else "not observed within the timeout: unverified, rollback offered"
        )
        return Response(bool(verdict), message, plan)

    def _conclude(
        self, session: Session, plan: ActionPlan, actor: str, verdict: bool | None
    ) -> None:
        """End an applied change: `verified` when observed, else `unverified`; release its lock."""
        plan.status = "verified" if verdict else "unverified"
        self._release(session, plan.target, plan.plan_id)
        self._audit(
            session,
            actor,
            plan.action,
            plan.target,
            plan.environment,
            plan.status,
            plan_id=plan.plan_id,
        )

    # -- rollback -------------------------------------------------------------------------

    def rollback(self, session: Session, actor: Actor, plan_id: str, *, reason: str) -> Response:
        """Plan the return to ``plan_id``'s recorded "before" as a guarded action of its own."""
        plan = self.get(session, plan_id)
        if plan is None:
            return self._refuse(session, actor, "rollback", plan_id, None, f"no plan {plan_id!r}")
        if plan.status not in ("applied", "verified", "unverified", "failed"):
            return self._refuse(
                session,
                actor,
                plan.action,
                plan.target,
                plan.environment,
                f"plan {plan_id} is {plan.status}: only an applied change can be rolled back",
                plan=plan,
            )
        try:
            params = self.actions[plan.action].rollback_params(_view(plan))
        except InvalidParams as exc:
            return self._refuse(
                session, actor, plan.action, plan.target, plan.environment, str(exc), plan=plan
            )
        return self.plan(
            session,
            actor,
            plan.action,
            params,
            plan.environment,
            reason=reason or f"rollback of {plan_id}",
            rollback_of=plan_id,
        )


def _aware(at: datetime) -> datetime:
    """SQLite hands datetimes back naive; every stored time is UTC."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def action_failure(exc: Exception) -> ApplyOutcome:
    """Turn an unexpected provider exception into a failed outcome naming it."""
    return ApplyOutcome(False, f"{type(exc).__name__}: {exc}")
