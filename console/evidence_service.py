"""Evidence packs and signed downloads wired to the console: build, personalise, record.

Used by the CLI (`quarterdeck evidence …`), the Evidence page and the download endpoint, so all
three build, sign and record packs the same way. Every HTTP download (and every refused one) is
stored as an export event through the exports collector's own load path.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from collectors import exports
from console.context import AppContext
from console.settings.egress import EgressConfig, egress_config
from egress.tokens import derive_secret
from evidence.pack import (
    EvidenceError,
    Watermark,
    collect_snapshot,
    render_pack,
    snapshot_bytes,
)
from evidence.signing import fingerprint, resolve_signing_key
from store.goals import SprintConfigError
from store.ingest import IngestResult, utcnow
from store.models.egress import EvidencePack
from store.slo import SloDefinition, load_slos

log = logging.getLogger(__name__)

DOWNLOAD_SCOPE = "evidence:download:"
DOWNLOAD_ROUTE = "/evidence/packs/{pack_id}/download"
TENANT = "quarterdeck"
STATE_VALID, STATE_MISSING, STATE_INVALID, STATE_EXPIRED = "valid", "missing", "invalid", "expired"


def config(ctx: AppContext) -> EgressConfig:
    return egress_config(ctx.settings)


def slo_definitions(ctx: AppContext) -> list[SloDefinition]:
    """The SLO definitions in force (`<data_dir>/slos/*.yaml`)."""
    return load_slos(config(ctx).slos_dir)


def signing_key(ctx: AppContext) -> tuple[Ed25519PrivateKey, bool]:
    """The evidence signing key; raises SigningKeyError saying how to configure one."""
    cfg = config(ctx)
    return resolve_signing_key(cfg.signing_key, demo_mode=cfg.demo_mode)


def token_secret(ctx: AppContext) -> str:
    """The download-token secret: configured, else derived from the console's secret key."""
    cfg = config(ctx)
    return cfg.token_secret or derive_secret(
        ctx.settings.secret_key.get_secret_value(), "quarterdeck export tokens"
    )


