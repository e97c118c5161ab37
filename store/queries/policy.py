"""Read side for policy as code: decision-log latency, drift, signed rollout, dry-run, soak."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any

import pandas as pd
from sqlalchemy import ColumnElement, Select, and_, bindparam, func, literal_column, or_, select
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Session

from store.measures import MetricValue, Window
from store.models import BundlePin, BundleRevision, OpaDecision, OpaStatusReport
from store.models.policy import DECISION_FTS_TABLE, DECISION_SEARCH_DOCUMENT
from store.queries.daily import (
    INDEX,
    Statement,
    grouped,
    span,
    split,
    split_by_time,
    tagged_union,
    window_index,
    within,
)
from store.queries.decision_filter import DecisionFilter as DecisionFilter
from store.queries.decision_filter import search_terms as search_terms
from store.queries.frames import as_utc, frame, percentile

DRIFT_COLUMNS = [
    "instance_id",
    "environment",
    "bundle",
    "active_revision",
    "pinned_revision",
    "drifted",
    "reported_at",
    "code",
    "stale",
    "silent_s",
    "interval_s",
]


def latency_frame(session: Session, *, window: Window) -> pd.DataFrame:
    """Decision-log latency per decision in ``window``.

    Columns: instance_id, timestamp (UTC), latency_s (received_at − timestamp, seconds).
    Only the three columns are read, never the decision bodies.
    """
    stmt = select(OpaDecision.instance_id, OpaDecision.timestamp, OpaDecision.received_at).where(
        OpaDecision.timestamp >= window.start, OpaDecision.timestamp < window.end
    )
    df = frame(session, stmt, ["instance_id", "timestamp", "received_at"])
    if len(df):
        elapsed = pd.to_datetime(df["received_at"], utc=True) - pd.to_datetime(
            df["timestamp"], utc=True
        )
        # Whole microseconds / 10**6 is exactly timedelta.total_seconds(), without a Python loop.
        df["latency_s"] = (elapsed // pd.Timedelta(microseconds=1)).astype("int64") / 10**6
    else:
        df["latency_s"] = pd.Series(dtype=float)
    return df.drop(columns=["received_at"])


def latency_by_instance_frame(session: Session, *, window: Window) -> pd.DataFrame:
    """Per instance: decisions, p50_s, p99_s, max_s of decision-log latency in ``window``."""
    df = latency_frame(session, window=window)
    rows = [
        (
            inst,
            len(g),
            percentile(g["latency_s"], 50),
            percentile(g["latency_s"], 99),
            float(g["latency_s"].max()),
        )
        for inst, g in df.groupby("instance_id")
    ]
    return pd.DataFrame(rows, columns=["instance_id", "decisions", "p50_s", "p99_s", "max_s"])


def _latest_pins(session: Session, as_of: datetime) -> dict[tuple[str, str], str]:
    return {(b, e): r for b, e, r in session.execute(_latest_pins_stmt(as_of)).all()}


def _latest_pins_stmt(as_of: datetime) -> Statement:
    latest = (
        select(BundlePin.bundle, BundlePin.environment, func.max(BundlePin.pinned_at).label("at"))
        .where(BundlePin.pinned_at <= as_of)
        .group_by(BundlePin.bundle, BundlePin.environment)
        .subquery()
    )
    return select(BundlePin.bundle, BundlePin.environment, BundlePin.revision).join(
        latest,
        and_(
            BundlePin.bundle == latest.c.bundle,
            BundlePin.environment == latest.c.environment,
            BundlePin.pinned_at == latest.c.at,
        ),
    )


def _pins_daily(session: Session, windows: Sequence[Window]) -> list[dict[tuple[str, str], str]]:
    """The latest pins as of each window's end, in one statement."""
    pins: list[dict[tuple[str, str], str]] = [{} for _ in windows]
    union = tagged_union(_latest_pins_stmt(w.end) for w in windows)
    for i, b, e, r in session.execute(union).all():
        pins[int(i)][(b, e)] = r
    return pins


def latest_status_frame(session: Session, *, as_of: datetime) -> pd.DataFrame:
    """Latest status report per (instance, bundle) at or before ``as_of``.

    Columns: instance_id, environment, bundle, active_revision, reported_at, code.
    """
    return frame(session, _latest_status_stmt(as_of), STATUS_COLUMNS)


STATUS_COLUMNS = ["instance_id", "environment", "bundle", "active_revision", "reported_at", "code"]


