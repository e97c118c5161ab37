"""`GET /metrics`: the console's own Prometheus metrics (requests, latency, ingest freshness).

Each app gets its own registry so that several apps in one process (tests, workers) never
collide on metric names.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from flask import Blueprint, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from console.context import AppContext
from store.queries.ops import last_runs_frame


def make_blueprint(ctx: AppContext) -> Blueprint:
    """Count every request by route and status; expose them with collector freshness."""
    registry = CollectorRegistry()
    requests_total = Counter(
        "quarterdeck_http_requests_total",
        "HTTP requests by route rule, method and status.",
        ["route", "method", "status"],
        registry=registry,
    )
    latency = Histogram(
        "quarterdeck_http_request_duration_seconds",
        "HTTP request latency by route rule.",
        ["route"],
        registry=registry,
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    )
    last_run_age = Gauge(
        "quarterdeck_collector_last_run_age_seconds",
        "Seconds since each collector's last run finished (from sync_runs).",
        ["source", "status"],
        registry=registry,
    )
    blueprint = Blueprint("quarterdeck_metrics", __name__)

    @blueprint.before_app_request
    def _start() -> None:
        g.quarterdeck_started = time.perf_counter()

    @blueprint.after_app_request
    def _count(response: Response) -> Response:
        started = g.get("quarterdeck_started")
        # Unmatched paths share one label so that scanners cannot blow up the series count.
        route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        requests_total.labels(route, request.method, str(response.status_code)).inc()
        if started is not None:
            latency.labels(route).observe(time.perf_counter() - started)
        return response

    @blueprint.get("/metrics")
    def metrics() -> Response:
        last_run_age.clear()
        try:
            with ctx.session() as session:
                runs = last_runs_frame(session)
        except Exception:  # the store being down must not hide the request metrics
            runs = None
        if runs is not None:
            now = datetime.now(UTC)
            for row in runs.to_dict("records"):
                finished: datetime = row["finished_at"] or row["started_at"]
                age = (now - finished).total_seconds()
                last_run_age.labels(str(row["source"]), str(row["status"])).set(age)
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    return blueprint
