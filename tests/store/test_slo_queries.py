"""Read side of issue 7 on SQLite and PostgreSQL: egress frames (daily outcomes, uncovered routes,
evidence packs and their downloads), the incident timeline and postmortems."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from collectors import exports, incidents
from store.ingest import upsert
from store.metrics import Window
from store.models import BundlePin, FailoverEvent, FailoverRun, Postmortem
from store.models.egress import EvidencePack
from store.queries.egress import (
    evidence_downloads_frame,
    evidence_packs_frame,
    export_daily_frame,
    uncovered_frame,
)
from store.queries.reliability import policy_state, postmortems_frame, timeline_frame

T = datetime(2025, 11, 12, 23, 30, tzinfo=UTC)
WINDOW = Window(datetime(2025, 11, 10, tzinfo=UTC), datetime(2025, 11, 24, tzinfo=UTC))


def _event(n: int, at: datetime, **overrides: object) -> dict[str, object]:
    line: dict[str, object] = {
        "event_id": f"e{n}",
        "export_id": f"exp-{n}",
        "user": "ana",
        "tenant": "acme",
        "time": at.isoformat(),
        "route": f"/exports/exp-{n}/download",
        "status": 200,
        "token": {"present": True, "valid": True},
        "watermark": {"headers": True},
    }
    line.update(overrides)
    return exports.transform_export_event(line)


def test_daily_outcomes_bucket_by_utc_day_and_uncovered_routes_rank(engine):
    rows = [
        _event(1, T),
        _event(2, T + timedelta(hours=1), status=429),  # 00:30 next day UTC
        _event(3, T + timedelta(hours=1), route="/legacy/x", watermark={"headers": False}),
        _event(4, T + timedelta(hours=2), route="/legacy/x", watermark={"headers": False}),
        _event(5, T + timedelta(hours=2), status=503, token={"present": False}),
    ]
    with Session(engine) as session, session.begin():
        exports.load_export_events(session, rows)
    with Session(engine) as session:
        daily = export_daily_frame(session, window=WINDOW)
        gaps = uncovered_frame(session, window=WINDOW)

    assert daily[["day", "events", "r2xx", "r429", "r5xx"]].values.tolist() == [
        ["2025-11-12", 1, 1, 0, 0],
        ["2025-11-13", 4, 2, 1, 1],
    ]
    assert gaps[["route", "token_state", "watermarked", "events"]].values.tolist() == [
        ["/legacy/x", "valid", False, 2],
        ["/exports/exp-5/download", "missing", True, 1],
    ]


def test_evidence_packs_list_who_downloaded_them(engine):
    route = "/evidence/packs/ev-1/download"
    with Session(engine) as session, session.begin():
        upsert(
            session,
            EvidencePack,
            [
                {
                    "pack_id": "ev-1",
                    "sprint": "sprint-27",
                    "built_at": T,
                    "built_by": "mgr",
                    "snapshot_sha256": "0" * 64,
                    "snapshot_path": "/x",
                    "key_fingerprint": "k",
                    "files": 7,
                }
            ],
            conflict=("pack_id",),
        )
        exports.load_export_events(
            session,
            [
                _event(1, T, route=route, user="bo", tenant="quarterdeck"),
                _event(2, T, route=route, user="ana", tenant="quarterdeck"),
                _event(3, T, route=route, user="ana", status=429, tenant="quarterdeck"),
                _event(4, T, route=route, user=None, status=403, token={"present": True}),
            ],
        )
    with Session(engine) as session:
        packs = evidence_packs_frame(session)
        downloads = evidence_downloads_frame(session)

    assert packs[["pack_id", "downloads", "refused", "downloaded_by"]].values.tolist() == [
        ["ev-1", 2, 2, "ana, bo"]
    ]
    assert sorted(downloads["status"].tolist()) == [200, 200, 403, 429]


def test_timeline_merges_pins_failover_incidents_and_postmortems(engine):
    with Session(engine) as session, session.begin():
        incidents.ingest_incidents(
            session,
            [
                {
                    "key": "INC-1",
                    "title": "t",
                    "service": "web",
                    "started_at": T.isoformat(),
                    "resolved_at": (T + timedelta(minutes=30)).isoformat(),
                }
            ],
            received_at=T,
        )
        upsert(
            session,
            BundlePin,
            [
                {
                    "bundle": "authz",
                    "environment": "prod",
                    "revision": "r2",
                    "pinned_at": T + timedelta(minutes=5),
                    "pinned_by": "bo",
                    "reason": "",
                }
            ],
            conflict=("bundle", "environment", "pinned_at"),
        )
        session.add(
            FailoverRun(
                run_key="run-1",
                environment="stage",
                kind="drill",
                source="manual",
                started_at=T,
                notes="",
            )
        )
        session.flush()
        session.add(
            FailoverEvent(
                run_key="run-1",
                phase="promoted",
                source="rds",
                at=T + timedelta(minutes=9),
                message="Completed failover",
            )
        )
        session.add(
            Postmortem(
                incident_key="INC-1",
                generated_at=T + timedelta(hours=1),
                generated_by="sre",
                issue_url=None,
                action_items=[{"text": "a", "done": True}, {"text": "b", "done": False}],
                body_markdown="",
            )
        )
    with Session(engine) as session:
        timeline = timeline_frame(session, window=Window(T, T + timedelta(hours=1)))
        pms = postmortems_frame(session)
        state, reason, _ = policy_state(session, [], service="web", as_of=T)

    assert timeline[["kind", "subject"]].values.tolist() == [
        ["incident", "INC-1"],
        ["bundle_pin", "authz @ prod"],
        ["failover", "run-1"],
        ["incident", "INC-1"],
    ]
    assert pms["open_items"].tolist() == [1]
    assert (state, reason) == ("normal", "no SLO is defined for web")
