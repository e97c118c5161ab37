"""The Evidence page in Chromium: build the demo sprint's pack, follow the signed link, and get
a watermarked pack that verifies; the console stays free of errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from console.app import create_app
from console.context import AppContext
from evidence.pack import verify_pack
from tests.browser.signin import add_and_sign_in
from tests.conftest import free_port
from tests.console.test_evidence import copy_demo

pytestmark = pytest.mark.browser

TIMEOUT = 30


@pytest.fixture
def evidence_ctx(demo_ctx: AppContext, tmp_path: Any) -> Iterator[AppContext]:
    ctx = copy_demo(demo_ctx, tmp_path)
    yield ctx
    ctx.engine.dispose()


def test_evidence_page_builds_and_downloads_a_signed_pack(
    browser_available: None, dash_duo: Any, evidence_ctx: AppContext
) -> None:
    dash_duo.start_server(create_app(evidence_ctx), port=free_port())
    # Building and linking packs needs the auditor role (docs/security.md).
    add_and_sign_in(dash_duo, evidence_ctx, "max", "auditor")
    dash_duo.wait_for_element(".qd-nav a[href='/evidence']", timeout=TIMEOUT).click()
    dash_duo.wait_for_text_to_equal(
        "#evidence-packs .qd-empty", "No evidence pack has been built yet.", timeout=TIMEOUT
    )

    dash_duo.find_element("#evidence-build").click()
    link = dash_duo.wait_for_element("#evidence-download-link", timeout=TIMEOUT)
    href = link.get_attribute("href")
    response = requests.get(href, timeout=60)

    assert response.status_code == 200
    assert response.headers["X-Export-User"] == "max"
    verdict = verify_pack(response.content)
    assert verdict.ok, verdict.problems
    assert verdict.watermark["export_id"] == response.headers["X-Export-Id"]
    pack_id = response.headers["X-Export-Id"].split(".")[0]
    row = dash_duo.wait_for_element(f".evidence-packs tr[data-pack='{pack_id}']", timeout=TIMEOUT)
    assert "sprint-27" in row.text
    # The list refreshes on its own and then names who downloaded the pack.
    dash_duo.wait_for_contains_text(
        f".evidence-packs tr[data-pack='{pack_id}']", "max", timeout=TIMEOUT
    )
    dash_duo.wait_for_contains_text(
        ".evidence-downloads", response.headers["X-Export-Id"], timeout=TIMEOUT
    )
    dash_duo.driver.save_screenshot("/tmp/evidence.png")
    assert dash_duo.get_logs() == []
