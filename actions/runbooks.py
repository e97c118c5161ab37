"""Runbooks that run: ordered, typed steps executed as guarded actions (issue 19, MR-1102).

A runbook (`data/runbooks/<name>.yaml`) is data: checks (rules), DNS weight flips, a database
promotion, waits with a timeout, manual approvals (two-person rule) and notes. A *run* is
itself a guarded action (`runbook.run`): planning it validates the runbook; applying it opens a
:class:`~store.models.runbooks.RunbookRun` that the background job advances step by step.

- `practice` mode: every step is planned and checked, changing steps are rehearsed
  (`apply(live=False)`), waits and approvals are noted; nothing changes and the run still times
  itself. Its timeline goes to the `<environment>-practice` environment so a rehearsal never
  feeds the environment's RTO/RPO.
- `recovery` mode: changing steps are planned and applied live through the
  :class:`~actions.registry.ActionService` (in production only after the run's approval, which
  carries to each step and is audited so). The promote step marks the failover timeline
  (`started` at the moment the lag was read for promotion, `promoted`, `writable`), so RTO is
  promotion → first write and RPO the lag read from the database at promotion.

Every step, pause, resume, abort, approval and override appends a row to the hash-chained audit.
The timeline is written through a :class:`Timeline` the composition root passes in (actions do
not import collectors).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from actions.base import (
    SYSTEM_CLOCK,
    Actor,
    ApplyOutcome,
    Clock,
    GuardedAction,
    InvalidParams,
    PlanView,
    Proposal,
    RuleResult,
    state_token,
)
from actions.dns_weights import FlipDnsWeights, parse_weights
from actions.promote import PromoteDatabase, lag_rule
from actions.registry import TWO_PERSON_RULE, ActionService, Response, user_key
from actions.rules import error_budget_not_frozen, observed_share
from store.audit import append_audit
from store.models.actions import ActionApproval, ActionPlan
from store.models.runbooks import RUNBOOK_FINAL, RunbookRun

STEP_TYPES = ("check", "flip-weights", "promote", "wait", "approval", "note")
CHECK_RULES = ("replica-lag", "target-region-healthy", "error-budget-not-frozen")
WAIT_CONDITIONS = ("first-write", "share-converged")
MODES = ("practice", "recovery")
CHANGING = ("flip-weights", "promote")
RUN_SLUG = "runbook.run"
log = logging.getLogger(__name__)
SYSTEM = Actor("quarterdeck", frozenset({"sre"}))
MAX_STEPS_PER_TICK = 20

_STEP_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    "check": {"rule": (str,), "record": (str,), "region": (str,), "database": (str,)},
    "flip-weights": {"record": (str,), "weights": (dict, str), "record_type": (str,)},
    "promote": {"database": (str,)},
    "wait": {
        "condition": (str,),
        "timeout_s": (int, float),
        "region": (str,),
        "min_share_pct": (int, float),
        "database": (str,),
    },
    "approval": {"text": (str,)},
    "note": {"text": (str,)},
}
_COMMON = {"id", "type", "title"}


# --------------------------------------------------------------------------------------------
# Runbooks as data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One typed block of a runbook."""

    id: str
    type: str
    title: str
    params: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "title": self.title, **self.params}


@dataclass(frozen=True)
class Runbook:
    """A validated runbook: its targets, RPO/RTO objectives and ordered steps."""

    name: str
    title: str
    environment: str
    database: str
    rpo_target_s: float
    rto_target_s: float
    steps: tuple[Step, ...]
    source: str
    digest: str


class RunbookInvalid(ValueError):
    """A runbook file that does not validate; every message names file, step and field."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _where(source: str, index: int | None, step_id: str | None, fld: str) -> str:
    where = source
    if index is not None:
        where += f": step {index + 1}" + (f" ({step_id})" if step_id else "")
    return f"{where}: {fld}"


def parse_runbook(text: str, source: str) -> Runbook:
    """Validate a runbook's YAML; raise :class:`RunbookInvalid` listing every problem."""
    errors: list[str] = []
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RunbookInvalid([f"{source}: not valid YAML: {exc}"]) from None
    if not isinstance(doc, dict):
        raise RunbookInvalid([f"{source}: a runbook is a mapping with name, environment, steps"])

    def top(name: str, kinds: tuple[type, ...], default: Any = None) -> Any:
        value = doc.get(name, default)
        if value is None or isinstance(value, bool) or not isinstance(value, kinds):
            errors.append(f"{source}: {name}: required, {'/'.join(k.__name__ for k in kinds)}")
            return default
        return value

    unknown_top = sorted(
        set(doc)
        - {"name", "title", "environment", "database", "rpo_target_s", "rto_target_s", "steps"}
    )
    for key in unknown_top:
        errors.append(f"{source}: {key}: unknown field")
    name = str(top("name", (str,), ""))
    environment = str(top("environment", (str,), ""))
    database = str(doc.get("database") or "")
    rpo = top("rpo_target_s", (int, float), 300.0)
    rto = top("rto_target_s", (int, float), 600.0)
    raw_steps = top("steps", (list,), [])
    steps: list[Step] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_steps or []):
        if not isinstance(raw, dict):
            errors.append(f"{_where(source, i, None, 'step')}: a step is a mapping")
            continue
        sid = raw.get("id")
        if not isinstance(sid, str) or not sid:
            errors.append(f"{_where(source, i, None, 'id')}: required")
            sid = f"step-{i + 1}"
        elif sid in seen:
            errors.append(f"{_where(source, i, sid, 'id')}: duplicate step id")
        seen.add(sid)
        kind = raw.get("type")
        if kind not in STEP_TYPES:
            errors.append(
                f"{_where(source, i, sid, 'type')}: {kind!r} is not one of {', '.join(STEP_TYPES)}"
            )
            continue
        allowed = _STEP_FIELDS[kind]
        params: dict[str, Any] = {}
        for key, value in raw.items():
            if key in _COMMON:
                continue
            if key not in allowed:
                errors.append(f"{_where(source, i, sid, key)}: unknown field for a {kind} step")
            elif isinstance(value, bool) or not isinstance(value, allowed[key]):
                want = "/".join(k.__name__ for k in allowed[key])
                errors.append(f"{_where(source, i, sid, key)}: expected {want}, got {value!r}")
            else:
                params[key] = value
        errors.extend(_check_step(source, i, sid, kind, params, database))
        steps.append(Step(sid, kind, str(raw.get("title") or sid), params))
    if not steps and not any("steps" in e for e in errors):
        errors.append(f"{source}: steps: at least one step")
    if errors:
        raise RunbookInvalid(errors)
    return Runbook(
        name=name,
        title=str(doc.get("title") or name),
        environment=environment,
        database=database,
        rpo_target_s=float(rpo),
        rto_target_s=float(rto),
        steps=tuple(steps),
        source=source,
        digest=hashlib.sha256(text.encode()).hexdigest(),
    )


