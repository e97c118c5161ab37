"""Settings for the OPA receivers and the bundle registry (`QUARTERDECK_OPA__…`)."""

from __future__ import annotations

from pydantic import BaseModel, SecretStr


class OpaSettings(BaseModel):
    """Bearer tokens of the OPA receivers and how decisions are read."""

    logs_token: SecretStr | None = None
    status_token: SecretStr | None = None
    result_field: str = "allow"
    environment_label: str = "environment"
