"""The pin form's picker (issue 15 item 3): registered bundles and revisions with their signature
verdicts and the environment's current pin, from the store, rendered by pure builders."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine

from console.components import actions as view
from store.db import session_factory, session_scope
from store.models import BundlePin, BundleRevision
from store.queries.actions import pin_choices
from tests.conftest import FIXED_NOW
from tests.peers_actions import BUNDLE, REV_1, REV_2, register_revisions


def test_the_picker_lists_revisions_newest_first_with_signature_and_current_pin(
    engine: Engine, tmp_path: Path
) -> None:
    with session_scope(session_factory(engine)) as session:
        register_revisions(session, tmp_path, added_at=FIXED_NOW - timedelta(days=10))
        # r2 registered a day later than r1 here, so "newest first" can be seen.
        r2 = session.query(BundleRevision).filter_by(revision=REV_2).one()
        r2.added_at = FIXED_NOW - timedelta(days=9)
        session.add(
            BundleRevision(
                bundle="other",
                revision="x1",
                sha256="0" * 64,
                manifest={},
                signature_status="invalid",
                signature_detail="digest mismatch for /data.json",
                key_id=None,
                source="/nowhere",
                added_at=FIXED_NOW,
            )
        )
        for at, rev in ((FIXED_NOW - timedelta(days=5), REV_2), (FIXED_NOW, REV_1)):
            session.add(
                BundlePin(
                    bundle=BUNDLE,
                    environment="prod",
                    revision=rev,
                    pinned_at=at,
                    pinned_by="ada",
                    reason="r",
                )
            )
        session.flush()
        prod = pin_choices(session, "prod")
        stage = pin_choices(session, "stage")

    assert [(c["bundle"], c["revision"]) for c in prod] == [
        (BUNDLE, REV_2),
        (BUNDLE, REV_1),
        ("other", "x1"),
    ]
    assert [c["pinned"] for c in prod] == [False, True, False]  # the newest pin wins
    assert {c["current"] for c in stage} == {None}
    assert [c["signature_status"] for c in prod] == ["verified", "verified", "invalid"]

    bundles = view.pin_bundle_options(prod, "prod")
    revisions = view.pin_revision_options(prod, BUNDLE)
    assert bundles == [
        {"label": f"{BUNDLE} (pinned in prod: {REV_1})", "value": BUNDLE},
        {"label": "other (nothing pinned in prod)", "value": "other"},
    ]
    assert [o["label"] for o in revisions] == [
        f"{REV_2} — SIGNED",
        f"{REV_1} — SIGNED · pinned now",
    ]
    assert view.pin_revision_options(prod, "other")[0]["label"] == "x1 — TAMPERED"

    table = view.pin_choices_table(prod, "other", "prod")
    cells = table.children[1].children[0].children  # type: ignore[union-attr]
    assert cells[1].children.children == "TAMPERED"
    assert cells[1].children.className == view.FAIL_CLASS
    assert cells[2].children == "digest mismatch for /data.json"
    assert "Pick a bundle" in view.pin_choices_table(prod, None, "prod").children