def _latest_status_stmt(as_of: datetime) -> Statement:
    latest = (
        select(
            OpaStatusReport.instance_id,
            OpaStatusReport.bundle,
            func.max(OpaStatusReport.reported_at).label("at"),
        )
        .where(OpaStatusReport.reported_at <= as_of)
        .group_by(OpaStatusReport.instance_id, OpaStatusReport.bundle)
        .subquery()
    )
    return select(
        OpaStatusReport.instance_id,
        OpaStatusReport.environment,
        OpaStatusReport.bundle,
        OpaStatusReport.active_revision,
        OpaStatusReport.reported_at,
        OpaStatusReport.code,
    ).join(
        latest,
        and_(
            OpaStatusReport.instance_id == latest.c.instance_id,
            OpaStatusReport.bundle == latest.c.bundle,
            OpaStatusReport.reported_at == latest.c.at,
        ),
    )


def _status_daily(session: Session, windows: Sequence[Window]) -> list[pd.DataFrame]:
    """The latest status frame as of each window's end, in one statement."""
    df = frame(
        session,
        tagged_union(_latest_status_stmt(w.end) for w in windows),
        [INDEX, *STATUS_COLUMNS],
    )
    return split(df, len(windows))


@dataclass(frozen=True)
class StaleRule:
    """When an OPA instance counts as gone: silent for more than ``intervals`` × its own
    reporting interval (the median gap of its last reports), and at least ``min_silence_s``.

    An instance with a single report has no interval of its own: it is given the cautious
    ``default_interval_s`` (OPA itself reports on every bundle poll, by default every 60–120 s).
    """

    intervals: float = 3.0
    min_silence_s: float = 300.0
    default_interval_s: float = 1800.0
    recent_reports: int = 11


def report_intervals(
    session: Session, *, as_of: datetime, recent: int = 11
) -> dict[str, tuple[datetime, float | None]]:
    """Per instance: (last report ≤ ``as_of``, median gap in s of its last ``recent`` reports)."""
    return _intervals(frame(session, _report_times_stmt(as_of, recent), REPORT_TIME_COLUMNS))


REPORT_TIME_COLUMNS = ["instance_id", "reported_at"]


def _report_times_stmt(as_of: datetime, recent: int) -> Statement:
    times = (
        select(OpaStatusReport.instance_id, OpaStatusReport.reported_at)
        .where(OpaStatusReport.reported_at <= as_of)
        .group_by(OpaStatusReport.instance_id, OpaStatusReport.reported_at)
        .subquery()
    )
    ranked = select(
        times.c.instance_id,
        times.c.reported_at,
        func.row_number()
        .over(partition_by=times.c.instance_id, order_by=times.c.reported_at.desc())
        .label("n"),
    ).subquery()
    return (
        select(ranked.c.instance_id, ranked.c.reported_at)
        .where(ranked.c.n <= recent)
        .order_by(ranked.c.instance_id, ranked.c.reported_at)
    )


def _intervals(df: pd.DataFrame) -> dict[str, tuple[datetime, float | None]]:
    """(last report, median positive gap) per instance from its reports in time order."""
    out: dict[str, tuple[datetime, float | None]] = {}
    for inst, group in df.groupby("instance_id"):
        stamps = list(group["reported_at"])
        gaps = [(b - a).total_seconds() for a, b in pairwise(stamps)]
        out[str(inst)] = (stamps[-1], percentile([g for g in gaps if g > 0], 50))
    return out


def drift_frame(
    session: Session,
    *,
    as_of: datetime,
    environment: str | None = None,
    stale: StaleRule | None = None,
) -> pd.DataFrame:
    """Instances × bundles with active vs pinned revision as of ``as_of``; see DRIFT_COLUMNS.

    `drifted` is True when the active revision differs from the environment's pin, or the
    instance reports an error code for the bundle. Rows without a pin are not drift. An
    instance silent beyond its ``stale`` rule (default :class:`StaleRule`) is `stale`: shown,
    never drift. `instance_id` is the identity label the status receiver stored.
    """
    rule = stale or StaleRule()
    intervals = report_intervals(session, as_of=as_of, recent=rule.recent_reports)
    return _drift_rows(
        latest_status_frame(session, as_of=as_of),
        _latest_pins(session, as_of),
        environment,
        staleness=_staleness(intervals, as_of, rule),
    )


def _staleness(
    intervals: dict[str, tuple[datetime, float | None]], as_of: datetime, rule: StaleRule
) -> dict[str, tuple[bool, float, float]]:
    """instance → (stale, silent_s, interval_s)."""
    out = {}
    for inst, (last, gap) in intervals.items():
        interval = gap if gap is not None else rule.default_interval_s
        silent = (as_utc(as_of) - as_utc(last)).total_seconds()
        out[inst] = (silent > max(rule.min_silence_s, rule.intervals * interval), silent, interval)
    return out


