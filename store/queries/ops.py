"""Read side for Ingest health: last run of every collector, recent dead letters."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from store.models import IngestReject, SyncRun
from store.queries.frames import frame

LAST_RUN_COLUMNS = [
    "source",
    "started_at",
    "finished_at",
    "status",
    "rows_stored",
    "rows_duplicate",
    "rows_rejected",
    "error",
    "runs",
]


def last_runs_frame(session: Session) -> pd.DataFrame:
    """The latest `sync_runs` row per source plus the number of runs; see LAST_RUN_COLUMNS."""
    latest = (
        select(SyncRun.source, func.max(SyncRun.id).label("id"), func.count().label("runs"))
        .group_by(SyncRun.source)
        .subquery()
    )
    stmt = (
        select(
            SyncRun.source,
            SyncRun.started_at,
            SyncRun.finished_at,
            SyncRun.status,
            SyncRun.rows_stored,
            SyncRun.rows_duplicate,
            SyncRun.rows_rejected,
            SyncRun.error,
            latest.c.runs,
        )
        .join(latest, and_(SyncRun.id == latest.c.id))
        .order_by(SyncRun.source)
    )
    return frame(session, stmt, LAST_RUN_COLUMNS)


def rejects_frame(session: Session, *, limit: int = 200, source: str | None = None) -> pd.DataFrame:
    """Newest dead letters first. Columns: id, source, received_at, item_index, reason, payload."""
    stmt = (
        select(
            IngestReject.id,
            IngestReject.source,
            IngestReject.received_at,
            IngestReject.item_index,
            IngestReject.reason,
            IngestReject.payload,
        )
        .order_by(IngestReject.id.desc())
        .limit(limit)
    )
    if source:
        stmt = stmt.where(IngestReject.source == source)
    return frame(session, stmt, ["id", "source", "received_at", "item_index", "reason", "payload"])


def reject_counts_frame(session: Session) -> pd.DataFrame:
    """Dead letters per source. Columns: source, rejects, last_at."""
    stmt = select(IngestReject.source, func.count(), func.max(IngestReject.received_at)).group_by(
        IngestReject.source
    )
    return frame(session, stmt, ["source", "rejects", "last_at"])
