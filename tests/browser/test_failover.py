"""Failover in Chromium: the live page follows a drill while it happens (marks written by
another writer appear within the 2-second refresh), and the drill button starts a run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from collectors import failover as source
from console.app import create_app
from console.context import AppContext
from tests.browser.signin import add_and_sign_in
from tests.conftest import free_port

pytestmark = pytest.mark.browser

TIMEOUT = 30


@pytest.fixture
def failover_page(browser_available: None, dash_duo: Any, ctx: AppContext) -> Any:
    dash_duo.start_server(create_app(ctx), port=free_port())
    # Drills need the sre role (docs/security.md); reading the page needs nobody.
    add_and_sign_in(dash_duo, ctx, "sam", "sre", next_path="/failover")
    dash_duo.wait_for_element("#failover-body", timeout=TIMEOUT)
    dash_duo.wait_for_contains_text("#failover-body", "No failover run yet", TIMEOUT)
    return dash_duo


def test_live_page_follows_a_drill_in_progress(failover_page: Any, ctx: AppContext) -> None:
    start = datetime.now(UTC) - timedelta(seconds=30)
    with ctx.session() as session:
        source.load_lag_samples(
            session,
            [{"environment": "stage", "replica": "db-2", "ts": start, "lag_s": 2.0}],
        )
        key = source.start_run(
            session, environment="stage", at=start, kind="drill", source="manual"
        )

    failover_page.wait_for_element(".failover-run[data-in-progress='true']", timeout=TIMEOUT)
    assert key in failover_page.find_element(".failover-run-title").text
    assert "RUNNING" in failover_page.find_element(".failover-rto").text

    with ctx.session() as session:
        source.mark_phase(
            session, run_key=key, phase="promoted", at=start + timedelta(seconds=20),
            source="probe", message="promoted",
        )  # fmt: skip
    failover_page.wait_for_element("li[data-phase='promoted'][data-reached='true']", TIMEOUT)

    with ctx.session() as session:
        source.mark_phase(
            session, run_key=key, phase="writable", at=start + timedelta(seconds=25),
            source="probe", message="probe write",
        )  # fmt: skip
    failover_page.wait_for_contains_text(".failover-rto-value", "25 s", TIMEOUT)
    assert "MET" in failover_page.find_element(".failover-rto").text
    assert "2 s" in failover_page.find_element(".failover-rpo-value").text
    assert failover_page.get_logs() == []


def test_start_drill_button_opens_a_run(failover_page: Any) -> None:
    failover_page.find_element("#failover-drill-start").click()

    failover_page.wait_for_contains_text("#failover-drill-result", "Started stage-drill-", TIMEOUT)
    failover_page.wait_for_element(".failover-run[data-in-progress='true']", timeout=TIMEOUT)
    failover_page.find_element("#failover-drill-end").click()
    failover_page.wait_for_element(".failover-run[data-in-progress='false']", timeout=TIMEOUT)
    assert failover_page.get_logs() == []
