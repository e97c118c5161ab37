"""The Prometheus collector against a real Prometheus scraping two ingress-nginx-like exporters
(region added by Prometheus' static labels), plus chunking and error shapes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests
from sqlalchemy import func, select

from collectors import prometheus
from store.models import SyncRun, TrafficSample
from store.models.traffic import TrafficRollup
from tests.conftest import free_port
from tests.peers_traffic import PrometheusPeer

QUERIES = {
    signal: query.replace("[1m]", "[10s]")
    for signal, query in prometheus.DEFAULT_TRAFFIC_QUERIES.items()
}


def poll(url: str, **overrides: object) -> prometheus.TrafficPoll:
    values: dict[str, object] = {
        "base_url": url,
        "queries": QUERIES,
        "step_s": 1,
        "lookback": timedelta(seconds=20),
        "settle": timedelta(seconds=0),
    }
    values.update(overrides)
    return prometheus.TrafficPoll(**values)  # type: ignore[arg-type]


def count(factory, model=TrafficSample) -> int:  # type: ignore[no-untyped-def]
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def last_run(factory) -> SyncRun:  # type: ignore[no-untyped-def]
    with factory() as session:
        run = session.scalars(select(SyncRun).order_by(SyncRun.id.desc()).limit(1)).one()
        session.expunge(run)
        return run


def test_query_range_from_real_prometheus_stores_rates_per_region_and_ingress(
    prometheus_peer: PrometheusPeer, ctx
) -> None:
    now = datetime.now(UTC)

    result = prometheus.sync_traffic(
        ctx.sessions, requests.Session(), poll(prometheus_peer.url), now=now
    )

    assert result.stored > 0
    with ctx.sessions() as session:
        rows = session.scalars(select(TrafficSample)).all()
    assert {(r.region, r.ingress) for r in rows} == {
        (region, ingress)
        for region in ("us-east", "us-west")
        for ingress in ("gateway", "downloads")
    }
    downloads = [r for r in rows if r.ingress == "downloads" and r.requests_per_s > 0]
    gateway = [r for r in rows if r.ingress == "gateway" and r.requests_per_s > 0]
    assert downloads and gateway
    assert all(r.rate_429_per_s > 0 and r.rate_5xx_per_s == 0 for r in downloads)
    assert all(r.rate_503_per_s > 0 and r.rate_429_per_s == 0 for r in gateway)
    # ingress-nginx exports no cache metric: no default query, the ratio stays empty.
    assert "cache_hit_ratio" not in prometheus.DEFAULT_TRAFFIC_QUERIES
    assert all(r.cache_hit_ratio is None for r in rows)
    assert count(ctx.sessions, TrafficRollup) > 0
    run = last_run(ctx.sessions)
    assert run.status == "ok" and run.cursor is not None


def test_rerun_with_same_end_adds_nothing_and_keeps_cursor(prometheus_peer, ctx) -> None:
    now = datetime.now(UTC)
    prometheus.sync_traffic(ctx.sessions, requests.Session(), poll(prometheus_peer.url), now=now)
    before = count(ctx.sessions)
    cursor = last_run(ctx.sessions).cursor

    again = prometheus.sync_traffic(
        ctx.sessions, requests.Session(), poll(prometheus_peer.url), now=now
    )

    assert again.stored == 0 and again.duplicates == 0
    assert count(ctx.sessions) == before
    assert last_run(ctx.sessions).cursor == cursor


def test_range_beyond_11000_points_is_chunked_and_each_point_stored_once(
    prometheus_peer,
    ctx,
) -> None:
    now = datetime.now(UTC)
    long = poll(prometheus_peer.url, lookback=timedelta(hours=3, minutes=20))  # 12,000 steps

    result = prometheus.sync_traffic(ctx.sessions, requests.Session(), long, now=now)

    assert result.stored > 0 and result.duplicates == 0
    with ctx.sessions() as session:
        distinct = session.scalar(
            select(func.count()).select_from(
                select(TrafficSample.ts, TrafficSample.region, TrafficSample.ingress)
                .distinct()
                .subquery()
            )
        )
    assert distinct == count(ctx.sessions)


def test_unchunked_range_is_refused_by_prometheus_with_its_error(prometheus_peer) -> None:
    end = datetime.now(UTC)

    with pytest.raises(prometheus.PrometheusUnavailable, match=r"bad_data.*11,000"):
        prometheus.fetch_range(
            requests.Session(),
            prometheus_peer.url,
            QUERIES["requests"],
            start=end - timedelta(seconds=12_000),
            end=end,
            step_s=1,
        )


def test_invalid_promql_fails_the_run_on_ingest_health_and_keeps_the_cursor(
    prometheus_peer,
    ctx,
) -> None:
    now = datetime.now(UTC)
    prometheus.sync_traffic(ctx.sessions, requests.Session(), poll(prometheus_peer.url), now=now)
    cursor = last_run(ctx.sessions).cursor
    broken = poll(prometheus_peer.url, queries={**QUERIES, "429": "sum by (region) (rate("})

    with pytest.raises(prometheus.PrometheusUnavailable, match="bad_data"):
        prometheus.sync_traffic(
            ctx.sessions, requests.Session(), broken, now=now + timedelta(seconds=5)
        )

    run = last_run(ctx.sessions)
    assert run.status == "failed" and "bad_data" in (run.error or "")
    assert run.cursor == cursor
    with ctx.sessions() as session:
        assert prometheus.last_cursor(session, prometheus.SOURCE_TRAFFIC).isoformat() == cursor


def test_prometheus_down_records_a_failed_run_and_retry_duplicates_nothing(ctx) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    for _ in range(2):
        with pytest.raises(prometheus.PrometheusUnavailable, match="ConnectionError"):
            prometheus.sync_traffic(ctx.sessions, requests.Session(), poll(url))

    with ctx.sessions() as session:
        runs = session.scalars(select(SyncRun)).all()
    assert [r.status for r in runs] == ["failed", "failed"]
    assert all(r.cursor is None for r in runs)
    assert count(ctx.sessions) == 0


def test_chunks_cover_the_range_without_overlap() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    end = start + timedelta(seconds=25)

    chunks = list(prometheus.chunk_ranges(start, end, 1, max_points=10))

    assert chunks[0] == (start, start + timedelta(seconds=9))
    assert chunks[-1][1] == end
    points = [
        c[0] + timedelta(seconds=i)
        for c in chunks
        for i in range(int((c[1] - c[0]).total_seconds()) + 1)
    ]
    assert len(points) == len(set(points)) == 26


def test_proxy_answering_html_is_reported_not_parsed(ctx) -> None:
    class Html:
        status_code = 502
        text = "<html>Bad gateway</html>"

        def json(self) -> object:
            raise ValueError("not json")

    class Proxy:
        def post(self, url, *, data, timeout):  # type: ignore[no-untyped-def]
            return Html()

    with pytest.raises(prometheus.PrometheusUnavailable, match="HTTP 502, not JSON"):
        prometheus.sync_traffic(ctx.sessions, Proxy(), poll("http://proxy"))


def test_retention_prunes_old_raw_samples_and_keeps_their_rollups(prometheus_peer, ctx) -> None:
    old = datetime(2025, 1, 1, tzinfo=UTC)
    with ctx.session() as session:
        prometheus.load_traffic(
            session,
            [
                {
                    "ts": old,
                    "region": "us-east",
                    "ingress": "gateway",
                    "requests_per_s": 1.0,
                    "rate_429_per_s": 0.0,
                    "rate_5xx_per_s": 0.0,
                    "rate_503_per_s": 0.0,
                    "cache_hit_ratio": None,
                }
            ],
        )

    prometheus.sync_traffic(
        ctx.sessions,
        requests.Session(),
        poll(prometheus_peer.url, retention=timedelta(days=30)),
    )

    with ctx.sessions() as session:
        oldest = session.scalar(select(func.min(TrafficSample.ts)))
        kept = session.scalar(select(TrafficRollup.samples).where(TrafficRollup.bucket == old))
    assert oldest > old and kept == 1


def test_series_without_region_take_the_default_region_or_fail_naming_the_fix() -> None:
    answer = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{"metric": {"ingress": "gateway"}, "values": [[1700000000, "2.5"]]}],
        },
    }
    rows = prometheus.transform_traffic({"requests": answer}, default_region="eu-1")
    with pytest.raises(prometheus.InvalidItem) as refused:
        prometheus.transform_traffic({"requests": answer})

    assert [(r["region"], r["ingress"], r["requests_per_s"]) for r in rows] == [
        ("eu-1", "gateway", 2.5)
    ]
    assert "external_labels are not returned by queries" in str(refused.value)
    assert "QUARTERDECK_PROMETHEUS__DEFAULT_REGION" in str(refused.value)


def test_the_timeout_setting_reaches_every_query_range_call(prometheus_peer, ctx) -> None:
    from console.jobs.traffic import run_prometheus

    seen: list[float] = []

    class Recording(requests.Session):
        def post(self, url, *, data, timeout):  # type: ignore[no-untyped-def, override]
            seen.append(timeout)
            return super().post(url, data=data, timeout=timeout)

    ctx.settings.prometheus.url = prometheus_peer.url
    ctx.settings.prometheus.timeout_s = 4.5
    ctx.settings.prometheus.lookback_minutes = 1
    run_prometheus(ctx, Recording())

    assert seen and set(seen) == {4.5}
