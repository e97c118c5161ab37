"""Status reports as real OPA 1.9 sends them (byte-exact captures): instance identity across a
restart, stale instances kept out of drift, decision-log drops and lints per instance."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from collectors.opa import ingest_status
from store.models import BundlePin, OpaStatusReport
from store.queries.policy import StaleRule, delivery_frame, drift_frame
from tests.conftest import CAPTURES, peer_missing

STATUS = CAPTURES / "opa-wire" / "status"
T0 = datetime(2026, 12, 1, 16, 0, tzinfo=UTC)


def body(name: str) -> Any:
    path = STATUS / f"{name}.raw.json"
    if not path.is_file():
        peer_missing(f"the OPA status captures are not at {STATUS}")
    return json.loads(path.read_bytes())


def pin(session: Session, revision: str = "2026.12.01-r1") -> None:
    session.add(
        BundlePin(
            bundle="acme",
            environment="stage",
            revision=revision,
            pinned_at=T0 - timedelta(days=1),
            pinned_by="ana",
        )
    )


def test_a_restarted_opa_is_one_instance_in_drift(engine: Engine) -> None:
    before, after = body("size-buffer-bundle-ok"), body("size-buffer-after-restart")
    assert before["labels"]["id"] != after["labels"]["id"]  # a new UUID per process
    with Session(engine) as session, session.begin():
        pin(session)
        ingest_status(session, before, received_at=T0, environment_label="env")
        ingest_status(
            session, after, received_at=T0 + timedelta(seconds=30), environment_label="env"
        )
        drift = drift_frame(session, as_of=T0 + timedelta(seconds=40))
        rows = session.execute(select(OpaStatusReport.instance_id, OpaStatusReport.process_id))
        processes = {p for _, p in rows}
    assert list(drift["instance_id"]) == ["opa-stage-1"]
    assert processes == {before["labels"]["id"], after["labels"]["id"]}
    assert not drift["drifted"].any()
    assert not drift["stale"].any()


def test_without_the_identity_label_labels_id_is_the_instance(engine: Engine) -> None:
    report = body("size-buffer-bundle-ok")
    del report["labels"]["instance"]
    with Session(engine) as session, session.begin():
        ingest_status(session, report, received_at=T0, environment_label="env")
        stored = session.scalar(select(OpaStatusReport.instance_id))
    assert stored == report["labels"]["id"]


def test_the_first_report_of_a_process_stores_no_bundle_rows(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        result = ingest_status(session, body("size-buffer-first-of-process"), received_at=T0)
        assert session.scalar(select(OpaStatusReport.id)) is None
    assert result.rejected == 0


def test_stale_instances_are_shown_apart_and_not_drift(engine: Engine) -> None:
    def report(instance: str, revision: str) -> dict[str, Any]:
        return {
            "labels": {"id": f"uuid-{instance}", "instance": instance, "environment": "stage"},
            "bundles": {"acme": {"name": "acme", "active_revision": revision}},
        }

    with Session(engine) as session, session.begin():
        pin(session, "r2")
        for minute in range(0, 4):  # reports every 60 s, then silence
            ingest_status(session, report("gone", "r1"), received_at=T0 + timedelta(minutes=minute))
        for minute in range(0, 61, 1):
            ingest_status(session, report("live", "r1"), received_at=T0 + timedelta(minutes=minute))
        as_of = T0 + timedelta(minutes=60, seconds=5)
        drift = drift_frame(session, as_of=as_of).set_index("instance_id")
        lenient = drift_frame(session, as_of=as_of, stale=StaleRule(intervals=100.0))
    assert bool(drift.loc["gone", "stale"]) and not bool(drift.loc["gone", "drifted"])
    assert drift.loc["gone", "interval_s"] == 60.0
    assert bool(drift.loc["live", "drifted"]) and not bool(drift.loc["live", "stale"])
    # 100 intervals = 6000 s > 57 min of silence: not stale, so it drifts again.
    assert lenient["drifted"].all() and not lenient["stale"].any()


@pytest.mark.parametrize(
    ("capture", "state", "code", "chunks", "lint"),
    [
        ("size-buffer-with-drop-counters", "OK", None, 1, "size-buffer"),
        ("size-buffer-decision-log-error-500", "OK", "decision_log_error", 0, "upload-failing"),
        ("event-buffer-bundle-ok", "OK", None, 0, None),
    ],
)
def test_decision_log_delivery_is_stored_and_linted_per_instance(
    engine: Engine, capture: str, state: str, code: str | None, chunks: int, lint: str | None
) -> None:
    with Session(engine) as session, session.begin():
        ingest_status(session, body(capture), received_at=T0, environment_label="env")
        stored = session.scalar(select(OpaStatusReport.decision_logs))
        frame = delivery_frame(session, as_of=T0 + timedelta(minutes=1), since=T0 - timedelta(1))
    assert stored is not None and stored["state"] == state
    assert stored.get("code") == code
    row = frame.iloc[0]
    assert row["instance_id"] == "opa-stage-1"
    assert row["dropped_chunks"] == chunks
    if code:
        assert row["message"] == (
            "log upload failed, server replied with HTTP 500 Internal Server Error"
        )
    names = [text.split(":", 1)[0] for text in row["lints"]]
    assert names == ([lint] if lint else [])


def test_the_default_upload_delay_is_linted(engine: Engine) -> None:
    from store.models import OpaDecision

    with Session(engine) as session, session.begin():
        ingest_status(
            session, body("size-buffer-bundle-ok"), received_at=T0, environment_label="env"
        )
        process = body("size-buffer-bundle-ok")["labels"]["id"]
        for i in range(5):  # decisions carry labels.id; uploads 420 s apart
            at = T0 + timedelta(seconds=420 * i)
            session.add(
                OpaDecision(
                    decision_id=f"d{i}",
                    timestamp=at - timedelta(seconds=200),
                    received_at=at,
                    instance_id=process,
                    path="acme/authz/allow",
                    dry_run=False,
                )
            )
        frame = delivery_frame(session, as_of=T0 + timedelta(hours=1), since=T0 - timedelta(1))
    assert frame.iloc[0]["median_gap_s"] == 420.0
    assert frame.iloc[0]["lints"][0].startswith("default-delay: uploads every ~420 s")
