"""Typed settings for the composition root (pydantic-settings; `QUARTERDECK_…`, `__` nests).

Built once at an entry point and passed down; library code never reads the environment.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from console.settings.actions import ActionsSettings, AuthSettings
from console.settings.egress import EvidenceSettings, ExportSettings
from console.settings.github import GitHubSettings
from console.settings.ingest import IngestSettings
from console.settings.opa import BundleSettings, OpaSettings, apply_aliases
from console.settings.traffic import (
    AwsSettings,
    FailoverSettings,
    PrometheusSettings,
    Route53Settings,
)
from store.db import default_sqlite_url

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "demo", "secret", "quarterdeck-demo"})


class Settings(BaseSettings):
    """Everything the console, the receivers and the CLI need to start."""

    model_config = SettingsConfigDict(
        env_prefix="QUARTERDECK_", env_nested_delimiter="__", extra="ignore"
    )

    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite file var/quarterdeck.db"
    )
    var_dir: Path = PROJECT_ROOT / "var"
    data_dir: Path = PROJECT_ROOT / "data"
    host: str = "127.0.0.1"
    port: int = Field(default=8050, ge=1, le=65535)
    default_sprint: str = "sprint-27"
    demo_mode: bool = Field(
        default=False, description="allows placeholder secrets; set by `make run` for the demo"
    )
    secret_key: SecretStr = SecretStr("quarterdeck-demo")
    log_level: str = "INFO"

    github: GitHubSettings = Field(default_factory=GitHubSettings)
    opa: OpaSettings = Field(default_factory=OpaSettings)
    bundles: BundleSettings = Field(default_factory=BundleSettings)
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    aws: AwsSettings = Field(default_factory=AwsSettings)
    route53: Route53Settings = Field(default_factory=Route53Settings)
    failover: FailoverSettings = Field(default_factory=FailoverSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    actions: ActionsSettings = Field(default_factory=ActionsSettings)
    exports: ExportSettings = Field(default_factory=ExportSettings)
    evidence: EvidenceSettings = Field(default_factory=EvidenceSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    redis_url: str | None = Field(
        default=None, description="Redis for limits shared by several workers"
    )

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if not self.demo_mode and self.secret_key.get_secret_value() in PLACEHOLDER_SECRETS:
            raise ValueError(
                "QUARTERDECK_SECRET_KEY is a placeholder; set a real secret "
                "(or QUARTERDECK_DEMO_MODE=true for the demo)"
            )
        return self

    @model_validator(mode="after")
    def _opa_aliases(self) -> Settings:
        self.opa = apply_aliases(self.opa, self.ingest, self.bundles)
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or default_sqlite_url(self.var_dir)

    @property
    def sprints_dir(self) -> Path:
        return self.data_dir / "sprints"
