"""SLO definitions (`data/slos/*.yaml`) and the pure error-budget math over them.

Burn rate = observed error ratio / (1 − objective). Alerts follow the SRE Workbook's
multiwindow, multi-burn-rate table (ch. 5, Table 5-8): a pair fires when *both* its long and short
window burn above its factor; pairs are OR-ed. The error-budget policy (Workbook App. B) freezes
changes while the budget over the SLO window is spent or an alert of a freezing severity fires.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

Severity = Literal["page", "ticket"]
PolicyState = Literal["normal", "freeze"]

_DURATION = re.compile(r"^(\d+)([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


class SloConfigError(ValueError):
    """One or more SLO files are invalid; each problem reads `file: field: problem`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def parse_duration(text: str) -> timedelta:
    """Parse `5m`, `6h`, `30d` into a timedelta."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration like 5m, 6h or 30d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def format_duration(value: timedelta) -> str:
    """Format a window as the YAML writes it (`5m`, `6h`, `3d`)."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class WindowPair:
    """One row of the Workbook's alerting table."""

    severity: Severity
    long: timedelta
    short: timedelta
    factor: float

    @property
    def label(self) -> str:
        return f"{format_duration(self.long)}/{format_duration(self.short)} × {self.factor:g}"


WINDOW_PAIRS: tuple[WindowPair, ...] = (
    WindowPair("page", timedelta(hours=1), timedelta(minutes=5), 14.4),
    WindowPair("page", timedelta(hours=6), timedelta(minutes=30), 6.0),
    WindowPair("ticket", timedelta(days=3), timedelta(hours=6), 1.0),
)
BURN_WINDOWS: tuple[timedelta, ...] = tuple(
    sorted({w for p in WINDOW_PAIRS for w in (p.long, p.short)})
)


class SloSource(BaseModel):
    """Where good and total come from (documentation for people; collectors poll it)."""

    model_config = ConfigDict(extra="forbid")
    kind: str = "prometheus"
    good: str
    total: str


def _page_only() -> list[Severity]:
    return ["page"]


class BudgetPolicy(BaseModel):
    """When the error-budget policy freezes changes."""

    model_config = ConfigDict(extra="forbid")
    freeze_below_remaining: float = Field(
        default=0.0, ge=-1000, le=100, description="freeze when budget remaining (%) is below"
    )
    freeze_on: list[Severity] = Field(default_factory=_page_only)


class SloDefinition(BaseModel):
    """One SLO of one service."""

    model_config = ConfigDict(extra="forbid")
    service: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    slo: str = Field(default="availability", pattern=r"^[a-z0-9][a-z0-9._-]*$")
    title: str = ""
    objective: float = Field(gt=0, lt=100, description="percent of good events")
    window: str = "30d"
    source: SloSource
    policy: BudgetPolicy = Field(default_factory=BudgetPolicy)
    owner: str | None = None

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def budget(self) -> float:
        """Allowed error ratio, 1 − objective."""
        return 1 - self.objective / 100

    @property
    def window_delta(self) -> timedelta:
        return parse_duration(self.window)

    @property
    def key(self) -> tuple[str, str]:
        return (self.service, self.slo)


def load_slos(folder: Path) -> list[SloDefinition]:
    """Load every `*.yaml` in ``folder``; raise :class:`SloConfigError` naming each problem."""
    slos: list[SloDefinition] = []
    problems: list[str] = []
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            problems.append(f"{path}: (whole): cannot read as YAML: {exc}")
            continue
        try:
            slos.append(SloDefinition.model_validate(raw))
        except ValidationError as exc:
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"]) or "(whole)"
                message = str(err["msg"]).removeprefix("Value error, ")
                problems.append(f"{path}: {where}: {message}")
    seen: set[tuple[str, str]] = set()
    for slo in slos:
        if slo.key in seen:
            problems.append(f"{folder}: {slo.service}/{slo.slo}: defined twice")
        seen.add(slo.key)
    if problems:
        raise SloConfigError(problems)
    return slos


