"""Read side for policy as code: decision-log latency, drift, signed rollout, dry-run, soak."""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any

import pandas as pd
from sqlalchemy import ColumnElement, Select, and_, bindparam, func, literal_column, or_, select
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Session

from store.metrics import MetricValue, Window, metric
from store.models import BundlePin, BundleRevision, OpaDecision, OpaStatusReport
from store.models.policy import DECISION_FTS_TABLE, DECISION_SEARCH_DOCUMENT
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
    df["latency_s"] = [
        (r - t).total_seconds() for t, r in zip(df["timestamp"], df["received_at"], strict=True)
    ]
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
    latest = (
        select(BundlePin.bundle, BundlePin.environment, func.max(BundlePin.pinned_at).label("at"))
        .where(BundlePin.pinned_at <= as_of)
        .group_by(BundlePin.bundle, BundlePin.environment)
        .subquery()
    )
    stmt = select(BundlePin.bundle, BundlePin.environment, BundlePin.revision).join(
        latest,
        and_(
            BundlePin.bundle == latest.c.bundle,
            BundlePin.environment == latest.c.environment,
            BundlePin.pinned_at == latest.c.at,
        ),
    )
    return {(b, e): r for b, e, r in session.execute(stmt).all()}


def latest_status_frame(session: Session, *, as_of: datetime) -> pd.DataFrame:
    """Latest status report per (instance, bundle) at or before ``as_of``.

    Columns: instance_id, environment, bundle, active_revision, reported_at, code.
    """
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
    stmt = select(
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
    cols = ["instance_id", "environment", "bundle", "active_revision", "reported_at", "code"]
    return frame(session, stmt, cols)


def drift_frame(
    session: Session, *, as_of: datetime, environment: str | None = None
) -> pd.DataFrame:
    """Instances × bundles with active vs pinned revision as of ``as_of``; see DRIFT_COLUMNS.

    `drifted` is True when the active revision differs from the environment's pin, or the
    instance reports an error code for the bundle. Rows without a pin are not drift.
    """
    status = latest_status_frame(session, as_of=as_of)
    if environment:
        status = status[status["environment"] == environment]
    pins = _latest_pins(session, as_of)
    rows = []
    for rec in status.itertuples(index=False):
        pinned = pins.get((str(rec.bundle), str(rec.environment or "")))
        # pandas turns a missing code into NaN (truthy): only a non-empty string is an error.
        code = rec.code if isinstance(rec.code, str) and rec.code else None
        drifted = pinned is not None and (rec.active_revision != pinned or code is not None)
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
            )
        )
    return pd.DataFrame(rows, columns=DRIFT_COLUMNS).astype({"code": object})


@metric(
    "policy.decision_log_latency",
    unit="s",
    page="/policy",
    aggregations=("p50", "p99"),
    definition="""`received_at − timestamp` per decision-log event (how long until a decision
    is searchable here); percentile over decisions made in the window. OPA's default upload
    delay (300–600 s) makes a 60 s target impossible: such instances are flagged.""",
)
def _decision_latency(
    session: Session, window: Window, agg: str, params: dict[str, Any]
) -> MetricValue:
    df = latency_frame(session, window=window)
    q = {"p50": 50.0, "p99": 99.0}[agg]
    value = percentile(df["latency_s"], q)
    detail = f"{len(df)} decisions"
    if len(df):
        per = df.groupby("instance_id")["latency_s"].quantile(q / 100)
        worst = str(per.idxmax())
        detail += f"; slowest instance {worst} at {float(per.max()):.0f} s"
    return MetricValue(value, len(df), detail)


@metric(
    "policy.drift",
    unit="count",
    page="/policy",
    state=True,
    definition="""OPA instances (by `labels.id`, latest status) whose active revision of a
    bundle differs from the revision pinned for their environment, or that report a bundle
    error. Counted as of the end of the window.""",
)
def _drift(session: Session, window: Window, agg: str, params: dict[str, Any]) -> MetricValue:
    df = drift_frame(session, as_of=window.end, environment=params.get("environment"))
    df = df[df["pinned_revision"].notna()]
    if not len(df):
        return MetricValue(None, 0, "no OPA status reports for a pinned bundle")
    # astype(bool): an empty object column would otherwise select columns, not rows.
    drifted = df[df["drifted"].astype(bool)]
    instances = sorted(set(drifted["instance_id"]))
    detail = "no drift" if not instances else "drifted: " + ", ".join(instances)
    return MetricValue(float(len(instances)), int(df["instance_id"].nunique()), detail)


