"""The demo's live feed: traffic samples every 15 s and replication lag, through the loaders.

Under `quarterdeck serve` in demo mode (`make run`) this keeps the Traffic and Failover pages
moving: each tick builds Prometheus-shaped `query_range` answers and a `pg_stat_replication`
row and hands them to the same transform/load code the real collectors use. The observed east
share follows the current Route53 weights with a lag, as clients do while DNS caches expire.
`play_scripted_drill` plays a failover drill in real time (`quarterdeck failover drill simulate`).
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from collectors import failover, prometheus
from store.db import session_scope
from store.ingest import IngestResult, record_sync_run, utcnow
from store.queries.traffic import weights_frame

log = logging.getLogger(__name__)

SOURCE = "demo.simulator"
STEP_S = 15
REGIONS = ("us-east", "us-west")
INGRESSES = (("gateway", 0.8), ("downloads", 0.2))
DNS_FOLLOW = 0.25
"""Share of the gap between DNS weight share and observed share closed per 15 s tick."""


def _matrix(series: dict[tuple[str, str], float], ts: float) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {"metric": {"region": r, "ingress": i}, "values": [[ts, f"{v:.6g}"]]}
                for (r, i), v in series.items()
            ],
        },
    }


@dataclass
class TrafficModel:
    """The simulated world: a daily curve, the observed east share and a random source."""

    rng: random.Random
    east_share: float = 0.5

    def responses(self, at: datetime, weight_east: float | None) -> dict[str, dict[str, Any]]:
        """One step of every signal as `query_range` answers."""
        if weight_east is not None:
            self.east_share += (weight_east - self.east_share) * DNS_FOLLOW
        hour = at.hour + at.minute / 60
        base = 420 + 260 * max(0.0, 1 - abs(hour - 15) / 9)
        values: dict[str, dict[tuple[str, str], float]] = {
            s: {} for s in prometheus.TRAFFIC_SIGNALS
        }
        for region in REGIONS:
            share = self.east_share if region == "us-east" else 1 - self.east_share
            for ingress, weight in INGRESSES:
                rps = base * 2 * share * weight * self.rng.uniform(0.93, 1.07)
                r429 = (
                    rps * (0.012 if ingress == "downloads" else 0.002) * self.rng.uniform(0.5, 1.5)
                )
                r5xx = rps * 0.0004 * self.rng.random()
                key = (region, ingress)
                values["requests"][key] = rps
                values["429"][key] = r429
                values["5xx"][key] = r5xx
                values["503"][key] = r5xx * 0.3
                values["cache_hit_ratio"][key] = 0.78 * self.rng.uniform(0.96, 1.03)
        ts = at.timestamp()
        return {signal: _matrix(series, ts) for signal, series in values.items()}


def _weight_east(sessions: sessionmaker[Session], at: datetime) -> float | None:
    with session_scope(sessions) as session:
        weights = weights_frame(session, as_of=at)
    east = weights[weights["set_identifier"] == "us-east"]
    return float(east["share"].iloc[-1]) if len(east) else None


def tick(
    sessions: sessionmaker[Session],
    model: TrafficModel,
    at: datetime,
    *,
    environment: str = "stage",
) -> IngestResult:
    """Store one simulated step of traffic and one lag sample at ``at``."""
    result = IngestResult()
    rows = prometheus.transform_traffic(model.responses(at, _weight_east(sessions, at)))
    lag = 0.4 + 1.5 * abs(math.sin(at.timestamp() / 600)) + model.rng.uniform(0, 0.4)
    lag_rows = [{"application_name": "stage-db-2", "replay_lag": timedelta(seconds=lag)}]
    with session_scope(sessions) as session:
        result.merge(prometheus.load_traffic(session, rows))
        samples = failover.transform_replication_rows(
            lag_rows, environment=environment, observed_at=at
        )
        result.merge(failover.load_lag_samples(session, samples))
        record_sync_run(session, source=SOURCE, started_at=utcnow(), result=result)
    return result


def _aligned(at: datetime) -> datetime:
    return datetime.fromtimestamp(math.floor(at.timestamp() / STEP_S) * STEP_S, UTC)


def start(sessions: sessionmaker[Session]) -> Callable[[], None]:
    """Start the 15 s simulator thread (the composition root does so in demo mode only)."""
    stop_event = threading.Event()
    model = TrafficModel(random.Random(27))  # noqa: S311 (demo data, not secrets)

    def run() -> None:
        while not stop_event.is_set():
            try:
                tick(sessions, model, _aligned(utcnow()))
            except Exception as exc:  # the store may be busy or gone: the next tick retries
                log.warning("traffic simulator tick failed: %s", exc)
            stop_event.wait(STEP_S - (utcnow().timestamp() % STEP_S))

    thread = threading.Thread(target=run, name="traffic-simulator", daemon=True)
    thread.start()

    def stop() -> None:
        stop_event.set()
        thread.join(timeout=10)

    return stop


DRILL_SCRIPT: tuple[tuple[float, str | None, str], ...] = (
    (0, "started", "drill started: promote the stage replica"),
    (20, None, "failover requested: aws rds failover-db-cluster --db-cluster-identifier stage-db"),
    (45, "promoted", "stage-db-2 promoted (out of recovery)"),
    (70, "writable", "probe write committed on stage-db-2"),
    (90, "traffic_shifted", "api.example.com weights us-east=0 us-west=100"),
    (120, "complete", "drill complete; weights restored to 50/50"),
)
"""(seconds after start, phase or None for a log line, message) of the scripted drill."""


def play_scripted_drill(
    sessions: sessionmaker[Session],
    *,
    environment: str = "stage",
    speed: float = 1.0,
    sleep: Callable[[float], None] | None = None,
    echo: Callable[[str], None] = lambda _line: None,
) -> str:
    """Play `DRILL_SCRIPT` in real time (÷ ``speed``), one transaction per step; returns the key.

    Every mark carries the wall-clock time it was written, so the page's clock and the stored
    RTO agree (a faster ``speed`` gives a proportionally shorter RTO).

    Lag samples are written every few seconds until promotion so the RPO and the lag chart
    come from stored samples, as they would from the probe.
    """
    wait = sleep or threading.Event().wait
    start_at = utcnow().replace(microsecond=0)
    rng = random.Random(int(start_at.timestamp()))  # noqa: S311 (demo data, not secrets)
    run_key = ""
    elapsed = 0.0
    for offset, phase, message in DRILL_SCRIPT:
        while elapsed < offset:
            step = min(5.0, offset - elapsed)
            wait(step / speed)
            elapsed += step
            if run_key and elapsed <= 45:
                at = utcnow()
                lag = [
                    {
                        "application_name": "stage-db-2",
                        "replay_lag": timedelta(seconds=rng.uniform(1, 4)),
                    }
                ]
                with session_scope(sessions) as session:
                    failover.load_lag_samples(
                        session,
                        failover.transform_replication_rows(
                            lag, environment=environment, observed_at=at
                        ),
                    )
        at = start_at if phase == "started" else utcnow()
        with session_scope(sessions) as session:
            if phase == "started":
                lag = [{"application_name": "stage-db-2", "replay_lag": timedelta(seconds=2.5)}]
                failover.load_lag_samples(
                    session,
                    failover.transform_replication_rows(
                        lag, environment=environment, observed_at=at
                    ),
                )
                run_key = failover.start_run(
                    session,
                    environment=environment,
                    at=at,
                    kind="drill",
                    source="simulator",
                    notes=message,
                )
            else:
                failover.mark_phase(
                    session,
                    run_key=run_key,
                    phase=phase,
                    at=at,
                    source="simulator",
                    message=message,
                )
        echo(f"+{offset:>4.0f}s {phase or 'log':16} {message}")
    return run_key
