"""The Policy page without a browser: search parsing, builders, callbacks called directly, and the
page and APIs mounted on the console over the demo sprint."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import dash
import pytest

from console.app import create_app
from console.components import policy as view
from console.context import AppContext
from store.queries import decision_filter as search


def test_search_text_parses_fields_and_free_words() -> None:
    parsed = search.parse_search_text(
        'verdict:deny path:acme/exports/* instance:"prod-opa-1" ana token*',
        since="2025-11-12",
        until="2025-11-13",
    )
    f = parsed.filters
    assert parsed.errors == {}
    assert (f.allowed, f.path, f.instance_id, f.text) == (
        False,
        "acme/exports/*",
        "prod-opa-1",
        "ana token*",
    )
    assert f.start == datetime(2025, 11, 12, tzinfo=UTC)
    assert f.end == datetime(2025, 11, 14, tzinfo=UTC)  # through the whole "until" day


@pytest.mark.parametrize(
    ("text", "since", "until", "key", "message"),
    [
        ("colour:red", "", "", "search", "unknown field 'colour'"),
        ("verdict:maybe", "", "", "search", "'maybe' is not a verdict"),
        ("", "2025-13-01", "", "since", "'2025-13-01' is not a date"),
        ("", "2025-11-14", "2025-11-12", "until", "must be after since"),
        ('"unbalanced', "", "", "search", "unbalanced quotes"),
        ("%%%", "", "", "search", "no words to search for"),
    ],
)
def test_malformed_search_names_the_problem(
    text: str, since: str, until: str, key: str, message: str
) -> None:
    parsed = search.parse_search_text(text, since=since, until=until)
    assert message in parsed.errors[key]


def test_detail_shows_script_as_text_and_marks_erased_fields() -> None:
    decision = {
        "decision_id": "d-1",
        "timestamp": datetime(2025, 11, 12, 10, tzinfo=UTC),
        "received_at": datetime(2025, 11, 12, 10, 0, 4, tzinfo=UTC),
        "allowed": False,
        "dry_run": False,
        "path": "acme/authz/allow",
        "instance_id": "prod-opa-1",
        "input": {"user": {"name": "<script>alert(1)</script>"}},
        "result": {"allow": False},
        "erased": ["/input/user/token"],
        "masked": ["/input/user/name"],
        "bundles": {"authz": "r42"},
        "metrics": {},
    }
    detail = view.decision_detail(decision)
    pre = next(c for c in detail.children if getattr(c, "className", "") == "policy-detail-json")
    shown = json.loads(pre.children)
    assert shown["input"]["user"] == {
        "name": "<script>alert(1)</script>",
        "token": view.MASK_MARK,
    }
    assert isinstance(pre.children, str)  # a text child: React escapes it, nothing runs


def test_page_layout_and_callbacks_over_the_demo(demo_ctx: AppContext) -> None:
    create_app(demo_ctx)
    from console.pages import policy as page

    page.layout()  # no I/O, renders
    query, problems, shown = page.parse_query(
        "verdict:deny instance:prod-opa-3", "", "", "all", 0, None, None
    )
    assert problems is None and query["allowed"] is False
    # The demo has no decisions after its sprint: the sprint window is shown, and said so.
    assert shown.startswith("Showing the selected window (2025-11-10")
    response = page.fetch_rows({"startRow": 0, "endRow": 50}, query)
    assert len(response["rowData"]) == 50 and response["rowCount"] is None
    assert {r["instance_id"] for r in response["rowData"]} == {"prod-opa-3"}
    assert {r["verdict"] for r in response["rowData"]} == {"deny"}
    unchanged, message, _ = page.parse_query("since:yesterday", "", "", "all", 0, None, None)
    assert unchanged is dash.no_update
    assert "is not a date" in message[0].children


def test_console_mounts_the_receivers_and_apis(demo_ctx: AppContext) -> None:
    client = create_app(demo_ctx).server.test_client()

    drift = client.get("/api/policy/drift?as_of=2025-11-19T06:00:00Z&environment=prod")
    page = client.get("/api/decisions?instance=prod-opa-2&limit=3&allowed=deny")
    unknown = client.get("/api/policy/drift?env=prod")

    assert drift.status_code == 200
    body: dict[str, Any] = drift.get_json()
    assert body["drifted_instances"] == ["prod-opa-3"]
    assert page.status_code == 200
    assert len(page.get_json()["decisions"]) == 3 and page.get_json()["next_cursor"]
    assert unknown.status_code == 400 and "env" in unknown.get_json()["error"]


def test_issue_setting_names_map_onto_the_opa_settings() -> None:
    from pydantic import SecretStr

    from console.settings.ingest import IngestSettings
    from console.settings.opa import BundleSettings, OpaSettings, apply_aliases

    opa = apply_aliases(
        OpaSettings(),
        IngestSettings(opa_token=SecretStr("t0k"), max_body_bytes=4096),
        BundleSettings(source="s3://policy/opa", public_key=SecretStr("PEM")),
    )
    assert opa.logs_token is not None and opa.logs_token.get_secret_value() == "t0k"
    assert (opa.max_body_bytes, opa.bundle_source) == (4096, "s3://policy/opa")
    assert opa.public_key_material() == "PEM"


def test_search_defaults_to_the_last_day_when_newer_decisions_exist() -> None:
    start, end = datetime(2025, 11, 10, tzinfo=UTC), datetime(2025, 11, 24, tzinfo=UTC)
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    live = view.default_search_range(start, end, datetime(2026, 12, 1, 11, 59, tzinfo=UTC), now)
    assert live[0] == datetime(2026, 11, 30, 12, tzinfo=UTC) and live[1] > now
    assert live[2].startswith("Showing the last 24 h (2026-11-30T12:00")
    past = view.default_search_range(start, end, datetime(2025, 11, 23, tzinfo=UTC), now)
    assert past[:2] == (start, end) and "selected window" in past[2]
    assert view.default_search_range(start, end, None, now)[:2] == (start, end)


def test_drift_shows_stale_instances_apart_and_delivery_lints(demo_ctx: AppContext) -> None:
    from store.queries.policy import StaleRule, delivery_frame, drift_frame

    with demo_ctx.session() as session:
        at_end = drift_frame(session, as_of=datetime(2025, 11, 19, 6, tzinfo=UTC))
        today = drift_frame(session, as_of=datetime(2026, 12, 1, tzinfo=UTC), stale=StaleRule())
        delivery = delivery_frame(
            session,
            as_of=datetime(2025, 11, 24, tzinfo=UTC),
            since=datetime(2025, 11, 10, tzinfo=UTC),
        )
    # Reporting every 2 h, the demo OPAs are live at the sprint's end; a year later all stale.
    assert not at_end["stale"].any() and set(at_end[at_end["drifted"]]["instance_id"]) == {
        "prod-opa-3"
    }
    assert today["stale"].all() and not today["drifted"].any()
    html_text = json.dumps(view.drift_table(today).to_plotly_json(), default=str)
    assert "policy-stale" in html_text and "not counted as drift" in html_text
    lints = dict(zip(delivery["instance_id"], delivery["lints"], strict=True))
    assert [t.split(":")[0] for t in lints["prod-opa-3"]] == ["default-delay", "size-buffer"]
    assert lints["prod-opa-1"] == []
    table = json.dumps(view.delivery_table(delivery).to_plotly_json(), default=str)
    assert "buffer_type: event" in table
