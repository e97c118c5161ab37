"""The Policy page in Chromium over the demo sprint: search filters the server-side grid, a row
opens its decision with the script-bearing input shown as text, a malformed search says what is
wrong, the drift, latency and signature tables render, and the console stays free of errors."""

from __future__ import annotations

from typing import Any

import pytest
from dash.testing.wait import until
from selenium.webdriver.common.keys import Keys

from console.app import create_app
from console.context import AppContext
from tests.conftest import free_port

pytestmark = pytest.mark.browser

TIMEOUT = 30
ROWS = ".policy-grid .ag-center-cols-container .ag-row"


@pytest.fixture
def policy(browser_available: None, dash_duo: Any, demo_ctx: AppContext) -> Any:
    dash_duo.start_server(create_app(demo_ctx), port=free_port())
    dash_duo.wait_for_page(url=f"{dash_duo.server_url}/policy", timeout=TIMEOUT)
    dash_duo.wait_for_element(ROWS, timeout=TIMEOUT)
    return dash_duo


def search(duo: Any, text: str) -> None:
    box = duo.find_element("#policy-search")
    box.clear()
    box.send_keys(text, Keys.ENTER)


def test_search_filters_the_grid_and_opens_a_decision_shown_escaped(policy: Any) -> None:
    search(policy, "instance:prod-opa-1 verdict:deny script")
    policy.wait_for_text_to_equal(
        f"{ROWS}[row-index='0'] [col-id='instance_id']", "prod-opa-1", timeout=TIMEOUT
    )
    until(lambda: len(policy.find_elements(ROWS)) == 1, timeout=TIMEOUT)
    verdict = policy.find_element(f"{ROWS} [col-id='verdict']").text
    assert verdict == "deny"

    policy.find_element(f"{ROWS} [col-id='path']").click()

    policy.wait_for_contains_text(".policy-detail-json", "<script>", timeout=TIMEOUT)
    detail = policy.find_element(".policy-detail")
    assert "acme/exports/allow" in detail.text
    assert "«erased by mask policy»" in detail.text
    assert "Masked (value replaced): /input/note" in detail.text
    assert (
        policy.driver.execute_script(
            "return document.querySelectorAll('.policy-detail script').length"
        )
        == 0
    )
    assert policy.get_logs() == []


def test_malformed_search_says_what_is_wrong_next_to_the_controls(policy: Any) -> None:
    search(policy, "colour:red")
    policy.wait_for_contains_text("#policy-search-error", "unknown field 'colour'", timeout=TIMEOUT)
    since = policy.find_element("#policy-since")
    since.send_keys("2025-13-40", Keys.ENTER)
    policy.wait_for_contains_text("#policy-search-error", "is not a date", timeout=TIMEOUT)
    assert policy.get_logs() == []


def test_drift_latency_and_signatures_render(policy: Any) -> None:
    # By the sprint's end prod-opa-3 caught up with the prod pin: six instances, none drifted.
    policy.wait_for_element(".policy-drift tr[data-instance='prod-opa-3']", timeout=TIMEOUT)
    assert len(policy.find_elements(".policy-drift tr[data-drifted='false']")) == 6
    assert not policy.find_elements(".policy-drift tr[data-drifted='true']")
    policy.wait_for_element(".policy-latency tr[data-instance='prod-opa-3']", timeout=TIMEOUT)
    warning = policy.find_element(".policy-latency tr[data-instance='prod-opa-3']").text
    assert "OPA's default 300–600 s delay" in warning
    signed = policy.find_elements(".policy-revisions tr[data-signature='verified']")
    assert len(signed) == 2
    assert policy.find_elements("#policy-allow-deny .main-svg")
    policy.driver.save_screenshot("/tmp/policy.png")
    assert policy.get_logs() == []
