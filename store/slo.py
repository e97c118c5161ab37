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

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class SloConfigError(ValueError):
    """One or more SLO files are invalid; each problem reads `file: field: problem`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def parse_duration(text: str) -> timedelta:
    """Parse `15s`, `5m`, `6h`, `30d` into a timedelta."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration like 15s, 5m, 6h or 30d")
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
    """Where good and total come from: two PromQL queries answering events per second.

    The SLI collector (`collectors/sli.py`) evaluates both with `query_range` every ``step``
    over ``lookback`` (first run) and stores good/total *counts* per step (rate × step). Every
    range selector in the queries (`[5m]`) is rewritten to the window being asked for: the
    step when collecting, 5m…30d in the generated recording rules, so both read one definition.
    """

    model_config = ConfigDict(extra="forbid")
    kind: str = "prometheus"
    good: str
    total: str
    step: str = "1m"
    lookback: str = "6h"

    @field_validator("step", "lookback")
    @classmethod
    def _durations(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def step_delta(self) -> timedelta:
        return parse_duration(self.step)

    @property
    def lookback_delta(self) -> timedelta:
        return parse_duration(self.lookback)


def _page_only() -> list[Severity]:
    return ["page"]


class BudgetPolicy(BaseModel):
    """When the error-budget policy freezes changes."""

    model_config = ConfigDict(extra="forbid")
    freeze_below_remaining: float = Field(
        default=0.0, ge=-1000, le=100, description="freeze when budget remaining (%) is below"
    )
    freeze_on: list[Severity] = Field(default_factory=_page_only)
    no_data: PolicyState = Field(
        default="normal",
        description="state while the SLO window holds no samples: freeze (fail closed) or normal",
    )
    min_rate: float = Field(
        default=0.0,
        ge=0,
        description="a burn alert needs more than this many events/s over its long window "
        "(minimum-traffic guard: one error on a quiet service does not page)",
    )


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

    long_rate: float | None = None
    """Events per second over the long window (None: not known); the min-traffic guard."""
    min_rate: float = 0.0

    @property
    def guarded(self) -> bool:
        """True when the long window saw too little traffic for this pair to fire."""
        return self.long_rate is not None and self.long_rate <= self.min_rate and self.min_rate > 0

    @property
    def firing(self) -> bool:
        return (
            not self.guarded
            and self.long_burn is not None
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
    pairs = [
        PairState(
            p,
            burns[p.long],
            burns[p.short],
            long_rate=sums.get(p.long, (0.0, 0.0))[1] / p.long.total_seconds(),
            min_rate=slo.policy.min_rate,
        )
        for p in WINDOW_PAIRS
    ]
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


# --------------------------------------------------------------------------------------------
# Generated Prometheus rules (the same windows, factors and guard the console evaluates)
# --------------------------------------------------------------------------------------------

_RANGE = re.compile(r"\[\s*\d+[smhdwy]\s*(?::[^\]]*)?\]")
RULE_ERROR_RATIO = "slo:sli_error:ratio_rate{window}"
RULE_TOTAL_RATE = "slo:sli_total:rate{window}"
RULE_BUDGET_LEFT = "slo:error_budget_remaining:ratio"
ALERT_NAMES: dict[Severity, str] = {"page": "FastBurn", "ticket": "SlowBurn"}


def with_range(query: str, window: timedelta) -> str:
    """``query`` with every range selector (`[5m]`) replaced by ``window``."""
    return _RANGE.sub(f"[{format_duration(window)}]", query)


def _selector(slo: SloDefinition) -> str:
    return f'{{service="{slo.service}",slo="{slo.slo}"}}'


def _num(value: float) -> str:
    return f"{value:.10g}"


def runbook_url(console_url: str, service: str) -> str:
    """The console's runbook page for ``service`` (the alerts' `runbook_url` annotation)."""
    return f"{console_url.rstrip('/')}/reliability?service={service}#runbook"


def recording_rules(slo: SloDefinition) -> list[dict[str, object]]:
    """Error ratio and total rate over every burn window and the SLO window, budget left."""
    labels = {"service": slo.service, "slo": slo.slo}
    rules: list[dict[str, object]] = []
    for w in sorted({*BURN_WINDOWS, slo.window_delta}):
        good, total = with_range(slo.source.good, w), with_range(slo.source.total, w)
        name = format_duration(w)
        rules.append(
            {
                "record": RULE_ERROR_RATIO.format(window=name),
                "expr": f"1 - (({good}) / ({total}))",
                "labels": dict(labels),
            }
        )
        rules.append(
            {"record": RULE_TOTAL_RATE.format(window=name), "expr": total, "labels": dict(labels)}
        )
    rules.append(
        {
            "record": RULE_BUDGET_LEFT,
            "expr": f"1 - {RULE_ERROR_RATIO.format(window=slo.window)}{_selector(slo)}"
            f" / {_num(slo.budget)}",
            "labels": dict(labels),
        }
    )
    return rules


def alert_expr(slo: SloDefinition, severity: Severity) -> str:
    """Multiwindow multi-burn-rate condition of one severity (pairs OR-ed, guard per pair)."""
    sel = _selector(slo)
    parts = []
    for pair in WINDOW_PAIRS:
        if pair.severity != severity:
            continue
        threshold = f"({_num(pair.factor)} * {_num(slo.budget)})"
        long_name, short_name = format_duration(pair.long), format_duration(pair.short)
        parts.append(
            "(\n"
            f"  {RULE_ERROR_RATIO.format(window=long_name)}{sel} > {threshold}\n"
            f"  and {RULE_ERROR_RATIO.format(window=short_name)}{sel} > {threshold}\n"
            f"  and {RULE_TOTAL_RATE.format(window=long_name)}{sel} > {_num(slo.policy.min_rate)}\n"
            ")"
        )
    return "\nor\n".join(parts)


def alerting_rules(slo: SloDefinition, *, console_url: str) -> list[dict[str, object]]:
    """FastBurn (page) and SlowBurn (ticket) for one SLO, labelled and annotated."""
    rules: list[dict[str, object]] = []
    for severity, name in ALERT_NAMES.items():
        pairs = ", ".join(p.label for p in WINDOW_PAIRS if p.severity == severity)
        budget_query = f"{RULE_BUDGET_LEFT}{_selector(slo)}"
        rules.append(
            {
                "alert": name,
                "expr": alert_expr(slo, severity),
                "labels": {"service": slo.service, "slo": slo.slo, "severity": severity},
                "annotations": {
                    "summary": f"{name}: {slo.service} {slo.slo} error budget burning ({pairs})",
                    "description": (
                        f"{slo.title or slo.service + ' ' + slo.slo}: the error budget burns "
                        f"faster than {pairs}. Budget left over {slo.window}: "
                        f'{{{{ with query "{budget_query.replace(chr(34), chr(92) + chr(34))}" }}}}'
                        "{{ . | first | value | humanizePercentage }}{{ else }}unknown"
                        "{{ end }}."
                    ),
                    "runbook_url": runbook_url(console_url, slo.service),
                },
            }
        )
    return rules


def rule_groups(slos: list[SloDefinition], *, console_url: str) -> dict[str, object]:
    """The Prometheus rule file (one group per SLO) as a YAML-ready mapping."""
    return {
        "groups": [
            {
                "name": f"slo-{slo.service}-{slo.slo}",
                "rules": [*recording_rules(slo), *alerting_rules(slo, console_url=console_url)],
            }
            for slo in slos
        ]
    }


def dump_yaml(data: object) -> str:
    """YAML as people read it: keys in the order given, long strings as literal blocks."""

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _str)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


# --------------------------------------------------------------------------------------------
# On-call: escalation map and runbooks (`data/oncall/*.yaml`)
# --------------------------------------------------------------------------------------------


class EscalationLevel(BaseModel):
    """One level of the escalation map: who is paged, after how long without an ack."""

    model_config = ConfigDict(extra="forbid")
    level: int = Field(ge=1)
    after: str = "0m"
    rotation: str = Field(min_length=1)
    receiver: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    webhook_url: str = Field(pattern=r"^https?://")

    @field_validator("after")
    @classmethod
    def _after(cls, value: str) -> str:
        if value.strip() != "0m":
            parse_duration(value)
        return value


class Runbook(BaseModel):
    """Runbook steps: the template's, then the service's own."""

    model_config = ConfigDict(extra="forbid")
    template: str | None = "slo-burn"
    steps: list[str] = Field(default_factory=list)


class OncallService(BaseModel):
    """One service's escalation map and runbook."""

    model_config = ConfigDict(extra="forbid")
    service: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    team: str = ""
    escalation: list[EscalationLevel] = Field(min_length=1)
    runbook: Runbook = Field(default_factory=Runbook)
    steps: list[str] = Field(default_factory=list, description="resolved runbook (filled on load)")

    @field_validator("escalation")
    @classmethod
    def _ordered(cls, value: list[EscalationLevel]) -> list[EscalationLevel]:
        levels = [lvl.level for lvl in value]
        if levels != list(range(1, len(levels) + 1)):
            raise ValueError(f"levels must be 1, 2, … in order, got {levels}")
        delays = [timedelta(0) if lvl.after == "0m" else parse_duration(lvl.after) for lvl in value]
        if delays != sorted(delays):
            raise ValueError("escalation delays must not decrease from one level to the next")
        return value


def load_oncall(folder: Path, *, slos: list[SloDefinition] | None = None) -> list[OncallService]:
    """Load `folder/*.yaml` (templates from `folder/templates/<name>.yaml`, a `steps:` list).

    Raises :class:`SloConfigError` with `file: field: problem` lines: bad YAML or fields, an
    unknown template, a service defined twice, and (given ``slos``) an SLO service without one.
    """
    problems: list[str] = []
    found: list[OncallService] = []
    templates: dict[str, list[str]] = {}
    for path in sorted((folder / "templates").glob("*.yaml")) if folder.is_dir() else []:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            steps = raw.get("steps") if isinstance(raw, dict) else None
            if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
                raise ValueError("expected a `steps:` list of strings")
            templates[path.stem] = steps
        except (OSError, yaml.YAMLError, ValueError) as exc:
            problems.append(f"{path}: steps: {exc}")
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            problems.append(f"{path}: (whole): cannot read as YAML: {exc}")
            continue
        try:
            entry = OncallService.model_validate(raw)
        except ValidationError as exc:
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"]) or "(whole)"
                problems.append(f"{path}: {where}: {str(err['msg']).removeprefix('Value error, ')}")
            continue
        name = entry.runbook.template
        if name is not None and name not in templates:
            problems.append(f"{path}: runbook.template: no template {name!r} in {folder}/templates")
            continue
        base = templates.get(name, []) if name else []
        entry.steps = [s.replace("{service}", entry.service) for s in [*base, *entry.runbook.steps]]
        found.append(entry)
    seen: set[str] = set()
    for entry in found:
        if entry.service in seen:
            problems.append(f"{folder}: {entry.service}: defined twice")
        seen.add(entry.service)
    for service in sorted({s.service for s in slos or []} - seen):
        problems.append(f"{folder}: {service}: has an SLO but no escalation map")
    if problems:
        raise SloConfigError(problems)
    return found


CREDENTIALS_FILE = "/etc/alertmanager/quarterdeck.token"
"""Where the generated config has Alertmanager read Quarterdeck's bearer token from."""


def alertmanager_config(
    oncall: list[OncallService],
    *,
    console_url: str,
    credentials_file: str = CREDENTIALS_FILE,
) -> dict[str, object]:
    """An Alertmanager route tree and receivers: every alert to Quarterdeck (continue), pages of
    each service to its level-1 receiver. Later levels are listed for the pager to escalate;
    Alertmanager itself has no acknowledgements, so it cannot escalate on a delay."""
    receivers: list[dict[str, object]] = [
        {
            "name": "quarterdeck",
            "webhook_configs": [
                {
                    "url": f"{console_url.rstrip('/')}/ingest/alertmanager",
                    "send_resolved": True,
                    "http_config": {
                        "authorization": {"type": "Bearer", "credentials_file": credentials_file}
                    },
                }
            ],
        }
    ]
    routes: list[dict[str, object]] = [
        {"receiver": "quarterdeck", "continue": True}  # every alert, then the pagers
    ]
    names: set[str] = {"quarterdeck"}
    for entry in oncall:
        first = entry.escalation[0]
        routes.append(
            {
                "receiver": first.receiver,
                "matchers": [f'service="{entry.service}"', 'severity="page"'],
                "continue": True,
            }
        )
        for level in entry.escalation:
            if level.receiver in names:
                continue
            names.add(level.receiver)
            receivers.append(
                {
                    "name": level.receiver,
                    "webhook_configs": [{"url": level.webhook_url, "send_resolved": True}],
                }
            )
    return {
        "route": {
            "receiver": "quarterdeck",
            "group_by": ["alertname", "service", "slo"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": routes,
        },
        "receivers": receivers,
    }
