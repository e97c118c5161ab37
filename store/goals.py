"""Sprint goals and promotion gates: the validated YAML loader and evaluation from raw store data.

A goal names a registered metric (store.metrics), an aggregation, a comparator and target with
unit, an owner and the epic it proves. Status is `met | at_risk | missed | no_data`: no data is
never green, and `at_risk` means the target is met but within the goal's `at_risk_within`
margin of it.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy.orm import Session

from store.metrics import MetricValue, Window, get_metric, known_metrics

Op = Literal["<", "<=", ">", ">=", "=="]
Unit = Literal["s", "min", "h", "%", "count"]
Status = Literal["met", "at_risk", "missed", "no_data"]

# Target unit → (metric base unit, factor from base to target unit).
UNIT_FACTORS: dict[str, tuple[str, float]] = {
    "s": ("s", 1.0),
    "min": ("s", 1 / 60),
    "h": ("h", 1.0),
    "%": ("ratio", 100.0),
    "count": ("count", 1.0),
}
_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class SprintConfigError(ValueError):
    """An invalid sprint file; every line reads `file: goal id: field: problem`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")

    op: Op
    value: float
    unit: Unit

    def describe(self) -> str:
        return f"{self.op} {with_unit(self.value, self.unit)}"


class Check(BaseModel):
    """One measurable statement: metric + aggregation + target (goals and gate checks)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    title: str
    metric: str
    aggregation: str = "value"
    params: dict[str, Any] = Field(default_factory=dict)
    target: Target
    at_risk_within: float | None = Field(default=None, ge=0, le=1)

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError("must be lower-case kebab-case (a-z, 0-9, -)")
        return value

    @field_validator("at_risk_within", mode="before")
    @classmethod
    def _percent(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().endswith("%"):
            return float(value.strip()[:-1]) / 100
        return value

    @model_validator(mode="after")
    def _known_metric(self) -> Check:
        metrics = known_metrics()
        if self.metric not in metrics:
            raise ValueError(
                f"metric: unknown metric {self.metric!r}; known: {', '.join(sorted(metrics))}"
            )
        registered = metrics[self.metric]
        if self.aggregation not in registered.aggregations:
            raise ValueError(
                f"aggregation: {self.aggregation!r} is not offered by {self.metric} "
                f"(one of {', '.join(registered.aggregations)})"
            )
        base, _ = UNIT_FACTORS[self.target.unit]
        if base != registered.unit:
            raise ValueError(
                f"target.unit: {self.target.unit!r} does not fit {self.metric}, "
                f"which is measured in {registered.unit}"
            )
        return self


class Goal(Check):
    epic: str
    owner: str


class GateCheck(Check):
    """A gate's check. ``reads: now`` measures the present, not the sprint window: the window
    ``lookback_h`` hours up to now (approvals recorded lately, a soak as of now), so a gate can
    turn READY after its sprint is over."""

    reads: Literal["window", "now"] = "window"
    lookback_h: float = Field(default=24.0, gt=0)


class Gate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: str
    action: str = ""
    rollback: str = ""
    preconditions: list[GateCheck]
    verification: list[GateCheck] = Field(default_factory=list)


class TimeWindow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: datetime
    end: datetime

    @model_validator(mode="after")
    def _order(self) -> TimeWindow:
        for name in ("start", "end"):
            if getattr(self, name).tzinfo is None:
                raise ValueError(f"{name}: give a timezone (e.g. 2025-11-10T00:00:00Z)")
        if self.end <= self.start:
            raise ValueError("end: must be after start")
        return self

    def window(self) -> Window:
        return Window(self.start.astimezone(UTC), self.end.astimezone(UTC))


class Epic(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    title: str


class BacklogItem(BaseModel):
    """A plan §4 item: tracked by its GitHub issue; PRs naming its id in the title are its work."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Z]{2}-\d{4}$")
    title: str
    epic: str
    owner: str
    week: int = Field(ge=1)
    issue: str | None = None  # "owner/repo#number"
    label: str | None = None
    checks: list[str] = Field(default_factory=list)  # goal / gate check ids proving it


class DorItem(BaseModel):
    """A Definition-of-Ready line: manual (who ticked it) or automatic (a check id)."""

    model_config = ConfigDict(extra="forbid")

    text: str
    kind: Literal["manual", "automatic"]
    ticked_by: str | None = None
    ticked_on: date | None = None
    check: str | None = None

    @model_validator(mode="after")
    def _check_for_automatic(self) -> DorItem:
        if self.kind == "automatic" and not self.check:
            raise ValueError("check: an automatic DoR item names the check that evaluates it")
        return self