def _check_step(
    source: str, i: int, sid: str, kind: str, params: dict[str, Any], database: str
) -> list[str]:
    errors: list[str] = []

    def need(fld: str) -> None:
        if fld not in params:
            errors.append(f"{_where(source, i, sid, fld)}: required for a {kind} step")

    if kind == "check":
        need("rule")
        rule = params.get("rule")
        if rule is not None and rule not in CHECK_RULES:
            errors.append(
                f"{_where(source, i, sid, 'rule')}: {rule!r} is not one of {', '.join(CHECK_RULES)}"
            )
        if rule == "target-region-healthy":
            need("record")
            need("region")
    elif kind == "flip-weights":
        need("record")
        need("weights")
        if "weights" in params:
            try:
                parse_weights(params["weights"])
            except InvalidParams as exc:
                errors.append(f"{_where(source, i, sid, 'weights')}: {exc}")
    elif kind == "wait":
        need("condition")
        need("timeout_s")
        cond = params.get("condition")
        if cond is not None and cond not in WAIT_CONDITIONS:
            errors.append(
                f"{_where(source, i, sid, 'condition')}: {cond!r} is not one of "
                + ", ".join(WAIT_CONDITIONS)
            )
        if cond == "share-converged":
            need("region")
            need("min_share_pct")
        if "timeout_s" in params and params["timeout_s"] <= 0:
            errors.append(f"{_where(source, i, sid, 'timeout_s')}: must be > 0")
    if (kind == "promote" or params.get("rule") == "replica-lag") and not (
        params.get("database") or database
    ):
        errors.append(f"{_where(source, i, sid, 'database')}: no database (step or runbook)")
    return errors


def load_runbooks(directory: Path) -> tuple[dict[str, Runbook], list[str]]:
    """Every `*.yaml` runbook of ``directory`` that validates, and every problem of the rest."""
    books: dict[str, Runbook] = {}
    errors: list[str] = []
    if not directory.is_dir():
        return books, errors
    for path in sorted(directory.glob("*.yaml")):
        source = f"{directory.name}/{path.name}"
        try:
            book = parse_runbook(path.read_text(), source)
        except RunbookInvalid as exc:
            errors.extend(exc.errors)
            continue
        if book.name in books:
            errors.append(f"{source}: name: {book.name!r} already defined")
            continue
        books[book.name] = book
    return books, errors


# --------------------------------------------------------------------------------------------
# The timeline the composition root provides
# --------------------------------------------------------------------------------------------


class Timeline(Protocol):
    """Writes a run's failover timeline (collectors.failover in the console)."""

    def open(
        self,
        session: Session,
        *,
        environment: str,
        at: datetime,
        kind: str,
        notes: str,
        suffix: str,
    ) -> str:
        """Open a failover run (no `started` phase yet) and return its key."""
        ...

    def phase(
        self, session: Session, run_key: str, phase: str | None, at: datetime, message: str
    ) -> None:
        """Record a phase (or a log line with ``phase=None``)."""
        ...

    def lag(
        self, session: Session, *, environment: str, replica: str, at: datetime, lag_s: float
    ) -> None:
        """Store one replication-lag sample."""
        ...

    def close(
        self, session: Session, run_key: str, at: datetime, message: str, *, complete: bool
    ) -> None:
        """End the run: the `complete` phase when it completed, else a closing log line."""
        ...