def local_user() -> str:
    """Who runs the CLI (for packs built outside the web console)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


@dataclass(frozen=True)
class BuiltPack:
    """A pack recorded in `evidence_packs`, with the zip rendered for its builder."""

    pack_id: str
    sprint: str
    built_by: str
    built_at: datetime
    data: bytes
    key_fingerprint: str
    demo_key: bool


def new_pack_id(sprint: str, at: datetime) -> str:
    return f"ev-{sprint}-{at:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def build_pack(
    ctx: AppContext,
    sprint_slug: str,
    *,
    user: str,
    now: datetime | None = None,
    render: bool = True,
) -> BuiltPack:
    """Collect, store and render a pack for ``sprint_slug`` (raises EvidenceError/SigningKeyError).

    The signing key is resolved first so a misconfigured console refuses before any work. With
    ``render=False`` (the web console, whose downloads render per user) no zip is made here.
    """
    key, demo = signing_key(ctx)
    if sprint_slug not in ctx.sprint_slugs():
        known = ", ".join(ctx.sprint_slugs()) or "none"
        raise EvidenceError(f"unknown sprint {sprint_slug!r} (known sprints: {known})")
    try:
        sprint = ctx.sprint(sprint_slug)
    except SprintConfigError as exc:
        raise EvidenceError("invalid sprint file: " + "; ".join(exc.problems)) from exc
    now = now or utcnow()
    slos = slo_definitions(ctx)
    pack_id = new_pack_id(sprint.slug, now)
    cfg = config(ctx)
    with ctx.session() as session:
        snapshot = collect_snapshot(session, sprint, slos=slos, now=now)
        blob = snapshot_bytes(snapshot)
        cfg.evidence_dir.mkdir(parents=True, exist_ok=True)
        path = cfg.evidence_dir / f"{pack_id}.json"
        path.write_bytes(blob)
        data = (
            render_pack(
                snapshot,
                mark=Watermark(export_id=pack_id, user=user, exported_at=now),
                key=key,
                demo_key=demo,
                pack_id=pack_id,
            )
            if render
            else b""
        )
        session.add(
            EvidencePack(
                pack_id=pack_id,
                sprint=sprint.slug,
                built_at=now,
                built_by=user,
                snapshot_sha256=hashlib.sha256(blob).hexdigest(),
                snapshot_path=str(path),
                key_fingerprint=fingerprint(key.public_key()),
                files=len(snapshot["sections"]),
            )
        )
    return BuiltPack(
        pack_id=pack_id,
        sprint=sprint.slug,
        built_by=user,
        built_at=now,
        data=data,
        key_fingerprint=fingerprint(key.public_key()),
        demo_key=demo,
    )


def get_pack(session: Session, pack_id: str) -> EvidencePack | None:
    return session.scalars(select(EvidencePack).where(EvidencePack.pack_id == pack_id)).first()


def render_download(
    ctx: AppContext, pack: EvidencePack, *, export_id: str, user: str, at: datetime
) -> bytes:
    """Render a stored pack for one download; refuse a snapshot changed since it was built."""
    path = Path(pack.snapshot_path)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise EvidenceError(f"pack {pack.pack_id}: snapshot {path} is unreadable ({exc})") from exc
    if hashlib.sha256(blob).hexdigest() != pack.snapshot_sha256:
        raise EvidenceError(f"pack {pack.pack_id}: snapshot {path} changed since it was built")
    key, demo = signing_key(ctx)
    return render_pack(
        json.loads(blob),
        mark=Watermark(export_id=export_id, user=user, exported_at=at),
        key=key,
        demo_key=demo,
        pack_id=pack.pack_id,
    )


def record_download(
    session: Session,
    *,
    event_id: str,
    pack_id: str,
    export_id: str | None,
    user: str | None,
    at: datetime,
    status: int,
    size: int,
    token_state: str,
    scope: str | None,
    watermarked: bool,
) -> IngestResult:
    """Store one download attempt as an export event (the collector's own transform and load)."""
    line: dict[str, Any] = {
        "event_id": event_id,
        "export_id": export_id,
        "user": user,
        "tenant": TENANT,
        "time": at.astimezone(UTC).isoformat(),
        "route": DOWNLOAD_ROUTE.format(pack_id=pack_id),
        "status": status,
        "bytes": size,
        "token": {
            "present": token_state != STATE_MISSING,
            "valid": token_state == STATE_VALID,
            "expired": token_state == STATE_EXPIRED,
            "scope": scope,
        },
        "watermark": {"headers": watermarked},
    }
    return exports.load_export_events(session, [exports.transform_export_event(line)])


def signed_download_url(
    ctx: AppContext, pack_id: str, *, user: str, now: float | None = None
) -> tuple[str, int]:
    """A short-lived signed URL for ``user`` to download ``pack_id``: (path with token, exp)."""
    from egress.tokens import issue_token, verify_token

    cfg = config(ctx)
    secret = token_secret(ctx)
    token = issue_token(
        secret, sub=user, scope=DOWNLOAD_SCOPE + pack_id, ttl_s=cfg.token_ttl_s, now=now
    )
    claims = verify_token(secret, token, scope=DOWNLOAD_SCOPE + pack_id, now=now)
    return f"{DOWNLOAD_ROUTE.format(pack_id=pack_id)}?token={token}", claims.exp


def current_user(ctx: AppContext) -> str | None:
    """The signed-in user of this request (canonical key), else None; never `anonymous`.

    Signed-out visitors may read where `allow_anonymous_read` is on, but never build packs or
    receive download links: a token always names a person.
    """
    from console.auth.permissions import current_identity

    identity = current_identity()
    return identity.user if identity is not None else None


def authorized_user(permission: str) -> tuple[str | None, str]:
    """(user, "") when this request's identity holds ``permission``, else (None, why not)."""
    from console.auth.permissions import authorize, current_identity

    identity = current_identity()
    refusal = authorize(identity, permission)
    if refusal is not None or identity is None:
        return None, refusal.message if refusal is not None else "sign in first"
    return identity.user, ""