class Risk(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    risk: str
    prob: Literal["L", "M", "H"]
    impact: Literal["L", "M", "H"]
    mitigation: str
    owner: str
    watch: list[str] = Field(default_factory=list)  # goal / gate check ids showing mitigation


class Week(BaseModel):
    model_config = ConfigDict(extra="forbid")

    week: int = Field(ge=1)
    start: date
    end: date
    scope: list[str]


class Calendar(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weeks: list[Week]
    release_cut: date
    canary_soak_hours: tuple[int, int] = (24, 48)
    rollback: str = ""


class Sprint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: str
    title: str
    plan: str | None = None
    window: TimeWindow
    baseline: TimeWindow | None = None
    release_cut: date | None = None
    goals: list[Goal]
    gates: list[Gate] = Field(default_factory=list)
    epics: list[Epic] = Field(default_factory=list)
    backlog: list[BacklogItem] = Field(default_factory=list)
    definition_of_ready: list[DorItem] = Field(default_factory=list)
    risks: list[Risk] = Field(default_factory=list)
    calendar: Calendar | None = None

    @model_validator(mode="after")
    def _plan_refs(self) -> Sprint:
        epics = {e.id for e in self.epics}
        checks = {g.id for g in self.goals} | {
            c.id for gate in self.gates for c in (*gate.preconditions, *gate.verification)
        }
        items = {b.id for b in self.backlog}
        for item in self.backlog:
            if epics and item.epic not in epics:
                raise ValueError(f"backlog: {item.id}: unknown epic {item.epic!r}")
            for ref in item.checks:
                if ref not in checks:
                    raise ValueError(f"backlog: {item.id}: unknown check {ref!r}")
        for risk in self.risks:
            for ref in risk.watch:
                if ref not in checks:
                    raise ValueError(f"risks: {risk.id}: unknown check {ref!r}")
        for dor in self.definition_of_ready:
            if dor.check and dor.check not in checks:
                raise ValueError(f"definition_of_ready: unknown check {dor.check!r}")
        if self.calendar is not None:
            for week in self.calendar.weeks:
                for ref in week.scope:
                    if ref not in items:
                        raise ValueError(f"calendar: week {week.week}: unknown item {ref!r}")
        return self

    @model_validator(mode="after")
    def _unique_ids(self) -> Sprint:
        seen: set[str] = set()
        for goal in self.goals:
            if goal.id in seen:
                raise ValueError(f"goals: duplicate goal id {goal.id!r}")
            seen.add(goal.id)
        return self

    def goal(self, goal_id: str) -> Goal:
        for goal in self.goals:
            if goal.id == goal_id:
                return goal
        raise KeyError(goal_id)

    def baseline_window(self) -> Window:
        if self.baseline is not None:
            return self.baseline.window()
        own = self.window.window()
        return Window(own.start - (own.end - own.start), own.start)


def _locate(raw: Any, loc: tuple[int | str, ...]) -> tuple[str, str]:
    """Turn a pydantic error location into (goal id or gate/check label, field path)."""
    node: Any = raw
    owner = "sprint"
    parts: list[str] = []
    parent: int | str = ""
    for step in loc:
        child = None
        if isinstance(node, list) and isinstance(step, int) and step < len(node):
            child = node[step]
        elif isinstance(node, dict) and isinstance(step, str):
            child = node.get(step)
        label = child.get("id") or child.get("stage") if isinstance(child, dict) else None
        if isinstance(step, int) and label:
            if parent == "goals":
                owner = str(label)
            elif parent == "gates":
                owner = f"gate {label}"
            else:
                owner = f"{owner} {label}"
            parts = []
        else:
            parts.append(f"[{step}]" if isinstance(step, int) else str(step))
        parent, node = step, child
    return owner, ".".join(parts).replace(".[", "[") or "(whole)"


def load_sprint(path: Path) -> Sprint:
    """Load and validate one sprint file; raise :class:`SprintConfigError` naming every problem."""
    name = str(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SprintConfigError([f"{name}: cannot read: {exc.strerror or exc}"]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "?"
        raise SprintConfigError([f"{name}: sprint: {where}: not valid YAML"]) from exc
    if not isinstance(raw, dict):
        raise SprintConfigError([f"{name}: sprint: (whole): expected a mapping of sprint fields"])
    try:
        return Sprint.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            owner, where = _locate(raw, tuple(err["loc"]))
            message = str(err["msg"]).removeprefix("Value error, ")
            if ": " in message and message.split(": ", 1)[0] in {
                "metric",
                "aggregation",
                "target.unit",
                "end",
                "start",
                "goals",
            }:
                where, message = message.split(": ", 1)
            problems.append(f"{name}: {owner}: {where}: {message}")
        raise SprintConfigError(problems) from exc


def list_sprints(folder: Path) -> list[Path]:
    """Return the sprint files in ``folder`` sorted by name."""
    return sorted(p for p in folder.glob("*.yaml") if p.is_file())


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


@dataclass
class TrendPoint:
    day: date
    value: float | None


@dataclass
class CheckResult:
    """The evaluation of one goal or gate check, in the target's unit."""

    id: str
    title: str
    metric: str
    aggregation: str
    definition: str
    page: str
    status: Status
    value: float | None
    unit: str
    target: dict[str, Any]
    samples: int
    detail: str
    reason: str
    epic: str | None = None
    owner: str | None = None
    trend: list[TrendPoint] = field(default_factory=list)
    trend_direction: str = "unknown"
    rows_url: str | None = None  # the JSON rows behind the number (count = samples)
    rows_view: str | None = None  # the same rows as a console page

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["trend"] = [{"day": p.day.isoformat(), "value": p.value} for p in self.trend]
        return data


@dataclass
class GateResult:
    stage: str
    action: str
    rollback: str
    ready: bool
    preconditions: list[CheckResult]
    verification: list[CheckResult]


def _fmt(value: float) -> str:
    if math.isclose(value, round(value), abs_tol=1e-9):
        return str(round(value))
    if abs(value) >= 100:
        return f"{value:.0f}"
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    # Never let rounding show a whole number the value is not (14.999 is not "15").
    return text if "." in text else f"≈{text}"


def with_unit(value: float, unit: str) -> str:
    """Render a value in its unit for people: `14.6 min`, `99.02 %`, `3` (counts bare)."""
    return _fmt(value) if unit == "count" else f"{_fmt(value)} {unit}"


def compare(value: float, op: str, target: float) -> bool:
    """Return whether ``value op target`` holds (exactly on a strict bound is a miss)."""
    eps = 1e-9 * max(1.0, abs(target))
    if op == "<":
        return value < target - eps
    if op == "<=":
        return value <= target + eps
    if op == ">":
        return value > target + eps
    if op == ">=":
        return value >= target - eps
    return abs(value - target) <= eps


def status_for(value: float | None, check: Check) -> Status:
    """Goal status of ``value`` (already in the target's unit) against ``check``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "no_data"
    target = check.target
    if not compare(value, target.op, target.value):
        return "missed"
    margin = check.at_risk_within
    if margin and target.value:
        band = abs(target.value) * margin
        if target.op in ("<", "<=") and value > target.value - band:
            return "at_risk"
        if target.op in (">", ">=") and value < target.value + band:
            return "at_risk"
    return "met"


def _convert(result: MetricValue, unit: str) -> float | None:
    if result.value is None:
        return None
    return result.value * UNIT_FACTORS[unit][1]


def _reason(status: Status, value: float | None, check: Check, result: MetricValue) -> str:
    target = check.target.describe()
    if status == "no_data":
        return f"no data: {result.detail or 'no samples in the window'}"
    shown = with_unit(value or 0.0, check.target.unit)
    if status == "missed":
        return f"{shown} is not {target}"
    if status == "at_risk":
        return f"{shown} meets {target} by less than {_fmt((check.at_risk_within or 0) * 100)} %"
    return f"{shown} meets {target}"


def _days(window: Window, as_of: datetime) -> list[Window]:
    days = []
    start = window.start
    end = min(window.end, max(as_of, window.start + timedelta(days=1)))
    while start < end:
        days.append(Window(start, min(start + timedelta(days=1), end)))
        start += timedelta(days=1)
    return days


def trend_windows(window: Window, as_of: datetime, *, state: bool) -> list[Window]:
    """The windows of a daily trend over ``window`` up to ``as_of``: each day on its own, or for
    a state metric the window from its start to that day's end."""
    days = _days(window, as_of)
    return [Window(window.start, d.end) for d in days] if state else days


def _direction(points: list[TrendPoint], op: str) -> str:
    values = [p.value for p in points if p.value is not None]
    if len(values) < 2:
        return "unknown"
    k = max(1, min(3, len(values) // 2))
    first, last = sum(values[:k]) / k, sum(values[-k:]) / k
    if math.isclose(first, last, rel_tol=0.02, abs_tol=1e-9):
        return "flat"
    lower_is_better = op in ("<", "<=")
    better = last < first if lower_is_better else last > first
    return "improving" if better else "worsening"


RANGES = ("sprint", "baseline")


def effective_window(window: Window, now: datetime) -> Window:
    """``window`` clipped to ``now`` (a running sprint is measured up to now), as evaluated."""
    if window.end <= now:
        return window
    return Window(window.start, max(now, window.start + timedelta(seconds=1)))


def rows_url(sprint_slug: str, check_id: str, range_key: str = "sprint") -> str:
    """The rows API of one goal or gate check (``range_key``: sprint or baseline)."""
    suffix = "" if range_key == "sprint" else f"?range={range_key}"
    return f"/api/rows/{sprint_slug}/{check_id}{suffix}"


def rows_view(sprint_slug: str, check_id: str, range_key: str = "sprint") -> str:
    """The console view of the same rows (the Sprint page's rows section)."""
    suffix = "" if range_key == "sprint" else f"&range={range_key}"
    return f"/sprint?sprint={sprint_slug}&rows={check_id}{suffix}"


def find_check(sprint: Sprint, check_id: str) -> Check | None:
    """A goal or gate check of ``sprint`` by id (goals first), or None."""
    for goal in sprint.goals:
        if goal.id == check_id:
            return goal
    for gate in sprint.gates:
        for check in (*gate.preconditions, *gate.verification):
            if check.id == check_id:
                return check
    return None


def _range_of(sprint: Sprint, window: Window) -> str:
    return "baseline" if window == sprint.baseline_window() else "sprint"


def _with_rows(result: CheckResult, sprint: Sprint, window: Window) -> CheckResult:
    range_key = _range_of(sprint, window)
    result.rows_url = rows_url(sprint.slug, result.id, range_key)
    result.rows_view = rows_view(sprint.slug, result.id, range_key)
    return result


def evaluate_check(
    session: Session,
    check: Check,
    window: Window,
    *,
    now: datetime | None = None,
    with_trend: bool = False,
) -> CheckResult:
    """Evaluate one check over ``window`` (clipped to ``now``), optionally with a daily trend."""
    now = now or datetime.now(UTC)
    registered = get_metric(check.metric)
    effective = effective_window(window, now)
    result = registered.fn(session, effective, check.aggregation, check.params)
    value = _convert(result, check.target.unit)
    status = status_for(value, check)
    trend: list[TrendPoint] = []
    if with_trend:
        # One call for every day: a bounded number of statements, never one per day.
        days = _days(window, now)
        windows = trend_windows(window, now, state=registered.state)
        values = registered.daily(session, windows, check.aggregation, check.params)
        trend = [
            TrendPoint(day.start.date(), _convert(daily, check.target.unit))
            for day, daily in zip(days, values, strict=True)
        ]
    return CheckResult(
        id=check.id,
        title=check.title,
        metric=check.metric,
        aggregation=check.aggregation,
        definition=registered.definition,
        page=registered.page,
        status=status,
        value=value,
        unit=check.target.unit,
        target=check.target.model_dump(),
        samples=result.samples,
        detail=result.detail,
        reason=_reason(status, value, check, result),
        epic=getattr(check, "epic", None),
        owner=getattr(check, "owner", None),
        trend=trend,
        trend_direction=_direction(trend, check.target.op),
    )


def evaluate_goals(
    session: Session,
    sprint: Sprint,
    *,
    window: Window | None = None,
    now: datetime | None = None,
    with_trend: bool = True,
) -> list[CheckResult]:
    """Evaluate every goal of ``sprint`` over its window (or ``window``), in file order."""
    window = window or sprint.window.window()
    return [
        _with_rows(
            evaluate_check(session, goal, window, now=now, with_trend=with_trend), sprint, window
        )
        for goal in sprint.goals
    ]


def evaluate_gates(
    session: Session, sprint: Sprint, *, window: Window | None = None, now: datetime | None = None
) -> list[GateResult]:
    """Evaluate each promotion gate's preconditions and verification checks.

    A check with ``reads: now`` is measured over the ``lookback_h`` hours up to ``now`` whatever
    the window shown (sprint or baseline); the others over ``window`` (clipped to ``now``).
    """
    window = window or sprint.window.window()
    now = now or datetime.now(UTC)

    def evaluate(c: GateCheck) -> CheckResult:
        if c.reads == "now":
            # The rows link still names the range shown: the rows page has no "now" range yet.
            present = Window(now - timedelta(hours=c.lookback_h), now)
            return _with_rows(evaluate_check(session, c, present, now=now), sprint, window)
        return _with_rows(evaluate_check(session, c, window, now=now), sprint, window)

    gates = []
    for gate in sprint.gates:
        pre = [evaluate(c) for c in gate.preconditions]
        ver = [evaluate(c) for c in gate.verification]
        gates.append(
            GateResult(
                stage=gate.stage,
                action=gate.action,
                rollback=gate.rollback,
                ready=all(c.status in ("met", "at_risk") for c in pre),
                preconditions=pre,
                verification=ver,
            )
        )
    return gates