@metric(
    "policy.signed_active_share",
    unit="ratio",
    page="/policy",
    state=True,
    definition="""Share of (instance, bundle) pairs whose active revision is in the bundle
    registry with a verified signature, as of the end of the window. Unknown, unsigned and
    invalid revisions count against it.""",
)
def _signed_share(
    session: Session, window: Window, agg: str, params: dict[str, Any]
) -> MetricValue:
    status = latest_status_frame(session, as_of=window.end)
    status = status[status["active_revision"].notna()]
    if params.get("environment"):
        status = status[status["environment"] == params["environment"]]
    if not len(status):
        return MetricValue(None, 0, "no OPA status reports")
    verdicts = {
        (b, r): s
        for b, r, s in session.execute(
            select(BundleRevision.bundle, BundleRevision.revision, BundleRevision.signature_status)
        ).all()
    }
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


@metric(
    "policy.dry_run_share",
    unit="ratio",
    page="/policy",
    definition="""Share of decisions in the window made in dry-run (instance label
    `mode: dry-run` or a result with `dry_run: true`), optionally for one environment.""",
)
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
    if not total:
        return MetricValue(None, 0, "no decisions")
    return MetricValue(dry / total, int(total), f"{dry} of {total} decisions in dry-run")


def _int_type() -> Any:
    from sqlalchemy import Integer

    return Integer()


@metric(
    "policy.stage_soak",
    unit="h",
    page="/policy",
    state=True,
    definition="""Hours the revision pinned for the soak environment (default `stage`) has been
    the active revision on every instance of that environment, as of the end of the window;
    0 while any instance still runs another revision.""",
)
def _stage_soak(session: Session, window: Window, agg: str, params: dict[str, Any]) -> MetricValue:
    env = params.get("environment", "stage")
    bundle = params.get("bundle")
    as_of = window.end
    pins = {k: v for k, v in _latest_pins(session, as_of).items() if k[1] == env}
    if bundle:
        pins = {k: v for k, v in pins.items() if k[0] == bundle}
    if not pins:
        return MetricValue(None, 0, f"no bundle pinned for {env}")
    stmt = (
        select(
            OpaStatusReport.instance_id,
            OpaStatusReport.bundle,
            OpaStatusReport.active_revision,
            OpaStatusReport.reported_at,
        )
        .where(OpaStatusReport.environment == env, OpaStatusReport.reported_at <= as_of)
        .order_by(OpaStatusReport.reported_at)
    )
    reports = frame(session, stmt, ["instance_id", "bundle", "active_revision", "reported_at"])
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
_TERM = re.compile(r"[^\W_]+\*?", re.UNICODE)


class SearchError(ValueError):
    """A search the store cannot run as asked (bad cursor, empty full-text query)."""


@dataclass(frozen=True)
class DecisionFilter:
    """What to look for; every field narrows the result (None = no restriction).

    `text` is matched as words (letters and digits; a trailing `*` makes a prefix) that must
    all occur in the decision's input or result, through SQLite FTS5 or PostgreSQL full-text.
    """

    start: datetime | None = None
    end: datetime | None = None
    path: str | None = None
    allowed: bool | None = None
    instance_id: str | None = None
    environment: str | None = None
    revision: str | None = None
    decision_id: str | None = None
    text: str | None = None


@dataclass
class DecisionPage:
    """One page of decisions (newest first) and the cursor of the next page (None at the end)."""

    rows: list[dict[str, Any]]
    next_cursor: str | None
    extra: dict[str, Any] = field(default_factory=dict)


def search_terms(text: str) -> list[str]:
    """Split free text into the words full-text search matches (lower case, `*` = prefix)."""
    return [t.lower() for t in _TERM.findall(text)]


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