# --------------------------------------------------------------------------------------------
# Math
# --------------------------------------------------------------------------------------------


def error_ratio(good: float, total: float) -> float | None:
    """Bad events over all events; None when nothing was counted."""
    if total <= 0:
        return None
    return max(0.0, 1 - good / total)


def burn_rate(ratio: float | None, budget: float) -> float | None:
    """How many times faster than allowed the budget burns (1 = exactly on budget)."""
    if ratio is None:
        return None
    return ratio / budget


def time_to_exhaustion(
    remaining: float | None, burn: float | None, slo_window: timedelta
) -> timedelta | None:
    """How long the remaining budget lasts at ``burn``; zero if spent, None if not burning."""
    if remaining is None or burn is None:
        return None
    if remaining <= 0:
        return timedelta(0)
    if burn <= 0:
        return None
    return slo_window * (remaining / burn)


@dataclass
class PairState:
    """One window pair evaluated: both burn rates and whether the alert fires."""

    pair: WindowPair
    long_burn: float | None
    short_burn: float | None

    @property
    def firing(self) -> bool:
        return (
            self.long_burn is not None
            and self.short_burn is not None
            and self.long_burn > self.pair.factor
            and self.short_burn > self.pair.factor
        )


@dataclass
class BudgetStatus:
    """An SLO's error budget as of one instant, and what the policy makes of it."""

    slo: SloDefinition
    samples: int
    good: float
    total: float
    error_ratio: float | None
    budget_remaining: float | None  # fraction of the window's budget left (1 = untouched)
    burn: dict[timedelta, float | None]
    pairs: list[PairState]
    time_to_exhaustion: timedelta | None
    state: PolicyState
    reasons: list[str] = field(default_factory=list)

    @property
    def no_data(self) -> bool:
        return self.total <= 0

    @property
    def firing(self) -> list[PairState]:
        return [p for p in self.pairs if p.firing]

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def evaluate_budget(
    slo: SloDefinition,
    *,
    sums: dict[timedelta, tuple[float, float]],
    samples: int,
) -> BudgetStatus:
    """Evaluate budget, burn rates, alerts and policy state from (good, total) per window.

    ``sums`` holds the counts over the SLO window and every window in :data:`BURN_WINDOWS`.
    """
    good, total = sums.get(slo.window_delta, (0.0, 0.0))
    ratio = error_ratio(good, total)
    period_burn = burn_rate(ratio, slo.budget)
    remaining = None if period_burn is None else 1 - period_burn
    burns = {w: burn_rate(error_ratio(*sums.get(w, (0.0, 0.0))), slo.budget) for w in BURN_WINDOWS}
    pairs = [PairState(p, burns[p.long], burns[p.short]) for p in WINDOW_PAIRS]
    current = burns[timedelta(hours=1)]
    tte = time_to_exhaustion(remaining, current, slo.window_delta)
    reasons: list[str] = []
    if remaining is not None and remaining * 100 < slo.policy.freeze_below_remaining:
        reasons.append(
            f"error budget remaining {remaining * 100:.1f} % is below "
            f"{slo.policy.freeze_below_remaining:g} % over {slo.window}"
        )
    for pair in pairs:
        if pair.firing and pair.pair.severity in slo.policy.freeze_on:
            reasons.append(
                f"{pair.pair.severity} burn alert {pair.pair.label}: "
                f"{_fmt(pair.long_burn)} over {format_duration(pair.pair.long)} and "
                f"{_fmt(pair.short_burn)} over {format_duration(pair.pair.short)}"
            )
    return BudgetStatus(
        slo=slo,
        samples=samples,
        good=good,
        total=total,
        error_ratio=ratio,
        budget_remaining=remaining,
        burn=burns,
        pairs=pairs,
        time_to_exhaustion=tte,
        state="freeze" if reasons else "normal",
        reasons=reasons,
    )


def _fmt(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value:.1f}×"
