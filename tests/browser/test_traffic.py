"""Traffic in Chromium: weight vs share, 429 vs 5xx per ingress and charts render from the demo
sprint with no console errors."""

from __future__ import annotations

from typing import Any

import pytest

from console.app import create_app
from console.context import AppContext
from tests.conftest import free_port

pytestmark = pytest.mark.browser

TIMEOUT = 30


def test_traffic_page_renders_shares_ingresses_and_charts_without_console_errors(
    browser_available: None, dash_duo: Any, demo_ctx: AppContext
) -> None:
    dash_duo.start_server(create_app(demo_ctx), port=free_port())
    dash_duo.wait_for_element(".qd-goal", timeout=TIMEOUT)

    dash_duo.wait_for_page(url=f"{dash_duo.server_url}/traffic", timeout=TIMEOUT)

    dash_duo.wait_for_element(".traffic-shares tr[data-region='us-east']", timeout=TIMEOUT)
    east = dash_duo.find_element(".traffic-shares tr[data-region='us-east']")
    assert "%" in east.text
    rows = dash_duo.find_elements(".traffic-ingresses tbody tr")
    assert len(rows) == 5
    legacy = dash_duo.find_element(".traffic-ingresses tr[data-ingress='exports-legacy']")
    assert "LIMITER ANSWERS 503" in legacy.text
    assert dash_duo.find_elements(".traffic-requests-graph .main-svg")
    assert "Stale since" in dash_duo.find_element(".traffic-freshness").text
    dash_duo.find_element("#traffic-window input[value='hour']").click()
    dash_duo.wait_for_contains_text(
        ".qd-page--traffic", "No traffic samples in this window", TIMEOUT
    )
    assert dash_duo.get_logs() == []
