"""The Overview in Chromium: goal cards and gates render from the demo sprint, the time range
persists for the session, the nav reaches Ingest health, and the console stays free of errors."""

from __future__ import annotations

from typing import Any

import pytest

from console.app import create_app
from console.context import AppContext
from tests.conftest import free_port

pytestmark = pytest.mark.browser

SPRINT_GOALS = 11
TIMEOUT = 30


@pytest.fixture
def overview(browser_available: None, dash_duo: Any, demo_ctx: AppContext) -> Any:
    dash_duo.start_server(create_app(demo_ctx), port=free_port())
    dash_duo.wait_for_element(".qd-goal[data-goal='postmortem-generated']", timeout=TIMEOUT)
    return dash_duo


def test_overview_shows_goal_cards_gates_and_no_console_errors(overview: Any) -> None:
    cards = overview.find_elements(".qd-goal")
    assert len(cards) == SPRINT_GOALS
    overview.wait_for_contains_text(
        ".qd-goal[data-goal='ci-lead-time-p95'] .qd-badge", "MISSED", timeout=TIMEOUT
    )
    p50 = overview.find_element(".qd-goal[data-goal='ci-lead-time-p50']")
    assert "target < 15 min" in p50.text
    assert overview.find_element(
        ".qd-goal[data-goal='ci-lead-time-p50'] .qd-goal-value"
    ).text.endswith(" min")
    assert overview.find_elements(".qd-goal .qd-sparkline .main-svg")
    prod = overview.find_element(".qd-gates tr[data-stage='prod']")
    assert "BLOCKED" in prod.text
    assert "Approvals recorded for prod" in prod.text
    assert overview.find_element(".qd-summary").text.count("\n") >= 4
    overview.driver.save_screenshot("/tmp/overview.png")
    assert overview.get_logs() == []


def test_baseline_range_is_shown_and_kept_across_a_reload(overview: Any) -> None:
    overview.find_element("#shell-range input[value='baseline']").click()
    overview.wait_for_contains_text(".qd-subtitle", "Baseline (before): 2025-10-27", TIMEOUT)

    overview.driver.refresh()

    overview.wait_for_contains_text(".qd-subtitle", "Baseline (before): 2025-10-27", TIMEOUT)
    assert overview.find_element("#shell-range input[value='baseline']").is_selected()
    assert overview.get_logs() == []


def test_nav_link_leads_from_the_overview_to_ingest_health(overview: Any) -> None:
    overview.find_element(".qd-nav a[href='/ingest-health']").click()

    overview.wait_for_contains_text(".qd-page--ingest-health", "Collectors — last run", TIMEOUT)
    assert overview.driver.current_url.endswith("/ingest-health")
    assert "qd-nav-link--active" in overview.find_element(
        ".qd-nav a[href='/ingest-health']"
    ).get_attribute("class")
    assert overview.get_logs() == []
