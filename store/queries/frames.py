"""Read-side helpers: a select into a DataFrame with fixed columns, and percentiles."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Executable
from sqlalchemy.orm import Session


def frame(session: Session, stmt: Executable, columns: list[str]) -> pd.DataFrame:
    """Execute ``stmt`` and return its rows as a frame with exactly ``columns`` (empty-safe)."""
    rows = session.execute(stmt).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=columns)


def percentile(values: Any, q: float) -> float | None:
    """Return the q-th percentile (0–100) by linear interpolation between ranks; None if empty."""
    data = np.asarray(list(values), dtype=float)
    if data.size == 0:
        return None
    return float(np.percentile(data, q, method="linear"))


def as_utc(value: datetime) -> datetime:
    """Return ``value`` as aware UTC (naive values are taken to be UTC already)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
