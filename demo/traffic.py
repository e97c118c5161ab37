"""Demo traffic of a limiter still on ingress-nginx's default status: the `exports-legacy`
ingress in us-west answers 503 (never 429) to clients over its rate limit, for the last two days
of the sprint, so the Traffic page's limiter flag has something to flag.

Fed as Prometheus `query_range` answers through `collectors.prometheus.transform_traffic` and
`load_traffic`, like the core demo. Deterministic (fixed times and values) and idempotent.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from collectors import prometheus
from store.ingest import IngestResult

START = datetime(2025, 11, 22, tzinfo=UTC)
END = datetime(2025, 11, 24, tzinfo=UTC)
STEP = timedelta(seconds=15)
SERIES = {"region": "us-west", "ingress": "exports-legacy"}


def responses() -> dict[str, dict[str, Any]]:
    """Every signal of the legacy ingress as one `query_range` answer each."""
    values: dict[str, list[list[Any]]] = {s: [] for s in prometheus.TRAFFIC_SIGNALS}
    at, i = START, 0
    while at < END:
        ts = at.timestamp()
        rps = 6.0 + (i % 40) / 10  # a slow sawtooth: batch exports every 10 minutes
        limited = 0.35 if i % 40 >= 30 else 0.0  # over the limit at the top of each batch
        values["requests"].append([ts, f"{rps:.4g}"])
        values["429"].append([ts, "0"])
        values["5xx"].append([ts, f"{limited:.4g}"])
        values["503"].append([ts, f"{limited:.4g}"])
        values["cache_hit_ratio"].append([ts, "NaN"])  # exports are never cached
        at += STEP
        i += 1
    return {
        signal: {
            "status": "success",
            "data": {"resultType": "matrix", "result": [{"metric": SERIES, "values": series}]},
        }
        for signal, series in values.items()
    }


def feed(session: Session) -> dict[str, IngestResult]:
    """Store the legacy ingress' samples (and their rollups)."""
    rows = prometheus.transform_traffic(responses())
    return {prometheus.SOURCE_TRAFFIC: prometheus.load_traffic(session, rows)}
