"""Ingest health in Chromium: demo collector runs and dead letters render, no console errors."""

from __future__ import annotations

from typing import Any

import pytest

from console.app import create_app
from console.context import AppContext
from tests.conftest import free_port

pytestmark = pytest.mark.browser

TIMEOUT = 30


def test_ingest_health_shows_last_runs_and_rejects_without_console_errors(
    browser_available: None, dash_duo: Any, demo_ctx: AppContext
) -> None:
    dash_duo.start_server(create_app(demo_ctx), port=free_port())
    # Let the Overview finish its evaluation so no request is cut off when the server stops.
    dash_duo.wait_for_element(".qd-goal", timeout=TIMEOUT)

    dash_duo.wait_for_page(url=f"{dash_duo.server_url}/ingest-health", timeout=TIMEOUT)

    dash_duo.wait_for_element(".qd-runs tr[data-source='github']", timeout=TIMEOUT)
    github = dash_duo.find_element(".qd-runs tr[data-source='github']")
    assert "OK" in github.text
    assert "Z" in github.text  # ISO UTC timestamps
    partial = dash_duo.find_elements(".qd-runs .qd-run--partial")
    assert partial and all(badge.text == "PARTIAL" for badge in partial)
    assert dash_duo.find_elements(".qd-reject-counts tbody tr")
    first_reject = dash_duo.find_element(".qd-rejects tbody tr")
    # Signed out, the reason is shown but not the sender's payload (docs/security.md).
    assert "payload shown to sre, captain and admin" in first_reject.text
    assert not first_reject.find_elements("css selector", ".qd-payload")
    assert dash_duo.driver.title == "Quarterdeck — Ingest health"
    assert dash_duo.get_logs() == []