def _drift_rows(
    status: pd.DataFrame,
    pins: dict[tuple[str, str], str],
    environment: str | None,
    staleness: dict[str, tuple[bool, float, float]] | None = None,
) -> pd.DataFrame:
    if environment:
        status = status[status["environment"] == environment]
    rows = []
    for rec in status.itertuples(index=False):
        pinned = pins.get((str(rec.bundle), str(rec.environment or "")))
        # pandas turns a missing code into NaN (truthy): only a non-empty string is an error.
        code = rec.code if isinstance(rec.code, str) and rec.code else None
        stale, silent, interval = (staleness or {}).get(str(rec.instance_id), (False, None, None))
        drifted = (
            pinned is not None and not stale and (rec.active_revision != pinned or code is not None)
        )
        rows.append(
            (
                rec.instance_id,
                rec.environment,
                rec.bundle,
                rec.active_revision,
                pinned,
                drifted,
                rec.reported_at,
                code,
                stale,
                silent,
                interval,
            )
        )
    return pd.DataFrame(rows, columns=DRIFT_COLUMNS).astype({"code": object})


def _decision_latency(
    session: Session, window: Window, agg: str, params: dict[str, Any]
) -> MetricValue:
    return _latency_value(latency_frame(session, window=window), agg)


def _decision_latency_daily(
    session: Session, windows: Sequence[Window], agg: str, params: dict[str, Any]
) -> list[MetricValue]:
    """Per consecutive window, from one read of the span's (instance, timestamp, latency)."""
    df = latency_frame(session, window=span(windows))
    return [_latency_value(part, agg) for part in split_by_time(df, "timestamp", windows)]


def _latency_value(df: pd.DataFrame, agg: str) -> MetricValue:
    q = {"p50": 50.0, "p99": 99.0}[agg]
    value = percentile(df["latency_s"], q)
    detail = f"{len(df)} decisions"
    if len(df):
        per = df.groupby("instance_id")["latency_s"].quantile(q / 100)
        worst = str(per.idxmax())
        detail += f"; slowest instance {worst} at {float(per.max()):.0f} s"
    return MetricValue(value, len(df), detail)


def _drift(session: Session, window: Window, agg: str, params: dict[str, Any]) -> MetricValue:
    rule = StaleRule(intervals=float(params.get("stale_intervals", StaleRule.intervals)))
    return _drift_value(
        drift_frame(session, as_of=window.end, environment=params.get("environment"), stale=rule)
    )


def _drift_daily(
    session: Session, windows: Sequence[Window], agg: str, params: dict[str, Any]
) -> list[MetricValue]:
    """``policy.drift`` as of each window's end: statuses, pins and report times (for
    staleness), one statement each."""
    env = params.get("environment")
    rule = StaleRule(intervals=float(params.get("stale_intervals", StaleRule.intervals)))
    union = tagged_union(_report_times_stmt(w.end, rule.recent_reports) for w in windows)
    ordered = union.order_by(*[union.selected_columns[c] for c in (INDEX, *REPORT_TIME_COLUMNS)])
    times = split(frame(session, ordered, [INDEX, *REPORT_TIME_COLUMNS]), len(windows))
    return [
        _drift_value(
            _drift_rows(
                status, pins, env, staleness=_staleness(_intervals(reports), window.end, rule)
            )
        )
        for window, status, pins, reports in zip(
            windows,
            _status_daily(session, windows),
            _pins_daily(session, windows),
            times,
            strict=True,
        )
    ]


def _drift_value(df: pd.DataFrame) -> MetricValue:
    df = df[df["pinned_revision"].notna()]
    if not len(df):
        return MetricValue(None, 0, "no OPA status reports for a pinned bundle")
    # astype(bool): an empty object column would otherwise select columns, not rows.
    stale = sorted(set(df[df["stale"].astype(bool)]["instance_id"]))
    live = df[~df["instance_id"].isin(stale)]
    drifted = live[live["drifted"].astype(bool)]
    instances = sorted(set(drifted["instance_id"]))
    detail = "no drift" if not instances else "drifted: " + ", ".join(instances)
    if stale:
        detail += f"; {len(stale)} stale (not counted): " + ", ".join(stale)
    if not len(live):
        return MetricValue(None, 0, detail)
    return MetricValue(float(len(instances)), int(live["instance_id"].nunique()), detail)


def _signed_share(
    session: Session, window: Window, agg: str, params: dict[str, Any]
) -> MetricValue:
    status = latest_status_frame(session, as_of=window.end)
    return _signed_value(session, status, params, None)


def _signed_share_daily(
    session: Session, windows: Sequence[Window], agg: str, params: dict[str, Any]
) -> list[MetricValue]:
    """``policy.signed_active_share`` as of each window's end (statuses in one statement)."""
    verdicts: dict[tuple[str, str], str] | None = None
    out = []
    for status in _status_daily(session, windows):
        if verdicts is None and len(status):
            verdicts = _verdicts(session)
        out.append(_signed_value(session, status, params, verdicts))
    return out


def _verdicts(session: Session) -> dict[tuple[str, str], str]:
    return {
        (b, r): s
        for b, r, s in session.execute(
            select(BundleRevision.bundle, BundleRevision.revision, BundleRevision.signature_status)
        ).all()
    }


