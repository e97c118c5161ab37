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
from tests.conftest import CAPTURES

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


# --------------------------------------------------------------------------------------------
# Byte-exact NGINX 1.22 captures (captures/nginx): three formats, two statuses
# --------------------------------------------------------------------------------------------

NGINX_CAPTURES = CAPTURES / "nginx"


@pytest.mark.parametrize("run", ["default-status", "status-429"])
@pytest.mark.parametrize("fmt", ["combined", "upstreaminfo", "json"])
def test_nginx_captures_are_read_in_every_format_and_reimports_add_nothing(engine, run, fmt):
    seen = json.loads((NGINX_CAPTURES / run / "client-results.json").read_text())
    lines = (NGINX_CAPTURES / run / f"{fmt}.log").read_text(encoding="utf-8").splitlines()
    with Session(engine) as session, session.begin():
        first = exports.import_access_log(session, lines, received_at=T, fmt=fmt)
    with Session(engine) as session, session.begin():
        again = exports.import_access_log(session, lines, received_at=T, fmt=fmt)
    with Session(engine) as session:
        events = session.scalars(select(ExportEvent)).all()
        rejects = session.scalar(select(func.count()).select_from(IngestReject))

    limiter_status = 503 if run == "default-status" else 429
    assert (first.result.stored, first.result.rejected, rejects) == (60, 0, 0)
    assert (again.result.stored, again.result.duplicates) == (0, 60)
    assert sorted(e.status for e in events) == sorted(s["status"] for s in seen)
    assert sorted(e.bytes for e in events) == sorted(s["bytes"] for s in seen)
    by = {(e.answered_by, e.status, e.token_state) for e in events}
    # README: 13×200, 4×401 (tokenless, past the limiter), 43 refused by the limiter.
    assert sum(e.answered_by == "limiter" for e in events) == 43
    assert {b for b in by if b[0] == "limiter"} == {("limiter", limiter_status, "not_checked")}
    assert {b for b in by if b[0] == "application"} == {
        ("application", 200, "valid"),
        ("application", 401, "missing"),
    }
    assert all("?" not in e.route and "tok" not in json.dumps(e.route) for e in events)
    if fmt == "json":  # the backend's X-Export-Id/-User headers are logged: watermarked
        assert {e.watermarked for e in events if e.status == 200} == {True}


def test_a_line_in_another_format_is_a_redacted_dead_letter_not_a_crash(engine):
    lines = (
        (NGINX_CAPTURES / "status-429" / "combined.log").read_text(encoding="utf-8").splitlines()
    )
    with Session(engine) as session, session.begin():
        done = exports.import_access_log(session, lines[:5], received_at=T, fmt="upstreaminfo")
    with Session(engine) as session:
        rejects = session.execute(select(IngestReject.reason, IngestReject.payload)).all()
    assert done.result.rejected == 5
    assert {r.reason.split(": ", 1)[1] for r in rejects} == {
        "not an ingress-nginx upstreaminfo line"
    }
    assert all(
        "tok0" not in r.payload and "token=[redacted]" in r.payload
        for r in rejects
        if "token" in r.payload
    )


@pytest.mark.parametrize(
    "text",
    [
        "GET /evidence/packs/p/download?token=eyJzdWIiOiJhbmEifQ.c2ln&fmt=zip HTTP/1.1",
        '{"http_authorization":"Bearer s3cr3t-value","http_cookie":"session=abc123"}',
        "Authorization: Bearer s3cr3t-value",
        "eyJzdWIiOiJhbmEiLCJzY29wZSI6ImV4In0.c2lnbmF0dXJl",
    ],
)
def test_redact_removes_tokens_credentials_and_cookies(text):
    out = exports.redact(text)
    assert "s3cr3t" not in out and "abc123" not in out and "eyJzdWIi" not in out
    assert "[redacted]" in out
