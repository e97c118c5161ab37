"""Settings for GitHub and CI ingest (`QUARTERDECK_GITHUB__…`, `QUARTERDECK_INGEST__…`)."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, SecretStr, field_validator

# Used only when demo mode is on and no secret is configured; printed at start for the demo
# (docs/guide.md "Demo credentials"; the other receivers' demo tokens are in settings/ingest.py).
DEMO_WEBHOOK_SECRET = "quarterdeck-demo-webhook-secret"  # noqa: S105 (demo only)
DEMO_CI_TOKEN = "quarterdeck-demo-ci-token"  # noqa: S105 (demo only)
_REPO = re.compile(r"[\w.-]+/[\w.-]+")


class GitHubSettings(BaseModel):
    """Where GitHub is, which repositories to follow, and the secrets of the receivers."""

    api_url: str = Field(
        default="https://api.github.com",
        description="REST root; GitHub Enterprise Server: https://HOST/api/v3",
    )
    token: SecretStr | None = Field(default=None, description="token for the poller (read-only)")
    repos: list[str] = Field(default_factory=list, description="owner/name repositories to poll")
    webhook_secret: SecretStr | None = Field(
        default=None, description="the webhook's secret; checks X-Hub-Signature-256"
    )
    ci_ingest_token: SecretStr | None = Field(
        default=None, description="bearer token for POST /ingest/ci (QUARTERDECK_INGEST__CI_TOKEN)"
    )
    preview_environment_pattern: str = Field(
        default=r"^(preview|pr-\d+)", description="regex for preview deployment environments"
    )
    poll_interval_s: float = Field(default=300.0, ge=10, description="`collect github --loop`")
    rescan_hours: float = Field(
        default=6.0, ge=0, description="re-read this much before the last high-water mark"
    )
    fetch_jobs: bool = Field(default=True, description="also poll each completed run's jobs")
    timeout_s: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=5, ge=0, le=20)
    max_rate_limit_wait_s: float = Field(default=3600.0, ge=0)
    quarantine_days: int = Field(default=14, ge=1, le=365)

    @field_validator("repos")
    @classmethod
    def _owner_name(cls, repos: list[str]) -> list[str]:
        bad = [r for r in repos if not _REPO.fullmatch(r)]
        if bad:
            raise ValueError(f"expected owner/name repositories, got {bad}")
        return repos

    @field_validator("preview_environment_pattern")
    @classmethod
    def _regex(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from exc
        return pattern