def _signed_value(
    session: Session,
    status: pd.DataFrame,
    params: dict[str, Any],
    verdicts: dict[tuple[str, str], str] | None,
) -> MetricValue:
    status = status[status["active_revision"].notna()]
    if params.get("environment"):
        status = status[status["environment"] == params["environment"]]
    if not len(status):
        return MetricValue(None, 0, "no OPA status reports")
    if verdicts is None:
        verdicts = _verdicts(session)
    signed = [
        verdicts.get((b, r)) == "verified"
        for b, r in zip(status["bundle"], status["active_revision"], strict=True)
    ]
    bad = sorted(
        {
            f"{b}@{r}"
            for b, r, ok in zip(status["bundle"], status["active_revision"], signed, strict=True)
            if not ok
        }
    )
    detail = "all active revisions verified" if not bad else "not verified: " + ", ".join(bad)
    return MetricValue(sum(signed) / len(signed), len(signed), detail)


def _dry_run_share(
    session: Session, window: Window, agg: str, params: dict[str, Any]
) -> MetricValue:
    stmt = select(
        func.count(),
        func.coalesce(func.sum(func.cast(OpaDecision.dry_run, type_=_int_type())), 0),
    ).where(OpaDecision.timestamp >= window.start, OpaDecision.timestamp < window.end)
    if params.get("environment"):
        stmt = stmt.where(OpaDecision.environment == params["environment"])
    total, dry = session.execute(stmt).one()
    return _dry_run_value(total, dry)


def _dry_run_value(total: Any, dry: Any) -> MetricValue:
    if not total:
        return MetricValue(None, 0, "no decisions")
    return MetricValue(dry / total, int(total), f"{dry} of {total} decisions in dry-run")


def _dry_run_share_daily(
    session: Session, windows: Sequence[Window], agg: str, params: dict[str, Any]
) -> list[MetricValue]:
    """``policy.dry_run_share`` for consecutive windows in one grouped statement."""
    index = window_index(OpaDecision.timestamp, windows)
    stmt = select(
        index,
        func.count(),
        func.coalesce(func.sum(func.cast(OpaDecision.dry_run, type_=_int_type())), 0),
    ).where(within(OpaDecision.timestamp, windows))
    if params.get("environment"):
        stmt = stmt.where(OpaDecision.environment == params["environment"])
    found = grouped(session, stmt.group_by(index), windows, ["total", "dry"])
    return [
        _dry_run_value(0, 0) if r is None else _dry_run_value(int(r["total"]), int(r["dry"]))
        for r in found
    ]


def _int_type() -> Any:
    from sqlalchemy import Integer

    return Integer()


def _stage_soak(session: Session, window: Window, agg: str, params: dict[str, Any]) -> MetricValue:
    env = params.get("environment", "stage")
    as_of = window.end
    pins = _soak_pins(_latest_pins(session, as_of), env, params.get("bundle"))
    if not pins:
        return MetricValue(None, 0, f"no bundle pinned for {env}")
    return _soak_value(
        pins, frame(session, _soak_reports_stmt(env, as_of), SOAK_COLUMNS), env, as_of
    )


def _stage_soak_daily(
    session: Session, windows: Sequence[Window], agg: str, params: dict[str, Any]
) -> list[MetricValue]:
    """``policy.stage_soak`` as of each window's end: pins in one statement, the environment's
    reports up to the last end in another, cut at each end here."""
    env = params.get("environment", "stage")
    pins = [_soak_pins(p, env, params.get("bundle")) for p in _pins_daily(session, windows)]
    reports = pd.DataFrame(columns=SOAK_COLUMNS)
    if any(pins):
        last = max(w.end for w in windows)
        reports = frame(session, _soak_reports_stmt(env, last), SOAK_COLUMNS)
    out = []
    for window, pinned in zip(windows, pins, strict=True):
        if not pinned:
            out.append(MetricValue(None, 0, f"no bundle pinned for {env}"))
            continue
        upto = reports[[as_utc(t) <= window.end for t in reports["reported_at"]]]
        out.append(_soak_value(pinned, upto.reset_index(drop=True), env, window.end))
    return out


SOAK_COLUMNS = ["instance_id", "bundle", "active_revision", "reported_at"]


def _soak_pins(
    pins: dict[tuple[str, str], str], env: str, bundle: str | None
) -> dict[tuple[str, str], str]:
    pins = {k: v for k, v in pins.items() if k[1] == env}
    if bundle:
        pins = {k: v for k, v in pins.items() if k[0] == bundle}
    return pins


