"""Export events: line-and-field errors, ingress-nginx JSON access logs, idempotent imports."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from collectors import exports
from store.models import ExportEvent, IngestReject

T = datetime(2025, 11, 12, 10, tzinfo=UTC)
ROUTES = re.compile(r"^/exports/")


def _event(**overrides: object) -> str:
    line: dict[str, object] = {
        "event_id": "e1",
        "export_id": "exp-1",
        "user": "ana",
        "tenant": "acme",
        "time": "2025-11-12T10:00:00Z",
        "route": "/exports/exp-1/download",
        "status": 200,
        "bytes": 10,
        "token": {"present": True, "valid": True, "expired": False, "scope": "export:read"},
        "watermark": {"headers": True},
    }
    line.update(overrides)
    return json.dumps(line)


def _nginx(**overrides: object) -> dict[str, object]:
    line: dict[str, object] = {
        "time_iso8601": "2025-11-12T10:00:00+00:00",
        "req_id": "0f3c9a",
        "remote_user": "-",
        "request_uri": "/exports/exp-9/download?token=abc.def",
        "status": "200",
        "bytes_sent": "2048",
        "http_x_tenant": "globex",
        "upstream_http_x_export_id": "exp-9",
        "upstream_http_x_export_user": "bo",
        "upstream_http_x_export_timestamp": "2025-11-12T10:00:00Z",
    }
    line.update(overrides)
    return line


def test_each_bad_line_is_named_with_its_field():
    text = "\n".join(
        [
            _event(),
            _event(event_id="e2", status="ok"),
            _event(event_id="e3", bytes=-1),
            _event(event_id="e4", token={"present": "yes"}),
            _event(event_id="e5", time=None),
            '{"event_id": "e6"',
        ]
    )

    rows, errors = exports.parse_export_lines(text)

    assert [r["event_id"] for r in rows] == ["e1"]
    assert [str(e) for e in errors] == [
        "line 2: status: expected int, got str",
        "line 3: bytes: expected a non-negative integer, got -1",
        "line 4: token.present: expected true/false, got str",
        "line 5: time: missing or not a string",
        "line 6: not JSON (Expecting ',' delimiter)",
    ]


def test_access_log_line_reads_upstream_watermark_headers_and_never_stores_the_token():
    row = exports.transform_access_log_line(_nginx(), route_pattern=ROUTES)

    assert row is not None
    assert row["route"] == "/exports/exp-9/download"
    assert "abc" not in json.dumps(row, default=str)
    assert (row["user"], row["export_id"], row["tenant"]) == ("bo", "exp-9", "globex")
    assert (row["token_state"], row["watermarked"], row["bytes"]) == ("valid", True, 2048)


@pytest.mark.parametrize(
    ("overrides", "state", "watermarked"),
    [
        ({"request_uri": "/exports/exp-9/download"}, "missing", True),
        ({"status": "403"}, "invalid", True),
        ({"upstream_http_x_export_token_state": "expired", "status": "401"}, "expired", True),
        ({"upstream_http_x_export_id": "-"}, "valid", False),
        ({"status": 429, "upstream_http_x_export_user": ""}, "valid", False),
    ],
)
def test_access_log_token_state_and_watermark(overrides, state, watermarked):
    row = exports.transform_access_log_line(_nginx(**overrides), route_pattern=ROUTES)

    assert row is not None
    assert (row["token_state"], row["watermarked"]) == (state, watermarked)


def test_access_log_outside_the_routes_is_ignored_and_bad_lines_dead_lettered(engine):
    lines = [
        json.dumps(_nginx()),
        json.dumps(_nginx(req_id="1", request_uri="/healthz")),
        json.dumps(_nginx(req_id="2", status="two hundred")),
        _event(event_id="gw-1"),
    ]
    with Session(engine) as session, session.begin():
        first = exports.ingest_access_log(session, lines, received_at=T, route_pattern=ROUTES)
    with Session(engine) as session, session.begin():
        again = exports.ingest_access_log(session, lines, received_at=T, route_pattern=ROUTES)
    with Session(engine) as session:
        stored = session.scalar(select(func.count()).select_from(ExportEvent))
        reasons = session.scalars(select(IngestReject.reason)).all()

    assert (first.stored, first.ignored, first.rejected) == (2, 1, 1)
    assert (again.stored, again.duplicates) == (0, 2)
    assert stored == 2
    assert reasons == ["line 3: status: 'two hundred' is not an HTTP status"]
