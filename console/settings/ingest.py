"""Bearer tokens and limits of the `/ingest/*` receivers (`QUARTERDECK_INGEST__…`)."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

# Demo mode never opens a receiver: with no token configured it uses these documented ones
# (docs/guide.md "Demo credentials"; printed at start). Outside demo mode they are never used.
DEMO_OPA_TOKEN = "quarterdeck-demo-opa-token"  # noqa: S105 (demo only: /ingest/opa/logs, /status)
DEMO_EXPORTS_TOKEN = "quarterdeck-demo-exports-token"  # noqa: S105 (demo only)
DEMO_INCIDENTS_TOKEN = "quarterdeck-demo-incidents-token"  # noqa: S105 (demo only)


class IngestSettings(BaseModel):
    """One token per source, so a leaked CI token cannot post OPA decisions."""

    ci_token: SecretStr | None = Field(default=None, description="bearer token for /ingest/ci")
    opa_token: SecretStr | None = Field(
        default=None, description="bearer token for /ingest/opa/* (OPA `credentials.bearer`)"
    )
    exports_token: SecretStr | None = Field(
        default=None, description="bearer token for /ingest/exports"
    )
    incidents_token: SecretStr | None = Field(
        default=None, description="bearer token for /ingest/incidents"
    )
    max_body_bytes: int | None = Field(
        default=None, ge=1024, description="compressed body limit of the OPA receivers"
    )