def _soak_reports_stmt(env: str, as_of: datetime) -> Statement:
    return (
        select(
            OpaStatusReport.instance_id,
            OpaStatusReport.bundle,
            OpaStatusReport.active_revision,
            OpaStatusReport.reported_at,
        )
        .where(OpaStatusReport.environment == env, OpaStatusReport.reported_at <= as_of)
        .order_by(OpaStatusReport.reported_at)
    )


def _soak_value(
    pins: dict[tuple[str, str], str], reports: pd.DataFrame, env: str, as_of: datetime
) -> MetricValue:
    reports = reports[reports["bundle"].isin([b for b, _ in pins])]
    if not len(reports):
        return MetricValue(None, 0, f"no status reports from {env}")
    since: list[datetime] = []
    for (_inst, bundle_name), group in reports.groupby(["instance_id", "bundle"]):
        pinned = pins[(str(bundle_name), env)]
        on_pin = group["active_revision"] == pinned
        if not bool(on_pin.iloc[-1]):
            return MetricValue(
                0.0, len(reports), f"{_inst} does not run {bundle_name}@{pinned} yet"
            )
        # The soak starts at the first report of the last unbroken run on the pinned revision.
        breaks = group[~on_pin]
        tail = group if breaks.empty else group[group["reported_at"] > breaks["reported_at"].max()]
        since.append(tail["reported_at"].min())
    hours = (as_of - max(since)).total_seconds() / 3600
    return MetricValue(
        hours,
        int(reports["instance_id"].nunique()),
        f"soaking since {max(since):%Y-%m-%d %H:%M} UTC",
    )


# --------------------------------------------------------------------------------------------
# Decision search
# --------------------------------------------------------------------------------------------

DECISION_COLUMNS = [
    "id",
    "decision_id",
    "timestamp",
    "received_at",
    "instance_id",
    "environment",
    "opa_version",
    "path",
    "allowed",
    "dry_run",
    "bundles",
    "requested_by",
]
BODY_COLUMNS = ["opa_version", "erased", "masked", "input", "result", "metrics"]
MAX_PAGE = 1000
# Up to this many full-text hits, the hits are fetched first; beyond, rows are tested in order.
FTS_SELECTIVE_ROWS = 5000


class SearchError(ValueError):
    """A search the store cannot run as asked (bad cursor, empty full-text query)."""


@dataclass
class DecisionPage:
    """One page of decisions (newest first) and the cursor of the next page (None at the end)."""

    rows: list[dict[str, Any]]
    next_cursor: str | None
    extra: dict[str, Any] = field(default_factory=dict)


def _fts_condition(session: Session, terms: Sequence[str]) -> ColumnElement[bool]:
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        # Each word quoted: nothing the user types is FTS5 syntax (no NEAR, OR, column filters).
        query = " ".join(f'"{t.rstrip("*")}"*' if t.endswith("*") else f'"{t}"' for t in terms)
        match = f"{DECISION_FTS_TABLE} MATCH :fts_query"
        probe = sql_text(
            f"SELECT count(*) FROM (SELECT rowid FROM {DECISION_FTS_TABLE} WHERE {match} "
            "LIMIT :cap)"
        )
        hits = session.scalar(probe, {"fts_query": query, "cap": FTS_SELECTIVE_ROWS + 1}) or 0
        if hits > FTS_SELECTIVE_ROWS:
            # A common word: walk the newest rows (timestamp index) and test each against the
            # index, instead of materialising every matching rowid first.
            return sql_text(
                f"EXISTS (SELECT 1 FROM {DECISION_FTS_TABLE} WHERE {match} "
                f"AND {DECISION_FTS_TABLE}.rowid = opa_decisions.id)"
            ).bindparams(bindparam("fts_query", query))  # type: ignore[return-value]
        sub = sql_text(f"SELECT rowid FROM {DECISION_FTS_TABLE} WHERE {match}").bindparams(
            bindparam("fts_query", query)
        )
        return OpaDecision.id.in_(sub.columns(literal_column("rowid")))
    query = " & ".join(f"{t.rstrip('*')}:*" if t.endswith("*") else t for t in terms)
    return literal_column(DECISION_SEARCH_DOCUMENT).op("@@")(
        func.to_tsquery(literal_column("'simple'::regconfig"), bindparam("ts_query", query))
    )


def _revision_condition(session: Session, revision: str) -> ColumnElement[bool]:
    each_fn = (
        func.json_each_text if session.get_bind().dialect.name == "postgresql" else func.json_each
    )
    each = each_fn(OpaDecision.bundles).table_valued("key", "value").alias("b")
    return select(literal_column("1")).select_from(each).where(each.c.value == revision).exists()


