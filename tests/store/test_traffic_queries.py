"""Traffic and failover read side on SQLite and PostgreSQL: rollups agree with raw samples,
a re-poll is not counted twice, the limiter-503 flag, weight vs share, runs and freshness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from collectors import failover, prometheus, route53
from store.ingest import IngestResult, record_sync_run
from store.metrics import Window
from store.models.traffic import TrafficRollup
from store.queries import failover as fq
from store.queries import traffic as tq

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def matrix(values: dict[tuple[str, str], list[float]], start: datetime, step: int = 15) -> dict:
    return {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {
                    "metric": {"region": region, "ingress": ingress},
                    "values": [
                        [(start + timedelta(seconds=i * step)).timestamp(), str(v)]
                        for i, v in enumerate(series)
                    ],
                }
                for (region, ingress), series in values.items()
            ],
        },
    }


def load(session: Session, *, points: int, requests: float, r429: float, r5xx: float, r503: float,
         start: datetime = T0) -> None:  # fmt: skip
    keys = [("us-east", "gateway"), ("us-east", "downloads"), ("us-west", "gateway")]
    responses = {
        "requests": matrix({k: [requests] * points for k in keys}, start),
        "429": matrix({k: [r429 if k[1] == "downloads" else 0.0] * points for k in keys}, start),
        "5xx": matrix({k: [r5xx] * points for k in keys}, start),
        "503": matrix({k: [r503] * points for k in keys}, start),
        "cache_hit_ratio": matrix({k: [0.75] * points for k in keys}, start),
    }
    prometheus.load_traffic(session, prometheus.transform_traffic(responses))


def test_rollups_match_raw_samples_and_a_repoll_is_not_counted_twice(engine) -> None:
    day = Window(T0, T0 + timedelta(days=1))
    hour = Window(T0, T0 + timedelta(hours=2))
    with Session(engine) as session, session.begin():
        load(session, points=480, requests=10.0, r429=0.5, r5xx=0.1, r503=0.1)  # 2 hours
        load(
            session, points=240, requests=20.0, r429=0.5, r5xx=0.1, r503=0.1
        )  # re-poll, new values
    with Session(engine) as session:
        rolled = tq.ingress_rates_frame(session, window=day)
        raw = tq.ingress_rates_frame(session, window=hour)
        buckets = session.scalar(select(func.count()).select_from(TrafficRollup))
        samples = session.scalar(select(func.sum(TrafficRollup.samples)))

    assert buckets == 3 * 2 and samples == 3 * 480
    cols = ["requests_per_s", "rate_429_per_s", "rate_5xx_per_s", "ratio_429", "cache_hit_ratio"]
    assert rolled[cols].round(9).equals(raw[cols].round(9))
    east_gw = rolled[(rolled["region"] == "us-east") & (rolled["ingress"] == "gateway")].iloc[0]
    assert east_gw["requests_per_s"] == pytest.approx(15.0)  # first hour 20, second hour 10


def test_limiter_answering_503_without_429_is_flagged(engine) -> None:
    window = Window(T0, T0 + timedelta(hours=1))
    with Session(engine) as session, session.begin():
        load(session, points=10, requests=10.0, r429=0.0, r5xx=0.2, r503=0.2)
    with Session(engine) as session:
        rates = tq.ingress_rates_frame(session, window=window)

    flagged = set(zip(rates["region"], rates["ingress"], rates["limiter_503"], strict=True))
    assert ("us-east", "gateway", True) in flagged
    assert rates["ratio_5xx"].round(6).tolist() == [0.02, 0.02, 0.02]


def test_configured_weight_and_observed_share_side_by_side(engine) -> None:
    window = Window(T0, T0 + timedelta(hours=1))
    page = {
        "ResourceRecordSets": [
            {"Name": "api.example.com.", "Type": "A", "SetIdentifier": r, "Weight": w, "TTL": 60}
            for r, w in (("us-east", 0), ("us-west", 100))
        ]
    }
    with Session(engine) as session, session.begin():
        load(session, points=10, requests=10.0, r429=0.0, r5xx=0.0, r503=0.0)
        rows = route53.transform_record_sets(
            page, zone_id="Z1", names=["api.example.com"], observed_at=T0
        )
        route53.load_record_sets(
            session, rows, zone_id="Z1", names=["api.example.com"], observed_at=T0
        )
    with Session(engine) as session:
        shares = tq.region_share_frame(session, window=window).set_index("region")

    assert shares.loc["us-east", "weight_share"] == 0.0
    assert shares.loc["us-east", "observed_share"] == pytest.approx(2 / 3)
    assert shares.loc["us-west", "weight"] == 100


def test_weight_changes_and_failover_phases_become_annotations(engine) -> None:
    window = Window(T0, T0 + timedelta(hours=2))

    def snapshot(session: Session, at: datetime, east: int) -> None:
        page = {
            "ResourceRecordSets": [
                {"Name": "api.example.com.", "Type": "A", "SetIdentifier": r, "Weight": w}
                for r, w in (("us-east", east), ("us-west", 100 - east))
            ]
        }
        rows = route53.transform_record_sets(
            page, zone_id="Z1", names=["api.example.com"], observed_at=at
        )
        route53.load_record_sets(
            session, rows, zone_id="Z1", names=["api.example.com"], observed_at=at
        )

    with Session(engine) as session, session.begin():
        snapshot(session, T0, 50)
        snapshot(session, T0 + timedelta(minutes=10), 50)
        failover.start_run(
            session,
            environment="stage",
            at=T0 + timedelta(minutes=15),
            kind="drill",
            source="manual",
        )
        snapshot(session, T0 + timedelta(minutes=20), 0)
    with Session(engine) as session:
        notes = tq.annotations_frame(session, window=window)

    assert notes["kind"].tolist() == ["failover", "weights"]
    assert "us-east 50→0" in notes["label"].iloc[1]


def test_live_run_detail_freshness_and_history(engine) -> None:
    now = T0 + timedelta(minutes=3)
    with Session(engine) as session, session.begin():
        failover.load_lag_samples(
            session,
            [
                {
                    "environment": "stage",
                    "replica": "db-2",
                    "ts": T0 - timedelta(minutes=1),
                    "lag_s": 3.5,
                }
            ],
        )
        key = failover.start_run(session, environment="stage", at=T0, kind="drill", source="manual")
        failover.mark_phase(
            session, run_key=key, phase="promoted", at=T0 + timedelta(seconds=50), source="probe",
            message="promoted",
        )  # fmt: skip
        record_sync_run(
            session,
            source="failover.probe",
            started_at=T0,
            finished_at=T0 + timedelta(seconds=1),
            result=IngestResult(),
            error="primary unreachable: OperationalError",
        )
    with Session(engine) as session:
        live = fq.live_run(session, now=now)
        runs = fq.list_runs(session)
        fresh = fq.freshness(session, environment="stage")

    assert live is not None and live.run_key == key and live.in_progress
    assert live.rto_s is None and live.elapsed_s == 180.0
    assert live.rpo_s == 3.5
    assert live.lag["lag_s"].tolist() == [3.5]
    body = live.as_dict()
    assert (
        body["phases"]["promoted"] == "2026-03-02T10:00:50Z" and body["phases"]["writable"] is None
    )
    assert runs["run_key"].tolist() == [key]
    assert fresh.last_error == "primary unreachable: OperationalError"
    assert fresh.last_sample_at == T0 - timedelta(minutes=1)


def test_region_series_sums_ingresses_from_rollups_and_from_raw_samples_alike(engine) -> None:
    with Session(engine) as session, session.begin():
        load(session, points=240, requests=10.0, r429=0.5, r5xx=0.1, r503=0.1)  # one hour
    with Session(engine) as session:
        hourly = tq.region_series_frame(session, window=Window(T0, T0 + timedelta(days=1)))
        raw = tq.region_series_frame(session, window=Window(T0, T0 + timedelta(hours=1)))
        per_ingress = tq.series_frame(session, window=Window(T0, T0 + timedelta(hours=1)))

    assert hourly[["region", "requests_per_s"]].values.tolist() == [
        ["us-east", 20.0],
        ["us-west", 10.0],
    ]
    assert len(raw) == 2 * 240 and len(per_ingress) == 3 * 240
    east = raw[raw["region"] == "us-east"]
    assert east["requests_per_s"].unique().tolist() == [20.0]
    assert east["rate_429_per_s"].unique().tolist() == [0.5]
    assert hourly["cache_hit_ratio"].round(9).tolist() == [0.75, 0.75]
