"""The CI page in Chromium: lead-time figures, charts, the slowest PRs linking to GitHub and the
flaky quarantine grid render from the demo sprint, with no console errors."""

from __future__ import annotations

from typing import Any

import pytest

from console.app import create_app
from console.context import AppContext
from tests.conftest import free_port

pytestmark = pytest.mark.browser

TIMEOUT = 30


def test_ci_page_renders_with_data_and_no_console_errors(
    browser_available: None, dash_duo: Any, demo_ctx: AppContext
) -> None:
    dash_duo.start_server(create_app(demo_ctx), port=free_port())
    dash_duo.find_element(".qd-nav a[href='/ci']").click()

    dash_duo.wait_for_element("[data-section='flaky'] .ag-row", timeout=TIMEOUT)
    assert dash_duo.find_element("#ci-repo").text.startswith("acme/web")
    p50 = dash_duo.find_element("[data-figure='p50']").text
    assert "p50 PR→preview" in p50 and "target < 15 min" in p50 and " min" in p50
    dash_duo.wait_for_element("#ci-trend .main-svg", timeout=TIMEOUT)
    for graph in ("ci-histogram", "ci-before-after", "ci-cache", "ci-shards"):
        dash_duo.wait_for_element(f"#{graph} .main-svg", timeout=TIMEOUT)
    first_link = dash_duo.find_element(".ci-slowest a")
    assert first_link.get_attribute("href").startswith("https://github.com/acme/web/pull/")
    grid = dash_duo.find_element("#ci-quarantine-grid")
    dash_duo.driver.execute_script("arguments[0].scrollIntoView();", grid)
    dash_duo.wait_for_contains_text(
        "#ci-quarantine-grid .ag-center-cols-container", "test_retry_budget", timeout=TIMEOUT
    )
    dash_duo.driver.save_screenshot("/tmp/ci.png")
    assert dash_duo.get_logs() == []