def decision_conditions(session: Session, filters: DecisionFilter) -> list[ColumnElement[bool]]:
    """The WHERE conditions for ``filters`` (all parameterised)."""
    conds: list[ColumnElement[bool]] = []
    if filters.start is not None:
        conds.append(OpaDecision.timestamp >= filters.start)
    if filters.end is not None:
        conds.append(OpaDecision.timestamp < filters.end)
    if filters.path:
        path = filters.path.strip("/")
        if path.endswith("*"):
            prefix = path.rstrip("*")
            # A range, not LIKE: the (path, timestamp) index serves it and `%`/`_` stay literal.
            conds.append(and_(OpaDecision.path >= prefix, OpaDecision.path < prefix + "\uffff"))
        else:
            conds.append(OpaDecision.path == path)
    if filters.allowed is not None:
        conds.append(OpaDecision.allowed.is_(filters.allowed))
    if filters.instance_id:
        conds.append(OpaDecision.instance_id == filters.instance_id)
    if filters.environment:
        conds.append(OpaDecision.environment == filters.environment)
    if filters.decision_id:
        conds.append(OpaDecision.decision_id == filters.decision_id)
    if filters.revision:
        conds.append(_revision_condition(session, filters.revision))
    if filters.text is not None and filters.text.strip():
        terms = search_terms(filters.text)
        if not terms:
            raise SearchError("full-text query has no words to search for (letters or digits)")
        conds.append(_fts_condition(session, terms))
    return conds


def encode_cursor(timestamp: datetime, row_id: int) -> str:
    """Opaque keyset cursor for the row after which the next page starts."""
    raw = f"{as_utc(timestamp).isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """Read a cursor made by :func:`encode_cursor`; raise :class:`SearchError` if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, row_id = raw.rsplit("|", 1)
        return as_utc(datetime.fromisoformat(stamp)), int(row_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SearchError("cursor is not one this API handed out") from exc


def _columns(with_bodies: bool) -> list[str]:
    return DECISION_COLUMNS + [c for c in BODY_COLUMNS if c not in DECISION_COLUMNS] * with_bodies


def _decision_select(
    session: Session, filters: DecisionFilter, *, with_bodies: bool = False
) -> Select[Any]:
    cols = [getattr(OpaDecision, c) for c in _columns(with_bodies)]
    return select(*cols).where(*decision_conditions(session, filters))


def _row(values: Sequence[Any], with_bodies: bool = False) -> dict[str, Any]:
    return dict(zip(_columns(with_bodies), values, strict=True))


def search_decisions(
    session: Session,
    *,
    filters: DecisionFilter,
    limit: int = 100,
    cursor: str | None = None,
    with_bodies: bool = False,
) -> DecisionPage:
    """Decisions matching ``filters``, newest first, keyset-paged by (timestamp, id).

    Rows carry DECISION_COLUMNS, plus BODY_COLUMNS (input, result, …) when ``with_bodies``.
    """
    limit = max(1, min(limit, MAX_PAGE))
    stmt = _decision_select(session, filters, with_bodies=with_bodies)
    if cursor:
        stamp, row_id = decode_cursor(cursor)
        stmt = stmt.where(
            or_(
                OpaDecision.timestamp < stamp,
                and_(OpaDecision.timestamp == stamp, OpaDecision.id < row_id),
            )
        )
    stmt = stmt.order_by(OpaDecision.timestamp.desc(), OpaDecision.id.desc()).limit(limit + 1)
    rows = [_row(r, with_bodies) for r in session.execute(stmt).all()]
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1]["timestamp"], rows[-1]["id"]) if more else None
    return DecisionPage(rows, next_cursor)


