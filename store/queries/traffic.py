"""Read side for traffic: Route53 weights per snapshot, observed request share, 429/5xx rates."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from store.metrics import MetricValue, Window, metric
from store.models import DnsWeightObservation, TrafficSample
from store.queries.frames import frame


def weights_frame(
    session: Session, *, as_of: datetime, record_name: str | None = None
) -> pd.DataFrame:
    """Latest weight of every set (not gone) as of ``as_of``.

    Columns: record_name, record_type, set_identifier, weight, share (0–1), observed_at.
    """
    latest = (
        select(
            DnsWeightObservation.record_name,
            DnsWeightObservation.record_type,
            DnsWeightObservation.set_identifier,
            func.max(DnsWeightObservation.observed_at).label("at"),
        )
        .where(DnsWeightObservation.observed_at <= as_of)
        .group_by(
            DnsWeightObservation.record_name,
            DnsWeightObservation.record_type,
            DnsWeightObservation.set_identifier,
        )
        .subquery()
    )
    stmt = (
        select(
            DnsWeightObservation.record_name,
            DnsWeightObservation.record_type,
            DnsWeightObservation.set_identifier,
            DnsWeightObservation.weight,
            DnsWeightObservation.observed_at,
        )
        .join(
            latest,
            and_(
                DnsWeightObservation.record_name == latest.c.record_name,
                DnsWeightObservation.record_type == latest.c.record_type,
                DnsWeightObservation.set_identifier == latest.c.set_identifier,
                DnsWeightObservation.observed_at == latest.c.at,
            ),
        )
        .where(DnsWeightObservation.gone.is_(False))
    )
    if record_name:
        stmt = stmt.where(DnsWeightObservation.record_name == record_name.rstrip(".") + ".")
    df = frame(
        session, stmt, ["record_name", "record_type", "set_identifier", "weight", "observed_at"]
    )
    totals = df.groupby(["record_name", "record_type"])["weight"].transform("sum")
    df["share"] = (df["weight"] / totals.where(totals > 0)).fillna(0.0)
    return df


def traffic_by_region_frame(session: Session, *, window: Window) -> pd.DataFrame:
    """Per region over ``window``: requests, 429s, 5xx, 503s (counts ≈ rate × 15 s step)."""
    stmt = (
        select(
            TrafficSample.region,
            func.sum(TrafficSample.requests_per_s),
            func.sum(TrafficSample.rate_429_per_s),
            func.sum(TrafficSample.rate_5xx_per_s),
            func.sum(TrafficSample.rate_503_per_s),
            func.count(),
        )
        .where(TrafficSample.ts >= window.start, TrafficSample.ts < window.end)
        .group_by(TrafficSample.region)
    )
    return frame(session, stmt, ["region", "requests", "r429", "r5xx", "r503", "samples"])


@metric(
    "traffic.dns_weight_split_deviation",
    unit="ratio",
    page="/traffic",
    state=True,
    definition="""For the configured record, the largest gap between a weighted set's share of
    the total weight and an equal split (50/50 for two regions), as of the end of the window.""",
)
def _weight_split(
    session: Session, window: Window, agg: str, params: dict[str, Any]
) -> MetricValue:
    df = weights_frame(session, as_of=window.end, record_name=params.get("record_name"))
    if not len(df):
        return MetricValue(None, 0, "no weighted records observed")
    equal = 1 / len(df)
    deviation = float((df["share"] - equal).abs().max())
    split = " / ".join(f"{s}={w}" for s, w in zip(df["set_identifier"], df["weight"], strict=True))
    return MetricValue(deviation, len(df), split)
