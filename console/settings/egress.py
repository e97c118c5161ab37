"""Settings for export controls, downloads, error budgets and evidence packs.

The documented variables are `QUARTERDECK_EXPORTS__TOKEN_SECRET`, `QUARTERDECK_EXPORTS__…` (TTL,
rate limit), `QUARTERDECK_INGEST__EXPORTS_TOKEN`, `QUARTERDECK_INGEST__INCIDENTS_TOKEN`,
`QUARTERDECK_EVIDENCE__SIGNING_KEY` and
`QUARTERDECK_REDIS_URL`. The last three live on `Settings.ingest`, `Settings.evidence` and
`Settings.redis_url` (`IngestSettings.exports_token` beside the CI token);
:func:`egress_config` resolves them (falling back to the `exports` group,
`QUARTERDECK_EXPORTS__INGEST_TOKEN` / `…__REDIS_URL` / `…__EVIDENCE_SIGNING_KEY`) so the rest of
the code reads one object.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr

MAX_TOKEN_TTL_S = 600  # seed §5.6: export tokens live at most 10 minutes
# The platform's export routes (the console's evidence downloads and the gateway's exports);
# keep in step with store.queries.egress.DEFAULT_EXPORT_ROUTES (the goals' default).
DEFAULT_EXPORT_ROUTES = (r"^/evidence/packs/[^/]+/download$", r"^/exports/[^/]+/download$")


class ExportSettings(BaseModel):
    """Export tokens (seed §5.6), download rate limits and the SLO definitions folder."""

    ingest_token: SecretStr | None = Field(
        default=None, description="bearer token of POST /ingest/exports (legacy name)"
    )
    incidents_token: SecretStr | None = Field(
        default=None, description="bearer token of POST /ingest/incidents (legacy name)"
    )
    token_secret: SecretStr | None = Field(
        default=None, description="HMAC-SHA256 secret of signed download URLs"
    )
    token_ttl_s: int = Field(default=300, ge=10, le=MAX_TOKEN_TTL_S)
    rate_limit: int = Field(default=10, ge=1, description="downloads per user per window")
    rate_window_s: int = Field(default=60, ge=1)
    tenant_rate_limit: int = Field(
        default=100, ge=1, description="downloads per tenant per tenant window"
    )
    tenant_rate_window_s: int = Field(default=60, ge=1)
    default_tenant: str = Field(
        default="quarterdeck",
        description="tenant of a download whose token names none and without X-Tenant",
    )
    routes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EXPORT_ROUTES),
        description="regexes of the platform's declared export routes (others are flagged)",
    )
    redis_url: str | None = Field(default=None, description="shared rate limits (legacy name)")
    rate_key_prefix: str = Field(default="quarterdeck:dl:", description="Redis key prefix")
    evidence_signing_key: SecretStr | None = None
    slos_dir: Path | None = Field(default=None, description="default: <data_dir>/slos")
    postmortem_repo: str | None = Field(
        default=None, description="owner/name where generated postmortems open an issue"
    )
    postmortem_token: SecretStr | None = Field(
        default=None, description="GitHub token allowed to create issues in postmortem_repo"
    )


class EvidenceSettings(BaseModel):
    """Evidence packs (`QUARTERDECK_EVIDENCE__…`)."""

    signing_key: SecretStr | None = Field(
        default=None,
        description="Ed25519 private key: base64 of the 32-byte seed, or a PKCS#8 PEM",
    )
    dir: Path | None = Field(default=None, description="pack snapshots; default <var_dir>/evidence")


@dataclass(frozen=True)
class EgressConfig:
    """The resolved egress settings the receivers, pages and CLI use."""

    demo_mode: bool
    ingest_token: str | None
    incidents_token: str | None
    token_secret: str | None
    token_ttl_s: int
    rate_limit: int
    rate_window_s: int
    redis_url: str | None
    rate_key_prefix: str
    tenant_rate_limit: int
    tenant_rate_window_s: int
    default_tenant: str
    export_routes: tuple[str, ...]
    signing_key: str | None
    postmortem_repo: str | None
    postmortem_token: str | None
    github_api_url: str
    evidence_dir: Path
    slos_dir: Path


def _secret(value: Any) -> str | None:
    if isinstance(value, SecretStr):
        text = value.get_secret_value()
        return text or None
    return None


def egress_config(settings: Any) -> EgressConfig:
    """Resolve the egress settings from the console `Settings` (see module docstring)."""
    exports: ExportSettings = settings.exports
    ingest = getattr(settings, "ingest", None)
    evidence = getattr(settings, "evidence", None)
    evidence_dir = getattr(evidence, "dir", None) or Path(settings.var_dir) / "evidence"
    return EgressConfig(
        demo_mode=bool(settings.demo_mode),
        ingest_token=_secret(getattr(ingest, "exports_token", None))
        or _secret(exports.ingest_token),
        incidents_token=_secret(getattr(ingest, "incidents_token", None))
        or _secret(exports.incidents_token),
        token_secret=_secret(exports.token_secret),
        token_ttl_s=exports.token_ttl_s,
        rate_limit=exports.rate_limit,
        rate_window_s=exports.rate_window_s,
        redis_url=getattr(settings, "redis_url", None) or exports.redis_url,
        rate_key_prefix=exports.rate_key_prefix,
        tenant_rate_limit=exports.tenant_rate_limit,
        tenant_rate_window_s=exports.tenant_rate_window_s,
        default_tenant=exports.default_tenant,
        export_routes=tuple(exports.routes),
        signing_key=_secret(getattr(evidence, "signing_key", None))
        or _secret(exports.evidence_signing_key),
        postmortem_repo=exports.postmortem_repo,
        postmortem_token=_secret(exports.postmortem_token),
        github_api_url=str(settings.github.api_url).rstrip("/"),
        evidence_dir=Path(evidence_dir),
        slos_dir=exports.slos_dir or Path(settings.data_dir) / "slos",
    )
