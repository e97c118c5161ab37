"""Settings for export controls, downloads and error budgets (`QUARTERDECK_EXPORTS__…`)."""

from __future__ import annotations

from pydantic import BaseModel, SecretStr


class ExportSettings(BaseModel):
    ingest_token: SecretStr | None = None
    redis_url: str | None = None
