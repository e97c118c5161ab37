from console.app import create_app


def test_metrics_counts_requests_and_reports_collector_freshness(demo_ctx):
    client = create_app(demo_ctx).server.test_client()
    client.get("/healthz")
    client.get("/healthz")
    client.get("/no-such-page-xyz")

    body = client.get("/metrics").get_data(as_text=True)

    assert 'quarterdeck_http_requests_total{method="GET",route="/healthz",status="200"} 2.0' in body
    assert 'route="/<path:path>"' in body  # Dash's catch-all serves unknown pages
    assert 'quarterdeck_collector_last_run_age_seconds{source="github",status="ok"}' in body