class NoTimeline:
    """A timeline that records nothing (tests of the pure lifecycle)."""

    def open(
        self,
        session: Session,
        *,
        environment: str,
        at: datetime,
        kind: str,
        notes: str,
        suffix: str,
    ) -> str:
        return ""

    def phase(
        self, session: Session, run_key: str, phase: str | None, at: datetime, message: str
    ) -> None:
        return None

    def lag(
        self, session: Session, *, environment: str, replica: str, at: datetime, lag_s: float
    ) -> None:
        return None

    def close(
        self, session: Session, run_key: str, at: datetime, message: str, *, complete: bool
    ) -> None:
        return None


# --------------------------------------------------------------------------------------------
# A run is a guarded action
# --------------------------------------------------------------------------------------------


def practice_environment(environment: str) -> str:
    """Where a practice run's timeline goes (never the environment's own RTO/RPO)."""
    return f"{environment}-practice"[:50]


class RunRunbook(GuardedAction):
    """Plan a run (validate the runbook, name its changing steps); apply opens the run."""

    slug = RUN_SLUG
    title = "Run a runbook"

    def __init__(self, runbooks: Callable[[], dict[str, Runbook]], clock: Clock = SYSTEM_CLOCK):
        self.runbooks = runbooks
        self.clock = clock
        self.timeline: Timeline = NoTimeline()

    def book(self, name: str) -> Runbook:
        books = self.runbooks()
        if name not in books:
            raise InvalidParams(f"runbook: unknown {name!r} (known: {', '.join(sorted(books))})")
        return books[name]

    def propose(self, session: Session, params: dict[str, Any], environment: str) -> Proposal:
        book = self.book(str(params.get("runbook") or ""))
        mode = str(params.get("mode") or "")
        if mode not in MODES:
            raise InvalidParams(f"mode: {mode!r} is not practice or recovery")
        if environment != book.environment:
            raise InvalidParams(f"runbook {book.name} is for {book.environment}, not {environment}")
        changing = [s.id for s in book.steps if s.type in CHANGING]
        return Proposal(
            target=f"runbook:{book.environment}/{book.name}",
            before={"runbook": book.name, "digest": book.digest},
            after={"runbook": book.name, "mode": mode, "steps": [s.id for s in book.steps]},
            rules=[],
            state_token=state_token(book.digest),
            preview={"changing_steps": changing, "mode": mode},
        )

    def current_token(self, session: Session, plan: PlanView) -> str:
        try:
            return state_token(self.book(str(plan.params.get("runbook"))).digest)
        except InvalidParams:
            return "gone"

    def apply(self, session: Session, plan: PlanView, *, live: bool) -> ApplyOutcome:
        book = self.book(str(plan.params["runbook"]))
        mode = str(plan.params["mode"])
        if mode == "recovery" and not live:
            return ApplyOutcome(
                False, "a recovery run changes the world: it cannot be rehearsed (use practice)"
            )
        now = self.clock()
        roles = plan.params.get("roles") or []
        run = RunbookRun(
            run_id=uuid.uuid4().hex[:12],
            runbook=book.name,
            mode=mode,
            environment=book.environment,
            status="running",
            requested_by=plan.actor,
            reason=plan.reason,
            plan_id=plan.plan_id,
            failover_run_key=None,
            current_step=0,
            steps=[
                {**s.as_dict(), "status": "pending", "message": "", "plan_id": None}
                for s in book.steps
            ],
            rollback=[],
            overrides={"roles": sorted(roles), "rules": {}},
            control=None,
            message=f"{mode} run started",
            rto_s=None,
            rpo_s=None,
            started_at=now,
            updated_at=now,
            finished_at=None,
        )
        env = book.environment if mode == "recovery" else practice_environment(book.environment)
        run.failover_run_key = self.timeline.open(
            session,
            environment=env,
            at=now,
            kind="failover" if mode == "recovery" else "practice",
            notes=f"runbook {book.name} ({mode}, run {run.run_id}) by {plan.actor}",
            suffix=run.run_id,
        )
        session.add(run)
        session.flush()
        return ApplyOutcome(
            True,
            f"{mode} run {run.run_id} of {book.name} started",
            None if mode == "recovery" else True,
            {"run_id": run.run_id},
        )

    def verify(self, session: Session, plan: PlanView) -> bool | None:
        run = session.scalar(select(RunbookRun).where(RunbookRun.plan_id == plan.plan_id))
        if run is None or run.status not in RUNBOOK_FINAL:
            return None
        return run.status == "completed"

    def rollback_params(self, plan: PlanView) -> dict[str, Any]:
        raise InvalidParams("a run is rolled back step by step: abort it to see the rollbacks")


# --------------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """The answer to a run request: ok, a message, the run if any."""

    ok: bool
    message: str
    run: RunbookRun | None = None
    blocked_by: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "message": self.message,
            "blocked_by": self.blocked_by,
            "run": run_dict(self.run) if self.run is not None else None,
        }


def _iso(at: datetime | None) -> str | None:
    if at is None:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat()


def run_dict(run: RunbookRun) -> dict[str, Any]:
    """A run as JSON-ready data (CLI `--json`, the page)."""
    return {
        "run_id": run.run_id,
        "runbook": run.runbook,
        "mode": run.mode,
        "environment": run.environment,
        "status": run.status,
        "requested_by": run.requested_by,
        "reason": run.reason,
        "plan_id": run.plan_id,
        "failover_run_key": run.failover_run_key,
        "current_step": run.current_step,
        "steps": run.steps,
        "rollback": run.rollback,
        "message": run.message,
        "rto_s": run.rto_s,
        "rpo_s": run.rpo_s,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
    }


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


