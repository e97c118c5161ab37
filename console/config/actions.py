"""Settings for identity and guarded actions (`QUARTERDECK_AUTH__…`, `QUARTERDECK_ACTIONS__…`)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class AuthSettings(BaseModel):
    """`header` mode trusts an auth proxy's headers from `trusted_proxies`; `local` signs in."""

    mode: str = "local"
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1"])
    allow_anonymous_read: bool = Field(
        default=False, description="let signed-out visitors see pages (never act)"
    )


class ActionsSettings(BaseModel):
    """Live apply is off everywhere unless an environment is listed."""

    live_environments: list[str] = Field(default_factory=list)
    production_environments: list[str] = Field(default_factory=lambda: ["prod"])
