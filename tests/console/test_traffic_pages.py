"""Traffic page and its builders without a browser: layout, callback on the demo sprint,
429 vs 5xx table, the limiter flag, freshness, and the simulator feeding the same loaders."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pandas as pd
from plotly.utils import PlotlyJSONEncoder
from sqlalchemy import func, select

from console.app import create_app
from console.components import traffic as view
from demo import simulator as traffic_simulator
from store.models import ReplicationLagSample, TrafficSample
from tests.conftest import make_settings


def text_of(component) -> str:  # type: ignore[no-untyped-def]
    return json.dumps(component, cls=PlotlyJSONEncoder, ensure_ascii=False)


def test_layout_is_a_skeleton_without_io(demo_ctx) -> None:
    create_app(demo_ctx)
    from console.pages import traffic

    layout = traffic.layout()

    assert traffic.BODY in text_of(layout) and traffic.WINDOW in text_of(layout)


def test_sprint_window_shows_shares_ingresses_health_and_stale_since(demo_ctx) -> None:
    create_app(demo_ctx)
    from console.pages import traffic

    body = text_of(traffic.show_traffic("range", 0, "sprint-27", "sprint"))

    assert "Sprint window: 2025-11-10" in body and "hourly rollups" in body
    assert "Weight vs observed share" in body and "resolvers and clients" in body
    assert '"data-ingress": "downloads"' in body and '"data-ingress": "exports-legacy"' in body
    assert "hc-east" in body and "HEALTHY" in body
    assert body.count("LIMITER ANSWERS 503") == 1  # the demo's exports-legacy ingress
    assert "Stale since 2025-11-23T23:59:45Z" in body


def test_empty_last_hour_says_no_samples_not_zero(ctx) -> None:
    create_app(ctx)
    from console.pages import traffic

    body = text_of(traffic.show_traffic("hour", 0, None, None))

    assert "No traffic samples in this window" in body
    assert "No traffic samples stored yet" in body


def test_ingress_table_flags_a_limiter_answering_503_and_keeps_429_apart() -> None:
    rates = pd.DataFrame(
        [
            ("us-east", "downloads", 10, 5.0, 0.0, 0.4, 0.4, 0.0, 0.08, 0.7, True),
            ("us-west", "downloads", 10, 5.0, 0.3, 0.0, 0.0, 0.06, 0.0, 0.7, False),
        ],
        columns=[
            "region", "ingress", "samples", "requests_per_s", "rate_429_per_s",
            "rate_5xx_per_s", "rate_503_per_s", "ratio_429", "ratio_5xx", "cache_hit_ratio",
            "limiter_503",
        ],
    )  # fmt: skip

    table = text_of(view.ingress_table(rates))

    assert table.count("LIMITER ANSWERS 503") == 1
    assert "limit-req-status-code" in table
    assert "6.00 %" in table and "8.000 %" in table


def test_freshness_line_turns_into_stale_since_with_the_collector_error() -> None:
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

    fresh = view.freshness_line(
        now - timedelta(seconds=30), now, stale_after_s=120, last_error=None
    )
    stale = view.freshness_line(
        now - timedelta(minutes=5), now, stale_after_s=120, last_error="connection refused"
    )

    assert "Latest sample at 2026-03-02T11:59:30Z" in text_of(fresh)
    assert "Stale since 2026-03-02T11:55:00Z — last collector error: connection refused" in text_of(
        stale
    )


def test_simulator_tick_feeds_traffic_and_lag_through_the_loaders(ctx) -> None:
    model = traffic_simulator.TrafficModel(random.Random(1))
    at = datetime(2026, 3, 2, 12, 0, 15, tzinfo=UTC)

    traffic_simulator.tick(ctx.sessions, model, at)
    traffic_simulator.tick(ctx.sessions, model, at)  # a retried tick adds nothing

    with ctx.sessions() as session:
        samples = session.scalar(select(func.count()).select_from(TrafficSample))
        lags = session.scalar(select(func.count()).select_from(ReplicationLagSample))
    assert samples == 4 and lags == 1


def test_simulator_runs_only_in_demo_mode(tmp_path) -> None:
    from console.context import AppContext
    from console.wiring import start_jobs

    ctx = AppContext.from_settings(make_settings(tmp_path, demo_mode=False, secret_key="x" * 32))

    stops = start_jobs(ctx)  # nothing configured and not the demo: only the runbook runner
    try:
        owners = {type(getattr(stop, "__self__", None)).__name__ for stop in stops}
        assert owners == {"RunbookJob"}
        assert all(getattr(stop, "__module__", "") != "demo.simulator" for stop in stops)
    finally:
        for stop in stops:
            stop()
        ctx.engine.dispose()


def test_ingress_5xx_share_is_named_apart_from_the_download_5xx_goal(demo_ctx) -> None:
    create_app(demo_ctx)
    from console.pages import traffic

    body = text_of(traffic.show_traffic("range", 0, "sprint-27", "sprint"))

    assert view.MEASURE_NAME in body and "not a plan goal" in body
    assert "exports.download_5xx" in body and '"href": "/egress"' in body
    # no goal-status words on a measure that is not a goal
    assert "MISSED" not in body and '"MET"' not in body
    assert "ABOVE 0" in body or "ZERO" in body