class RunbookRunner:
    """Starts, advances, pauses, resumes, aborts and approves runs (the job calls `tick`)."""

    def __init__(
        self,
        service: ActionService,
        timeline: Timeline | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.service = service
        self.clock = clock or service.clock
        self.timeline: Timeline = timeline or NoTimeline()
        action = service.actions.get(RUN_SLUG)
        if not isinstance(action, RunRunbook):
            raise ValueError("the action service has no runbook.run action")
        self.action = action
        action.timeline = self.timeline

    # -- helpers --------------------------------------------------------------------------

    def runbooks(self) -> dict[str, Runbook]:
        return self.action.runbooks()

    def get(self, session: Session, run_id: str) -> RunbookRun | None:
        return session.scalar(select(RunbookRun).where(RunbookRun.run_id == run_id))

    def _audit(
        self, session: Session, actor: str, run: RunbookRun, outcome: str, **detail: Any
    ) -> None:
        append_audit(
            session,
            actor=actor,
            action="runbook.step" if "step" in detail else RUN_SLUG,
            target=f"runbook:{run.environment}/{run.runbook}",
            environment=run.environment,
            outcome=outcome,
            detail={"run_id": run.run_id, "mode": run.mode, **detail},
            at=self.clock(),
        )

    def _log(self, session: Session, run: RunbookRun, message: str, phase: str | None = None,
             at: datetime | None = None) -> None:  # fmt: skip
        if run.failover_run_key:
            self.timeline.phase(session, run.failover_run_key, phase, at or self.clock(), message)

    def _actor(self, run: RunbookRun) -> Actor:
        return Actor(run.requested_by, frozenset(run.overrides.get("roles") or ["sre"]))

    def _touch(self, run: RunbookRun, **values: Any) -> None:
        for key, value in values.items():
            setattr(run, key, value)
        run.updated_at = self.clock()

    def _step(self, run: RunbookRun, index: int, **values: Any) -> None:
        steps = [dict(s) for s in run.steps]
        steps[index].update(values)
        run.steps = steps  # a new list: the JSON column sees the change

    # -- start ------------------------------------------------------------------------------

    def start(
        self,
        session: Session,
        actor: Actor,
        name: str,
        mode: str,
        *,
        reason: str,
        environment: str | None = None,
    ) -> RunResult:
        """Plan the run as a guarded action and apply it (practice rehearses, recovery is live).

        In production a recovery run waits for a second person's approval before its first
        step (`awaiting-approval`); elsewhere it starts at once.
        """
        book = self.runbooks().get(name)
        env = environment or (book.environment if book else "")
        params = {"runbook": name, "mode": mode, "roles": sorted(actor.roles)}
        planned = self.service.plan(session, actor, RUN_SLUG, params, env, reason=reason)
        if not planned.ok or planned.plan is None:
            return RunResult(False, planned.message)
        plan = planned.plan
        if mode == "recovery" and self.service.is_production(env):
            self._audit(
                session, actor.name, _pending(plan), "awaiting-approval", plan_id=plan.plan_id
            )
            return RunResult(
                True,
                f"plan {plan.plan_id} ready: a captain other than {actor.name} approves "
                f"(`quarterdeck runbooks approve {plan.plan_id}`), then the run starts",
            )
        return self._open(session, actor, plan.plan_id, mode, reason)

    def _open(
        self, session: Session, actor: Actor, plan_id: str, mode: str, reason: str
    ) -> RunResult:
        applied = self.service.apply(
            session, actor, plan_id, reason=reason or "runbook run", live=mode == "recovery"
        )
        if not applied.ok:
            return RunResult(False, applied.message, blocked_by=applied.blocked_by)
        run = session.scalar(select(RunbookRun).where(RunbookRun.plan_id == plan_id))
        if run is None:
            return RunResult(False, applied.message)
        self._audit(session, actor.name, run, "started", plan_id=plan_id, reason=reason)
        self._log(session, run, f"runbook {run.runbook} {mode} run {run.run_id} started")
        return RunResult(True, applied.message, run)

    # -- control ----------------------------------------------------------------------------

    def pause(self, session: Session, actor: Actor, run_id: str, *, reason: str = "") -> RunResult:
        return self._control(session, actor, run_id, "pause", reason)

    def resume(self, session: Session, actor: Actor, run_id: str, *, reason: str = "") -> RunResult:
        return self._control(session, actor, run_id, "resume", reason)

    def abort(self, session: Session, actor: Actor, run_id: str, *, reason: str = "") -> RunResult:
        return self._control(session, actor, run_id, "abort", reason)

    def _control(
        self, session: Session, actor: Actor, run_id: str, verb: str, reason: str
    ) -> RunResult:
        run = self.get(session, run_id)
        if run is None:
            return RunResult(False, f"no run {run_id!r}")
        if not actor.may_plan:
            self._audit(session, actor.name, run, "refused", verb=verb, message="role")
            return RunResult(
                False, f"{actor.name} may not {verb} runs (needs role sre, captain or admin)", run
            )
        if run.status in RUNBOOK_FINAL:
            return RunResult(False, f"run {run_id} is {run.status}", run)
        if verb == "pause":
            if run.status == "paused":
                return RunResult(False, f"run {run_id} is already paused", run)
            self._touch(run, status="paused", control=run.status, message=f"paused by {actor.name}")
        elif verb == "resume":
            if run.status not in ("paused", "blocked"):
                return RunResult(False, f"run {run_id} is {run.status}: nothing to resume", run)
            back = run.control if run.status == "paused" and run.control else "running"
            if run.status == "blocked":
                self._step(run, run.current_step, status="pending", message="retried")
            self._touch(run, status=back, control=None, message=f"resumed by {actor.name}")
        else:
            self._touch(
                run,
                status="aborted",
                control=None,
                finished_at=self.clock(),
                message=f"aborted by {actor.name}" + (f": {reason}" if reason else ""),
                rollback=self._rollbacks(session, run),
            )
            self._end(session, run, f"run aborted by {actor.name}", complete=False)
        self._audit(session, actor.name, run, verb, reason=reason, status=run.status)
        self._log(session, run, f"{verb} by {actor.name}" + (f": {reason}" if reason else ""))
        return RunResult(True, run.message, run)

    def _rollbacks(self, session: Session, run: RunbookRun) -> list[dict[str, Any]]:
        """What undoes the steps done: a planned rollback per live flip, a note per promotion."""
        offers: list[dict[str, Any]] = []
        if run.mode != "recovery":
            return offers
        for step in reversed(run.steps):
            if step.get("status") != "done" or not step.get("plan_id"):
                continue
            if step["type"] == "flip-weights":
                offers.append(
                    {
                        "step": step["id"],
                        "plan_id": step["plan_id"],
                        "text": f"restore the weights before {step['id']}",
                        "command": f"quarterdeck actions rollback {step['plan_id']} --as USER",
                    }
                )
            elif step["type"] == "promote":
                offers.append(
                    {
                        "step": step["id"],
                        "plan_id": step["plan_id"],
                        "text": "a promotion is one-way: rebuild the old primary as a replica of "
                        "the new one (pg_rewind / pg_basebackup; on RDS a new read replica)",
                        "command": None,
                    }
                )
        return offers

    def rollback(self, session: Session, actor: Actor, run_id: str, step_id: str) -> Response:
        """Plan the offered rollback of an aborted run's step (a guarded action of its own)."""
        run = self.get(session, run_id)
        offer = next(
            (o for o in (run.rollback if run else []) if o["step"] == step_id and o["command"]),
            None,
        )
        if run is None or offer is None:
            return Response(False, f"run {run_id} offers no rollback for step {step_id!r}")
        return self.service.rollback(
            session, actor, offer["plan_id"], reason=f"rollback of runbook run {run_id}"
        )

    def override(
        self, session: Session, actor: Actor, run_id: str, rule: str, *, reason: str
    ) -> RunResult:
        """Break-glass: an admin lets the blocked step pass ``rule`` (audited with a reason)."""
        run = self.get(session, run_id)
        if run is None:
            return RunResult(False, f"no run {run_id!r}")
        if not actor.may_override:
            self._audit(session, actor.name, run, "refused", verb="override", rule=rule)
            return RunResult(False, "break-glass override needs the admin role", run)
        if not reason.strip():
            return RunResult(False, "an override needs a reason", run)
        if run.status != "blocked":
            return RunResult(False, f"run {run_id} is {run.status}, not blocked", run)
        step = run.steps[run.current_step]
        failed = step.get("blocked_by") or []
        if rule not in failed:
            return RunResult(
                False, f"step {step['id']} is not blocked by {rule} (blocked by {failed})", run
            )
        rules = dict(run.overrides.get("rules") or {})
        rules[step["id"]] = {"rules": [rule], "by": actor.name, "reason": reason}
        run.overrides = {**run.overrides, "rules": rules}
        self._step(run, run.current_step, status="pending", message=f"override {rule}")
        self._touch(run, status="running", message=f"{rule} overridden by {actor.name}: {reason}")
        self._audit(session, actor.name, run, "override", step=step["id"], rule=rule, reason=reason)
        self._log(session, run, f"override of {rule} on {step['id']} by {actor.name}: {reason}")
        return RunResult(True, run.message, run)

    def approve(self, session: Session, actor: Actor, ref: str) -> RunResult:
        """Approve a production recovery plan (``ref`` = plan id) or a run's approval step."""
        run = self.get(session, ref)
        if run is None:
            plan = self.service.get(session, ref)
            if plan is None or plan.action != RUN_SLUG:
                return RunResult(False, f"no run or runbook plan {ref!r}")
            approved = self.service.approve(session, actor, ref)
            if not approved.ok:
                return RunResult(False, approved.message)
            requester = Actor(plan.requested_by, frozenset(plan.params.get("roles") or ["sre"]))
            return self._open(session, requester, ref, str(plan.params["mode"]), plan.reason)
        step = run.steps[run.current_step] if run.current_step < len(run.steps) else None
        if run.status != "awaiting-approval" or step is None or step["type"] != "approval":
            return RunResult(False, f"run {run.run_id} is not waiting for an approval", run)
        if not actor.may_approve:
            self._audit(session, actor.name, run, "refused", step=step["id"], verb="approve")
            return RunResult(False, f"{actor.name} may not approve (needs captain or admin)", run)
        if user_key(actor.name) == user_key(run.requested_by):
            self._audit(session, actor.name, run, "refused", step=step["id"], rule=TWO_PERSON_RULE)
            return RunResult(
                False, "two-person rule: the requester cannot approve their own run", run
            )
        self._finish_step(
            session, run, "done", f"approved by {actor.name}", by=actor.name, approver=actor.name
        )
        self._touch(run, status="running")
        return RunResult(True, f"step {step['id']} approved by {actor.name}", run)

    # -- execution --------------------------------------------------------------------------

    def tick(self, session: Session) -> list[str]:
        """Advance every running run as far as it goes now; return the run ids touched."""
        ids = list(
            session.scalars(
                select(RunbookRun.run_id)
                .where(RunbookRun.status == "running")
                .order_by(RunbookRun.started_at)
            )
        )
        for run_id in ids:
            run = self.get(session, run_id)
            if run is None:
                continue
            try:
                with session.begin_nested():
                    self.advance(session, run)
            except Exception as exc:  # a provider failure fails the run, never the job
                log.exception("runbook run %s failed", run_id)
                run = self.get(session, run_id)
                if run is not None:
                    self._fail(session, run, f"{type(exc).__name__}: {exc}")
        return ids

    def advance(self, session: Session, run: RunbookRun) -> None:
        """Execute steps of ``run`` until one waits, blocks, fails or the run completes."""
        for _ in range(MAX_STEPS_PER_TICK):
            if run.status != "running":
                return
            if run.current_step >= len(run.steps):
                self._complete(session, run)
                return
            if not self._execute(session, run, run.current_step):
                return

    def _finish_step(
        self,
        session: Session,
        run: RunbookRun,
        status: str,
        message: str,
        *,
        by: str | None = None,
        **extra: Any,
    ) -> None:
        index = run.current_step
        step = run.steps[index]
        now = self.clock()
        started = step.get("started_at") or now.isoformat()
        took = (now - datetime.fromisoformat(started)).total_seconds()
        self._step(
            run, index, status=status, message=message, finished_at=now.isoformat(),
            started_at=started, duration_s=took, **extra,
        )  # fmt: skip
        self._audit(
            session,
            by or run.requested_by,
            run,
            status,
            step=step["id"],
            type=step["type"],
            message=message,
            plan_id=extra.get("plan_id") or step.get("plan_id"),
        )
        self._log(
            session, run, f"step {index + 1} {step['id']} ({step['type']}): {status} — {message}"
        )
        if status in ("done", "skipped", "rehearsed"):
            self._touch(run, current_step=index + 1, message=message)

    def _block(self, session: Session, run: RunbookRun, message: str, rules: list[str]) -> bool:
        self._finish_step(session, run, "blocked", message, blocked_by=rules)
        self._touch(run, status="blocked", message=message)
        return False

    def _execute(self, session: Session, run: RunbookRun, index: int) -> bool:
        """Run (or re-check) step ``index``; True when the run may go on to the next step."""
        step = dict(run.steps[index])
        now = self.clock()
        if step.get("status") in ("pending", None) or not step.get("started_at"):
            self._step(run, index, status="running", started_at=now.isoformat())
            if step["type"] != "wait":
                self._log(session, run, f"step {index + 1} {step['id']} ({step['type']}) begins")
        book = self.runbooks().get(run.runbook)
        if book is None:
            return self._fail(session, run, f"runbook {run.runbook} is gone")
        kind = step["type"]
        practice = run.mode == "practice"
        if kind == "note":
            self._finish_step(session, run, "done", str(step.get("text") or step["title"]))
            return True
        if kind == "approval":
            if practice:
                self._finish_step(session, run, "skipped", "practice: no approval needed")
                return True
            if run.status != "awaiting-approval":
                self._touch(
                    run,
                    status="awaiting-approval",
                    message=f"step {step['id']}: a captain other than {run.requested_by} approves",
                )
                self._audit(session, run.requested_by, run, "awaiting-approval", step=step["id"])
            return False
        if kind == "check":
            return self._check(session, run, book, step)
        if kind in CHANGING:
            return self._change(session, run, book, step)
        return self._wait(session, run, book, step)

    # -- checks -----------------------------------------------------------------------------

    def _check(
        self, session: Session, run: RunbookRun, book: Runbook, step: dict[str, Any]
    ) -> bool:
        rule = step["rule"]
        overridden = (run.overrides.get("rules") or {}).get(step["id"], {}).get("rules", [])
        result: RuleResult
        if rule == "replica-lag":
            promote = self._promoter()
            db = promote.provider(str(step.get("database") or book.database))
            try:
                reading = db.lag()
            except Exception as exc:
                result = RuleResult("replica-lag-within-rpo", False, f"lag read failed: {exc}")
            else:
                result = lag_rule(reading, book.rpo_target_s)
                if reading.lag_s is not None and run.mode == "recovery":
                    self.timeline.lag(
                        session,
                        environment=run.environment,
                        replica=str(step.get("database") or book.database),
                        at=reading.read_at,
                        lag_s=reading.lag_s,
                    )
        elif rule == "target-region-healthy":
            flip = self._flipper()
            try:
                status = flip.record_status(session, str(step["record"]))
            except InvalidParams as exc:
                result = RuleResult("target-region-healthy", False, str(exc))
            else:
                region = next((r for r in status if r["region"] == step["region"]), None)
                healthy = region is not None and region["healthy"] is True
                why = region["health"] if region else f"no region {step['region']}"
                result = RuleResult("target-region-healthy", healthy, f"{step['region']}: {why}")
        else:
            flip = self._flipper()
            result = error_budget_not_frozen(session, flip.config.slos, now=self.clock())
        if result.passed or result.name in overridden:
            note = "" if result.passed else " (overridden)"
            self._finish_step(session, run, "done", result.reason + note, rule=result.as_dict())
            return True
        return self._block(
            session, run, f"blocked by {result.name}: {result.reason}", [result.name]
        )

    def _promoter(self) -> PromoteDatabase:
        action = self.service.actions.get(PromoteDatabase.slug)
        if not isinstance(action, PromoteDatabase):
            raise InvalidParams("no database promotion is configured (db.promote)")
        return action

    def _flipper(self) -> FlipDnsWeights:
        action = self.service.actions.get(FlipDnsWeights.slug)
        if not isinstance(action, FlipDnsWeights):
            raise InvalidParams("no DNS weight flip is configured (route53.flip-weights)")
        return action

    # -- changing steps ---------------------------------------------------------------------

    def _change(
        self, session: Session, run: RunbookRun, book: Runbook, step: dict[str, Any]
    ) -> bool:
        practice = run.mode == "practice"
        override = (run.overrides.get("rules") or {}).get(step["id"])
        actor = self._actor(run)
        if override:
            actor = Actor(override["by"], frozenset({"admin"}))
        if step["type"] == "flip-weights":
            slug = FlipDnsWeights.slug
            params: dict[str, Any] = {"record": step["record"], "weights": step["weights"]}
            if step.get("record_type"):
                params["type"] = step["record_type"]
        else:
            slug = PromoteDatabase.slug
            params = {
                "database": step.get("database") or book.database,
                "rpo_target_s": book.rpo_target_s,
            }
        reason = f"runbook {run.runbook} run {run.run_id} step {step['id']}"
        env = run.environment
        planned = self.service.plan(session, actor, slug, params, env, reason=reason)
        if planned.plan is None:  # refused (role, unknown target): a blocked plan still comes
            return self._fail(session, run, f"cannot plan {step['id']}: {planned.message}")
        plan = planned.plan
        self._step(run, run.current_step, plan_id=plan.plan_id)
        overrides = list(override["rules"]) if override else []
        failed = [r["name"] for r in plan.rules if not r["passed"] and r["name"] not in overrides]
        if failed:
            text = "; ".join(
                f"{r['name']} ({r['reason']})" for r in plan.rules if r["name"] in failed
            )
            return self._block(session, run, f"blocked by {text}", failed)
        if practice:
            done = self.service.apply(session, actor, plan.plan_id, reason=reason, live=False,
                                      override=overrides or None)  # fmt: skip
            if not done.ok:
                return self._block(session, run, done.message, done.blocked_by)
            self._finish_step(session, run, "rehearsed", done.message, plan_id=plan.plan_id,
                              result=plan.result)  # fmt: skip
            return True
        if self.service.is_production(env):
            self._carry_approvals(session, run, plan)
        if step["type"] == "promote":
            self._log(session, run, f"promoting {params['database']}: reading the lag first")
        done = self.service.apply(
            session, actor, plan.plan_id, reason=reason, live=True, override=overrides or None
        )
        if not done.ok:
            if done.blocked_by:
                return self._block(session, run, done.message, done.blocked_by)
            detail = plan.result or {}
            if "blocked by" in done.message and detail.get("lag_s") is not None:
                return self._block(session, run, done.message, ["replica-lag-within-rpo"])
            return self._fail(session, run, f"{step['id']} failed: {done.message}")
        if step["type"] == "promote":
            self._record_promotion(session, run, book, plan)
        else:
            self._log(session, run, f"{step['id']}: {done.message}", "traffic_shifted")
        self._finish_step(session, run, "done", done.message, plan_id=plan.plan_id)
        return True

    def _record_promotion(
        self, session: Session, run: RunbookRun, book: Runbook, plan: ActionPlan
    ) -> None:
        detail = plan.result or {}
        lag = detail.get("lag_s")
        read_at = datetime.fromisoformat(str(detail["lag_read_at"]))
        db = str(detail.get("database"))
        if lag is not None:
            self.timeline.lag(
                session, environment=run.environment, replica=db, at=read_at, lag_s=float(lag)
            )
        self._log(
            session,
            run,
            f"promotion of {db} started; lag at promotion {lag} s (RPO target "
            f"{book.rpo_target_s:g} s)",
            "started",
            read_at,
        )
        if detail.get("promoted_at"):
            self._log(session, run, f"{db} promoted", "promoted",
                      datetime.fromisoformat(str(detail["promoted_at"])))  # fmt: skip
        rto = None
        if detail.get("writable_at"):
            writable = datetime.fromisoformat(str(detail["writable_at"]))
            self._log(
                session, run, "probe write committed on the new primary", "writable", writable
            )
            rto = (writable - read_at).total_seconds()
        self._touch(run, rpo_s=float(lag) if lag is not None else None, rto_s=rto)

    def _carry_approvals(self, session: Session, run: RunbookRun, plan: ActionPlan) -> None:
        """The run's approval covers its steps: record it on the step's plan, audited so."""
        run_plan = self.service.get(session, run.plan_id or "")
        if run_plan is None:
            return
        now = self.clock()
        for approver in self.service.valid_approvals(session, run_plan, at=now):
            session.add(
                ActionApproval(
                    plan_id=plan.plan_id,
                    approver=approver,
                    approved_at=now,
                    expires_at=now + timedelta(seconds=self.service.policy.approval_ttl_s),
                )
            )
            self._audit(
                session,
                approver,
                run,
                "approved-via-run",
                step=run.steps[run.current_step]["id"],
                plan_id=plan.plan_id,
                run_plan_id=run_plan.plan_id,
            )
        session.flush()

    # -- waits ------------------------------------------------------------------------------

    def _wait(self, session: Session, run: RunbookRun, book: Runbook, step: dict[str, Any]) -> bool:
        cond = step["condition"]
        if run.mode == "practice":
            self._finish_step(
                session, run, "skipped", f"practice: nothing changed, {cond} not awaited"
            )
            return True
        now = self.clock()
        started = datetime.fromisoformat(str(run.steps[run.current_step]["started_at"]))
        met, why = False, ""
        if cond == "first-write":
            met, why = self._first_write(session, run, book, step)
        else:
            flip = self._flipper()
            regions = {r["region"] for r in flip.record_status(session, self._record(book))}
            share = observed_share(session, sorted(regions), now=now)
            got = share.get(str(step["region"]))
            met = got is not None and got >= float(step["min_share_pct"])
            why = (
                f"observed share of {step['region']}: "
                + (f"{got:.1f}%" if got is not None else "no traffic observed")
                + f" (want ≥ {step['min_share_pct']}%)"
            )
        if met:
            self._finish_step(session, run, "done", why)
            return True
        if (now - started).total_seconds() >= float(step["timeout_s"]):
            return self._block(session, run, f"timed out after {step['timeout_s']} s: {why}",
                               [f"wait-{cond}"])  # fmt: skip
        self._step(run, run.current_step, message=f"waiting: {why}")
        return False

    def _record(self, book: Runbook) -> str:
        for s in book.steps:
            if s.type == "flip-weights":
                return str(s.params["record"])
        raise InvalidParams("share-converged needs a flip-weights step naming the record")

    def _first_write(
        self, session: Session, run: RunbookRun, book: Runbook, step: dict[str, Any]
    ) -> tuple[bool, str]:
        if run.rto_s is not None:
            return True, f"first write on the new primary {run.rto_s:.1f} s after promotion began"
        promote = self._promoter()
        try:
            written = promote.provider(str(step.get("database") or book.database)).probe_write(
                f"runbook {run.run_id} first-write"
            )
        except Exception as exc:
            return False, f"probe write refused: {type(exc).__name__}: {exc}"
        if written is None:
            return True, "writes cannot be probed on this database (no writer DSN)"
        started = next(
            (datetime.fromisoformat(str(s["finished_at"])) for s in run.steps
             if s["type"] == "promote" and s.get("finished_at")),
            None,
        )  # fmt: skip
        self._log(session, run, "probe write committed on the new primary", "writable", written)
        if started is not None and run.rpo_s is not None:
            self._touch(run, rto_s=(written - started).total_seconds())
        return True, f"probe write committed at {written:%H:%M:%S} UTC"

    # -- ends -------------------------------------------------------------------------------

    def _fail(self, session: Session, run: RunbookRun, message: str) -> bool:
        self._finish_step(session, run, "failed", message)
        self._touch(run, status="failed", finished_at=self.clock(), message=message,
                    rollback=self._rollbacks(session, run))  # fmt: skip
        self._end(session, run, f"run failed: {message}", complete=False)
        return False

    def _complete(self, session: Session, run: RunbookRun) -> None:
        now = self.clock()
        took = (now - _aware(run.started_at)).total_seconds()
        text = f"{run.mode} run completed in {took:.1f} s"
        self._touch(run, status="completed", finished_at=now, message=text)
        self._audit(session, run.requested_by, run, "completed", duration_s=took,
                    rto_s=run.rto_s, rpo_s=run.rpo_s)  # fmt: skip
        self._end(session, run, text, complete=True)

    def _end(self, session: Session, run: RunbookRun, message: str, *, complete: bool) -> None:
        if run.failover_run_key:
            self.timeline.close(
                session, run.failover_run_key, self.clock(), message, complete=complete
            )
        self._close_plan(session, run)

    def _close_plan(self, session: Session, run: RunbookRun) -> None:
        plan = self.service.get(session, run.plan_id or "")
        if plan is not None and plan.status == "applied":
            self.service.verify(session, SYSTEM, plan.plan_id)


def _pending(plan: ActionPlan) -> RunbookRun:
    """A stand-in run for auditing a plan that has no run yet."""
    return RunbookRun(
        run_id=plan.plan_id,
        runbook=str(plan.params.get("runbook")),
        mode=str(plan.params.get("mode")),
        environment=plan.environment,
    )
