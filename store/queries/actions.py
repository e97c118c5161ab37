"""Read side for guarded actions: recent plans, one plan, the newest audit rows, the revision a
bundle pin serves (for the pages and handlers, which run no ORM query of their own)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import ActionAudit, BundlePin, BundleRevision
from store.models.actions import ActionPlan


def recent_plans(session: Session, *, limit: int) -> Sequence[ActionPlan]:
    """The newest ``limit`` plans, newest first."""
    return session.scalars(
        select(ActionPlan).order_by(ActionPlan.requested_at.desc()).limit(limit)
    ).all()


def plan_by_id(session: Session, plan_id: str) -> ActionPlan | None:
    """One plan by its id, or None."""
    return session.scalar(select(ActionPlan).where(ActionPlan.plan_id == plan_id))


def recent_audit(session: Session, *, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` audit rows as plain dicts (`seq`, `at` ISO-8601 UTC, actor, action,
    target, environment, outcome, detail), newest first."""
    return [
        {
            "seq": r.seq,
            "at": r.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "actor": r.actor,
            "action": r.action,
            "target": r.target,
            "environment": r.environment,
            "outcome": r.outcome,
            "detail": r.detail,
        }
        for r in session.scalars(select(ActionAudit).order_by(ActionAudit.seq.desc()).limit(limit))
    ]


def pinned_revision(
    session: Session, bundle: str, environment: str, *, wanted: str | None = None
) -> tuple[str | None, BundleRevision | None]:
    """The revision to serve for ``bundle`` in ``environment`` and its registry row.

    ``wanted`` (a Kubernetes-pinned OPA's `?revision=`) overrides the newest pin. Returns
    (revision name or None when nothing is pinned, the registered row or None); the row is
    expunged so the caller may read it after the session closes.
    """
    pin = session.scalar(
        select(BundlePin)
        .where(BundlePin.bundle == bundle, BundlePin.environment == environment)
        .order_by(BundlePin.pinned_at.desc(), BundlePin.id.desc())
        .limit(1)
    )
    name = wanted or (pin.revision if pin else None)
    if name is None:
        return None, None
    revision = session.scalar(
        select(BundleRevision).where(
            BundleRevision.bundle == bundle, BundleRevision.revision == name
        )
    )
    if revision is not None:
        session.expunge(revision)
    return name, revision


def pin_choices(session: Session, environment: str) -> list[dict[str, Any]]:
    """Every registered bundle revision for the pin form's picker, oldest bundle name first,
    newest revision first: `bundle`, `revision`, `signature_status` (verified | unsigned |
    invalid), `signature_detail`, `key_id`, `added_at` (ISO-8601 UTC), `pinned` (the revision
    the newest pin of ``environment`` serves) and `current` (that revision, or None)."""
    latest: dict[str, str] = {}
    for pin in session.scalars(
        select(BundlePin)
        .where(BundlePin.environment == environment)
        .order_by(BundlePin.pinned_at, BundlePin.id)
    ):
        latest[pin.bundle] = pin.revision  # ordered oldest first: the last one wins
    rows = session.scalars(
        select(BundleRevision).order_by(
            BundleRevision.bundle, BundleRevision.added_at.desc(), BundleRevision.id.desc()
        )
    ).all()
    return [
        {
            "bundle": r.bundle,
            "revision": r.revision,
            "signature_status": r.signature_status,
            "signature_detail": r.signature_detail,
            "key_id": r.key_id,
            "added_at": r.added_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "pinned": latest.get(r.bundle) == r.revision,
            "current": latest.get(r.bundle),
        }
        for r in rows
    ]
