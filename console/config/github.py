"""Settings for GitHub and CI ingest (`QUARTERDECK_GITHUB__…`)."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr


class GitHubSettings(BaseModel):
    """Where GitHub is, which repositories to follow, and the secrets of the receivers."""

    api_url: str = "https://api.github.com"
    token: SecretStr | None = None
    repos: list[str] = Field(default_factory=list)
    webhook_secret: SecretStr | None = None
    ci_ingest_token: SecretStr | None = None
    preview_environment_pattern: str = r"^(preview|pr-\d+)"