def decisions_block(
    session: Session, *, filters: DecisionFilter, offset: int, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """Rows ``offset``…``offset+limit`` of the newest-first result, and whether more follow.

    For the grid's infinite row model, which asks for blocks by row number.
    """
    limit = max(1, min(limit, MAX_PAGE))
    stmt = (
        _decision_select(session, filters)
        .order_by(OpaDecision.timestamp.desc(), OpaDecision.id.desc())
        .offset(max(0, offset))
        .limit(limit + 1)
    )
    rows = [_row(r) for r in session.execute(stmt).all()]
    return rows[:limit], len(rows) > limit


def get_decision(session: Session, decision_id: str) -> dict[str, Any] | None:
    """Every stored field of one decision, or None."""
    found = session.scalars(
        select(OpaDecision).where(OpaDecision.decision_id == decision_id)
    ).one_or_none()
    if found is None:
        return None
    return {c.key: getattr(found, c.key) for c in OpaDecision.__table__.columns}


def newest_decision_at(session: Session) -> datetime | None:
    """The timestamp of the newest stored decision (None when there is none)."""
    value = session.scalar(select(func.max(OpaDecision.timestamp)))
    return as_utc(value) if value is not None else None


def decision_facets(session: Session, *, window: Window) -> dict[str, list[str]]:
    """Distinct instances, environments and paths seen in ``window`` (for search controls)."""
    in_window = and_(OpaDecision.timestamp >= window.start, OpaDecision.timestamp < window.end)
    out: dict[str, list[str]] = {}
    for key, col in (
        ("instance_id", OpaDecision.instance_id),
        ("environment", OpaDecision.environment),
        ("path", OpaDecision.path),
    ):
        values = session.scalars(select(col).where(in_window, col.is_not(None)).distinct())
        out[key] = sorted(str(v) for v in values)
    return out


def allow_deny_frame(session: Session, *, window: Window, bucket: str = "day") -> pd.DataFrame:
    """Allowed and denied decision counts per policy path and time bucket in ``window``.

    Columns: bucket (UTC, start of the hour/day), path, allowed, denied, undecided.
    Counted in SQL; decisions whose result has no boolean verdict are `undecided`.
    """
    if bucket not in ("hour", "day"):
        raise ValueError("bucket must be 'hour' or 'day'")
    if session.get_bind().dialect.name == "postgresql":
        key: Any = func.date_trunc(bucket, OpaDecision.timestamp)
    else:
        fmt = "%Y-%m-%d %H:00:00" if bucket == "hour" else "%Y-%m-%d 00:00:00"
        key = func.strftime(fmt, OpaDecision.timestamp)
    allowed = func.sum(func.cast(OpaDecision.allowed.is_(True), _int_type()))
    denied = func.sum(func.cast(OpaDecision.allowed.is_(False), _int_type()))
    stmt = (
        select(key.label("bucket"), OpaDecision.path, allowed, denied, func.count())
        .where(OpaDecision.timestamp >= window.start, OpaDecision.timestamp < window.end)
        .group_by(key, OpaDecision.path)
        .order_by(key, OpaDecision.path)
    )
    rows = []
    for b, path, a, d, n in session.execute(stmt).all():
        stamp = as_utc(datetime.fromisoformat(b) if isinstance(b, str) else b)
        rows.append((stamp, path, int(a or 0), int(d or 0), int(n) - int(a or 0) - int(d or 0)))
    return pd.DataFrame(rows, columns=["bucket", "path", "allowed", "denied", "undecided"])


def pin_changes_frame(session: Session, *, window: Window) -> pd.DataFrame:
    """Bundle pins made in ``window``: pinned_at, bundle, environment, revision, pinned_by."""
    stmt = (
        select(
            BundlePin.pinned_at,
            BundlePin.bundle,
            BundlePin.environment,
            BundlePin.revision,
            BundlePin.pinned_by,
        )
        .where(BundlePin.pinned_at >= window.start, BundlePin.pinned_at < window.end)
        .order_by(BundlePin.pinned_at)
    )
    return frame(session, stmt, ["pinned_at", "bundle", "environment", "revision", "pinned_by"])


# OPA's default decision-log upload delay is 300–600 s; a median gap this long means defaults.
DEFAULT_DELAY_FLOOR_S = 240.0


def upload_cadence_frame(session: Session, *, window: Window) -> pd.DataFrame:
    """Observed upload cadence per instance: uploads, median_gap_s, default_delay (bool).

    One upload = one distinct `received_at` (a chunk is stored with one receive time).
    `default_delay` is True when the median gap between uploads is ≥ 240 s, i.e. the instance
    runs with (close to) OPA's default 300–600 s delays and cannot meet a 60 s latency goal.
    """
    stmt = (
        select(OpaDecision.instance_id, OpaDecision.received_at)
        .where(OpaDecision.received_at >= window.start, OpaDecision.received_at < window.end)
        .distinct()
        .order_by(OpaDecision.instance_id, OpaDecision.received_at)
    )
    df = frame(session, stmt, ["instance_id", "received_at"])
    rows = []
    for inst, group in df.groupby("instance_id"):
        stamps = list(group["received_at"])
        gaps = [(b - a).total_seconds() for a, b in pairwise(stamps)]
        median = percentile(gaps, 50)
        rows.append(
            (inst, len(stamps), median, median is not None and median >= DEFAULT_DELAY_FLOOR_S)
        )
    return pd.DataFrame(rows, columns=["instance_id", "uploads", "median_gap_s", "default_delay"])


DELIVERY_COLUMNS = [
    "instance_id",
    "environment",
    "process_id",
    "reported_at",
    "state",
    "code",
    "message",
    "dropped_chunks",
    "dropped_buffer_full",
    "dropped_total",
    "processes",
    "median_gap_s",
    "lints",
]
_DROP_BYTES = "counter_decision_logs_dropped_buffer_size_limit_bytes_exceeded"
_DROP_FULL = "counter_decision_logs_dropped_buffer_size_limit_exceeded"


def delivery_lints(
    *, median_gap_s: float | None, dropped_chunks: int, dropped_full: int, code: str | None
) -> list[str]:
    """What to fix in one instance's decision-log delivery (see docs/policy.md, "Lints")."""
    lints = []
    if median_gap_s is not None and median_gap_s >= DEFAULT_DELAY_FLOOR_S:
        lints.append(
            f"default-delay: uploads every ~{median_gap_s:.0f} s (OPA's default 300–600 s); set "
            "decision_logs.reporting.min_delay_seconds/max_delay_seconds (e.g. 1/10)"
        )
    if dropped_chunks:
        lints.append(
            f"size-buffer: {dropped_chunks} chunk(s) dropped — the default `size` buffer loses "
            "decisions during an outage; set decision_logs.reporting.buffer_type: event"
        )
    elif dropped_full:
        lints.append(
            f"buffer-full: {dropped_full} decision(s) dropped on a full buffer; raise "
            "reporting.buffer_size_limit_events (event buffer) or shorten the delays"
        )
    if code:
        lints.append(f"upload-failing: OPA reports {code} (see message)")
    return lints


def delivery_frame(session: Session, *, as_of: datetime, since: datetime) -> pd.DataFrame:
    """Per OPA instance: what its status reports in [since, as_of] say about decision logs.

    Columns DELIVERY_COLUMNS: the latest report's plugin `state`, `code`/`message` (set while
    uploads fail), the drop counters — `dropped_chunks` (size buffer,
    `…_bytes_exceeded`) and `dropped_buffer_full` (`…_size_limit_exceeded`) of the latest
    process, `dropped_total` summed over every process seen (counters restart with OPA) —
    the observed upload gap (of instances whose median decision-log latency is ≥ 120 s, so
    that sparse traffic is not mistaken for OPA's default delay), and `lints`
    (:func:`delivery_lints`).
    """
    stmt = (
        select(
            OpaStatusReport.instance_id,
            OpaStatusReport.environment,
            OpaStatusReport.process_id,
            OpaStatusReport.reported_at,
            OpaStatusReport.decision_logs,
        )
        .where(OpaStatusReport.reported_at >= since, OpaStatusReport.reported_at <= as_of)
        .order_by(OpaStatusReport.instance_id, OpaStatusReport.reported_at)
    )
    df = frame(session, stmt, ["instance_id", "environment", "process_id", "reported_at", "dl"])
    window = Window(since, as_of)
    cadence = upload_cadence_frame(session, window=window)
    # Sparse traffic also spaces uploads out: only a slow median latency confirms the delay.
    latency = latency_by_instance_frame(session, window=window)
    slow = set(latency[latency["p50_s"] >= DEFAULT_DELAY_FLOOR_S / 2]["instance_id"])
    gaps = {
        i: g
        for i, g in zip(cadence["instance_id"], cadence["median_gap_s"], strict=True)
        if i in slow
    }
    rows = []
    for inst, group in df.groupby("instance_id"):
        last = group.iloc[-1]
        info = last["dl"] if isinstance(last["dl"], dict) else {}
        per_process: dict[str, int] = {}
        for process, dl in zip(group["process_id"], group["dl"], strict=True):
            if isinstance(dl, dict):
                seen = int(dl.get(_DROP_BYTES, 0)) + int(dl.get(_DROP_FULL, 0))
                key = str(process)
                per_process[key] = max(per_process.get(key, 0), seen)
        # Decisions carry the same identity label; rows stored before they did (or from an OPA
        # without the label) carry `labels.id`, so this instance's process ids count too.
        candidates = [gaps.get(str(inst))] + [gaps.get(str(p)) for p in set(group["process_id"])]
        known = [g for g in candidates if isinstance(g, float | int) and g == g]
        median = float(max(known)) if known else None
        chunks, full = int(info.get(_DROP_BYTES, 0)), int(info.get(_DROP_FULL, 0))
        code = info.get("code")
        rows.append(
            (
                inst,
                last["environment"],
                last["process_id"],
                last["reported_at"],
                info.get("state"),
                code,
                info.get("message"),
                chunks,
                full,
                sum(per_process.values()),
                len(set(group["process_id"])),
                median,
                delivery_lints(
                    median_gap_s=median,
                    dropped_chunks=max(chunks, 0),
                    dropped_full=full,
                    code=code if isinstance(code, str) else None,
                ),
            )
        )
    return pd.DataFrame(rows, columns=DELIVERY_COLUMNS)


def bundle_revisions_frame(session: Session) -> pd.DataFrame:
    """Every registered bundle revision, newest first.

    Columns: bundle, revision, signature_status (verified | unsigned | invalid),
    signature_detail, key_id, sha256, source, added_at.
    """
    cols = [
        "bundle",
        "revision",
        "signature_status",
        "signature_detail",
        "key_id",
        "sha256",
        "source",
        "added_at",
    ]
    stmt = select(*[getattr(BundleRevision, c) for c in cols]).order_by(
        BundleRevision.added_at.desc(), BundleRevision.bundle
    )
    return frame(session, stmt, cols)
