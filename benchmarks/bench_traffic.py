"""Benchmark the Traffic page's queries over months of 15-second samples (run with `make bench`).

Stores `--days` (default 90) of 15 s samples for 2 regions × 5 ingresses (≈ 5.2 million rows at
90 days) in a throwaway SQLite file, builds the hourly rollups with the loader's own
`refresh_rollups` a day at a time, then times the page's query set for the whole window
(`--repeat` runs, p50/p95; goal p95 < 300 ms) and, for contrast, one raw-sample aggregate over
the same window. Prints the size used. Bounded: one file in a temp dir, no network.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from collectors.prometheus import refresh_rollups
from store.db import make_engine
from store.metrics import Window
from store.migrate import upgrade
from store.models import TrafficSample
from store.queries.frames import percentile
from store.queries.traffic import (
    annotations_frame,
    health_checks_frame,
    ingress_rates_frame,
    latest_sample_at,
    region_series_frame,
    region_share_frame,
)

STEP_S = 15
REGIONS = ("us-east", "us-west")
INGRESSES = ("gateway", "downloads", "api", "web", "uploads")
GOAL_P95_MS = 300.0
START = datetime(2025, 9, 1, tzinfo=UTC)


def fill(session: Session, days: int) -> int:
    """Insert the raw samples day by day (plain INSERT: this is set-up, not the path measured)."""
    rng = random.Random(5)
    total = 0
    per_day = 86_400 // STEP_S
    for day in range(days):
        base = START + timedelta(days=day)
        rows = []
        for i in range(per_day):
            ts = base + timedelta(seconds=STEP_S * i)
            for region in REGIONS:
                for ingress in INGRESSES:
                    rps = 100 * rng.uniform(0.9, 1.1)
                    rows.append(
                        {
                            "ts": ts,
                            "region": region,
                            "ingress": ingress,
                            "requests_per_s": rps,
                            "rate_429_per_s": rps * 0.01,
                            "rate_5xx_per_s": rps * 0.0005,
                            "rate_503_per_s": 0.0,
                            "cache_hit_ratio": 0.8,
                        }
                    )
        session.execute(insert(TrafficSample), rows)
        # The loader's rollup refresh over the same day (first and last sample bound it).
        refresh_rollups(session, [rows[0], rows[-1]] + [
            {"ts": rows[0]["ts"], "region": r, "ingress": i} for r in REGIONS for i in INGRESSES
        ])  # fmt: skip
        session.commit()
        total += len(rows)
    return total


def page_queries(session: Session, window: Window) -> None:
    """What one Traffic page refresh runs for ``window`` (as `console/pages/traffic.py` does)."""
    rates = ingress_rates_frame(session, window=window)
    region_share_frame(session, window=window, rates=rates)
    region_series_frame(session, window=window)
    annotations_frame(session, window=window)
    health_checks_frame(session, as_of=window.end)
    latest_sample_at(session)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        upgrade(engine)
        t = time.perf_counter()
        with Session(engine) as session:
            rows = fill(session, args.days)
        load_s = time.perf_counter() - t
        print(
            f"size: {rows:,} samples = {args.days} days × {86_400 // STEP_S} steps × "
            f"{len(REGIONS)} regions × {len(INGRESSES)} ingresses "
            f"(loaded + rolled up in {load_s:.0f} s)"
        )
        window = Window(START, START + timedelta(days=args.days))
        timings = []
        with Session(engine) as session:
            page_queries(session, window)  # warm the page cache once
            for _ in range(args.repeat):
                t = time.perf_counter()
                page_queries(session, window)
                timings.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            session.execute(
                select(
                    TrafficSample.region,
                    TrafficSample.ingress,
                    func.sum(TrafficSample.requests_per_s),
                )
                .where(TrafficSample.ts >= window.start, TrafficSample.ts < window.end)
                .group_by(TrafficSample.region, TrafficSample.ingress)
            ).all()
            raw_ms = (time.perf_counter() - t) * 1000
        p50, p95 = percentile(timings, 50), percentile(timings, 95)
        verdict = "MET" if p95 is not None and p95 < GOAL_P95_MS else "MISSED"
        print(
            f"traffic page queries over {args.days} days (rollups), {args.repeat} runs: "
            f"p50 {p50:.1f} ms, p95 {p95:.1f} ms (goal < {GOAL_P95_MS:.0f} ms: {verdict})"
        )
        print(f"one raw-sample aggregate over the same window: {raw_ms:.0f} ms")
        engine.dispose()


if __name__ == "__main__":
    main()
