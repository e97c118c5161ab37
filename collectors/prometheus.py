"""Prometheus as a source: `query_range` matrices → traffic samples and SLO good/total samples.

Each signal is its own PromQL query (defaults target ingress-nginx); results are joined on
(timestamp, region, ingress). Prometheus sends values as strings so that NaN and ±Inf survive
JSON; those are skipped rather than stored as numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from collectors.base import InvalidItem
from store.ingest import IngestResult, upsert
from store.models import SloSample, TrafficSample

SOURCE_TRAFFIC = "prometheus.traffic"
SOURCE_SLO = "prometheus.slo"

# Signal name → traffic_samples column.
TRAFFIC_SIGNALS = {
    "requests": "requests_per_s",
    "429": "rate_429_per_s",
    "5xx": "rate_5xx_per_s",
    "503": "rate_503_per_s",
    "cache_hit_ratio": "cache_hit_ratio",
}

DEFAULT_TRAFFIC_QUERIES = {
    "requests": "sum by (region, ingress) (rate(nginx_ingress_controller_requests[1m]))",
    "429": 'sum by (region, ingress) (rate(nginx_ingress_controller_requests{status="429"}[1m]))',
    "5xx": (
        'sum by (region, ingress) (rate(nginx_ingress_controller_requests{status=~"5..|5xx"}[1m]))'
    ),
    "503": 'sum by (region, ingress) (rate(nginx_ingress_controller_requests{status="503"}[1m]))',
    "cache_hit_ratio": (
        'sum by (region, ingress) (rate(nginx_ingress_controller_requests{cache_status="HIT"}[1m]))'
        " / sum by (region, ingress) (rate(nginx_ingress_controller_requests[1m]))"
    ),
}


def matrix_series(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the series of a `query_range` answer; raise on Prometheus' error envelope."""
    if response.get("status") != "success":
        raise InvalidItem(
            f"prometheus error {response.get('errorType', '?')}: {response.get('error', response)}"
        )
    data = response.get("data") or {}
    if data.get("resultType") != "matrix":
        raise InvalidItem(f"expected a matrix result, got {data.get('resultType')!r}")
    return list(data.get("result") or [])


def _value(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def transform_traffic(
    responses: Mapping[str, Mapping[str, Any]],
    *,
    region_label: str = "region",
    ingress_label: str = "ingress",
) -> list[dict[str, Any]]:
    """Join per-signal matrices into `traffic_samples` rows keyed by (ts, region, ingress)."""
    rows: dict[tuple[datetime, str, str], dict[str, Any]] = {}
    for signal, response in responses.items():
        column = TRAFFIC_SIGNALS.get(signal)
        if column is None:
            raise InvalidItem(f"unknown traffic signal {signal!r}")
        for series in matrix_series(response):
            metric = series.get("metric") or {}
            region = metric.get(region_label)
            if not region:
                raise InvalidItem(f"{signal}: series without the {region_label!r} label: {metric}")
            ingress = metric.get(ingress_label) or "*"
            for ts, text in series.get("values") or []:
                value = _value(text)
                if value is None:
                    continue
                at = datetime.fromtimestamp(float(ts), UTC)
                row = rows.setdefault(
                    (at, region, ingress),
                    {
                        "ts": at,
                        "region": region,
                        "ingress": ingress,
                        "requests_per_s": 0.0,
                        "rate_429_per_s": 0.0,
                        "rate_5xx_per_s": 0.0,
                        "rate_503_per_s": 0.0,
                        "cache_hit_ratio": None,
                    },
                )
                row[column] = value
    return list(rows.values())


def load_traffic(session: Session, rows: list[dict[str, Any]]) -> IngestResult:
    """Upsert traffic samples; a re-poll of the same range refreshes values, adds no rows."""
    result = IngestResult()
    update = tuple(TRAFFIC_SIGNALS.values())
    result.add(
        upsert(session, TrafficSample, rows, conflict=("ts", "region", "ingress"), update=update)
    )
    return result


def transform_slo(
    good: Mapping[str, Any], total: Mapping[str, Any], *, service: str, slo: str
) -> list[dict[str, Any]]:
    """Pair the good and total matrices of one SLO into `slo_samples` rows (counts per step)."""

    def flatten(response: Mapping[str, Any]) -> dict[datetime, float]:
        out: dict[datetime, float] = {}
        for series in matrix_series(response):
            for ts, text in series.get("values") or []:
                value = _value(text)
                if value is not None:
                    at = datetime.fromtimestamp(float(ts), UTC)
                    out[at] = out.get(at, 0.0) + value
        return out

    goods, totals = flatten(good), flatten(total)
    return [
        {"service": service, "slo": slo, "ts": at, "good": goods.get(at, 0.0), "total": count}
        for at, count in sorted(totals.items())
    ]


def load_slo(session: Session, rows: list[dict[str, Any]]) -> IngestResult:
    """Upsert SLO samples."""
    result = IngestResult()
    result.add(
        upsert(
            session, SloSample, rows, conflict=("service", "slo", "ts"), update=("good", "total")
        )
    )
    return result
