"""The Egress and Reliability pages in Chromium render the demo sprint with no console errors."""

from __future__ import annotations

from typing import Any

import pytest

from console.app import create_app
from console.context import AppContext
from tests.conftest import free_port

pytestmark = pytest.mark.browser

TIMEOUT = 30


@pytest.fixture
def console(browser_available: None, dash_duo: Any, demo_ctx: AppContext) -> Any:
    dash_duo.start_server(create_app(demo_ctx), port=free_port())
    dash_duo.wait_for_element(".qd-nav a[href='/egress']", timeout=TIMEOUT)
    return dash_duo


def test_egress_page_renders_coverage_and_tenants(console: Any) -> None:
    console.find_element(".qd-nav a[href='/egress']").click()

    console.wait_for_contains_text(".qd-goal[data-stat='coverage']", "99.01 %", timeout=TIMEOUT)
    assert "MISSED" in console.find_element(".qd-goal[data-stat='coverage']").text
    assert len(console.find_elements(".egress-tenants tbody tr")) == 4
    assert console.find_elements("#egress-body .js-plotly-plot")
    console.driver.save_screenshot("/tmp/egress.png")
    assert console.get_logs() == []


def test_reliability_page_renders_budgets_burn_chart_and_incident(console: Any) -> None:
    console.find_element(".qd-nav a[href='/reliability']").click()

    console.wait_for_element(".reliability-budgets tr[data-service='gateway']", timeout=TIMEOUT)
    assert "NORMAL" in console.find_element(".reliability-budgets tr[data-service='gateway']").text
    console.wait_for_contains_text(".reliability-incidents", "INC-2741", timeout=TIMEOUT)
    console.wait_for_element(
        "#reliability-burn .js-plotly-plot .scatterlayer .trace", timeout=TIMEOUT
    )
    console.driver.save_screenshot("/tmp/reliability.png")
    assert console.get_logs() == []
