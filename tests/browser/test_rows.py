"""Rows behind the numbers, and the Overview on a phone, in Chromium.

From an Overview card's sample count to its rows (the rows view lists exactly `samples` rows) and
from a row to its source; a failover card's link opens the run it names; at a 390 px wide phone
viewport the page body never scrolls sideways and every card fits the screen.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from console.app import create_app
from console.context import AppContext
from tests.conftest import free_port

pytestmark = pytest.mark.browser

TIMEOUT = 30
PHONE_WIDTH = 390
PHONE_HEIGHT = 844
LATEST_DRILL = "stage-drill-20251119T140000Z"


@pytest.fixture
def overview(browser_available: None, dash_duo: Any, demo_ctx: AppContext) -> Any:
    dash_duo.start_server(create_app(demo_ctx), port=free_port())
    dash_duo.wait_for_element(".qd-goal[data-goal='postmortem-generated']", timeout=TIMEOUT)
    return dash_duo


def _samples_on_card(dash_duo: Any, goal: str) -> int:
    text = dash_duo.find_element(f".qd-goal[data-goal='{goal}'] .qd-rows-link").text
    match = re.match(r"([\d,]+) samples? →", text)
    assert match, text
    return int(match.group(1).replace(",", ""))


@pytest.mark.parametrize("goal", ["ci-lead-time-p50", "failover-rto"])
def test_card_sample_count_drills_to_exactly_that_many_rows(overview: Any, goal: str) -> None:
    samples = _samples_on_card(overview, goal)
    assert 0 < samples <= 200  # the rows view shows up to 200 rows on one page

    overview.find_element(f".qd-goal[data-goal='{goal}'] .qd-rows-link").click()

    section = f"section[data-section='rows'][data-check='{goal}']"
    overview.wait_for_element(section, timeout=TIMEOUT)
    assert (
        "/sprint?" in overview.driver.current_url and f"rows={goal}" in overview.driver.current_url
    )
    summary = overview.find_element(f"{section} p[data-samples]")
    assert summary.get_attribute("data-samples") == str(samples)
    assert summary.get_attribute("data-total") == str(samples)
    assert len(overview.find_elements(f"{section} tr.qd-row")) == samples
    assert overview.get_logs() == []


def test_a_failover_row_leads_to_its_run(overview: Any) -> None:
    overview.find_element(".qd-goal[data-goal='failover-rto'] .qd-rows-link").click()
    section = "section[data-section='rows'][data-check='failover-rto']"
    overview.wait_for_element(section, timeout=TIMEOUT)

    links = overview.find_elements(f"{section} tr.qd-row a[href*='/failover?run=']")
    assert len(links) == 2
    href = links[-1].get_attribute("href")
    key = href.split("run=", 1)[1]
    links[-1].click()

    overview.wait_for_element(f".failover-run[data-run='{key}']", timeout=TIMEOUT)
    assert "Selected run." in overview.find_element(".qd-page--failover").text
    assert overview.get_logs() == []


def test_failover_card_link_names_and_opens_its_run(overview: Any) -> None:
    link = overview.find_element(".qd-goal[data-goal='failover-rpo'] .qd-run-link")
    assert LATEST_DRILL in link.text
    assert link.get_attribute("href").endswith(f"/failover?run={LATEST_DRILL}")

    link.click()

    overview.wait_for_element(f".failover-run[data-run='{LATEST_DRILL}']", timeout=TIMEOUT)
    overview.wait_for_element(".failover-timeline-graph .main-svg", timeout=TIMEOUT)
    assert "Selected run." in overview.find_element(".qd-page--failover").text
    assert overview.get_logs() == []


def _widths(driver: Any) -> dict[str, Any]:
    return dict(
        driver.execute_script(
            """
            const cards = [...document.querySelectorAll('.qd-goal')].map(c => {
              const r = c.getBoundingClientRect();
              const f = parseFloat(getComputedStyle(c.querySelector('.qd-goal-title')).fontSize);
              return {left: r.left, right: r.right, width: r.width, title_px: f};
            });
            const inScrollBox = el => {
              for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
                const o = getComputedStyle(a).overflowX;
                if (o === 'auto' || o === 'scroll') return true;
              }
              return false;
            };
            const cut = [...document.querySelectorAll('body *')].filter(el => {
              const r = el.getBoundingClientRect();
              return r.width > 0 && r.right > window.innerWidth + 1 && !inScrollBox(el);
            }).map(el => el.tagName + '.' + el.className);
            return {
              cut: cut,
              inner: window.innerWidth,
              doc: document.documentElement.scrollWidth,
              body: document.body.scrollWidth,
              cards: cards,
            };
            """
        )
    )


def test_overview_fits_a_390_px_phone_without_sideways_scroll(
    browser_available: None, dash_duo: Any, demo_ctx: AppContext
) -> None:
    driver = dash_duo.driver
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": PHONE_WIDTH, "height": PHONE_HEIGHT, "deviceScaleFactor": 1, "mobile": True},
    )
    try:
        dash_duo.start_server(create_app(demo_ctx), port=free_port())
        dash_duo.wait_for_element(".qd-goal[data-goal='postmortem-generated']", timeout=TIMEOUT)
        dash_duo.wait_for_element(".qd-gates tr[data-stage='prod']", timeout=TIMEOUT)

        sizes = _widths(driver)
        driver.save_screenshot("/tmp/overview-390.png")

        assert sizes["inner"] == PHONE_WIDTH
        assert sizes["doc"] <= PHONE_WIDTH, sizes
        assert sizes["body"] <= PHONE_WIDTH, sizes
        assert sizes["cut"] == []  # wider content scrolls inside its own box, never clipped
        assert len(sizes["cards"]) == 11
        for card in sizes["cards"]:
            assert card["left"] >= 0 and card["right"] <= PHONE_WIDTH, card
            assert card["width"] >= 0.8 * PHONE_WIDTH - 40, card  # one readable column
            assert card["title_px"] >= 13, card
        assert dash_duo.get_logs() == []
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
