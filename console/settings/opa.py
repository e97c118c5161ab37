"""Settings for the OPA receivers and the bundle registry (`QUARTERDECK_OPA__…`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, field_validator

from console.settings.ingest import IngestSettings

SIGNING_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
    | {"HS256", "HS384", "HS512"}
)


class OpaSettings(BaseModel):
    """Bearer tokens and size limits of the OPA receivers, how decisions are read, the registry.

    `bundle_source` is a folder (`/srv/bundles`) or an S3 prefix (`s3://bucket/prefix`) laid out
    as `<bundle name>/<anything>.tar.gz`. `public_key` is a PEM public key (or the shared secret
    for HS*), or a path to a file holding it; OPA's `keys.<key_id>` configuration, in short.
    """

    logs_token: SecretStr | None = None
    status_token: SecretStr | None = None
    result_field: str = "allow"
    environment_label: str = "environment"
    # OPA's default `upload_size_limit_bytes` is 32 KiB compressed; leave generous headroom.
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_decompressed_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    bundle_source: str | None = None
    public_key: SecretStr | None = None
    key_id: str = "default"
    key_algorithm: str = "RS256"
    s3_endpoint_url: str | None = None

    @field_validator("key_algorithm")
    @classmethod
    def _known_algorithm(cls, value: str) -> str:
        if value.upper() not in SIGNING_ALGORITHMS:
            raise ValueError(f"must be one of {', '.join(sorted(SIGNING_ALGORITHMS))}")
        return value.upper()

    def public_key_material(self) -> str | None:
        """The verification key text (read from the file when `public_key` names one)."""
        if self.public_key is None:
            return None
        value = self.public_key.get_secret_value()
        if "\n" not in value and len(value) < 4096:
            candidate = Path(value).expanduser()
            if candidate.is_file():
                return candidate.read_text()
        return value


class BundleSettings(BaseModel):
    """The issue's registry names (`QUARTERDECK_BUNDLES__SOURCE`, `…__PUBLIC_KEY`)."""

    source: str | None = None
    public_key: SecretStr | None = None


def apply_aliases(opa: OpaSettings, ingest: IngestSettings, bundles: BundleSettings) -> OpaSettings:
    """Return ``opa`` with the `INGEST__…`/`BUNDLES__…` values filled in where set."""
    updates: dict[str, object] = {}
    if ingest.opa_token is not None:
        updates["logs_token"] = ingest.opa_token
    if ingest.max_body_bytes is not None:
        updates["max_body_bytes"] = ingest.max_body_bytes
    if bundles.source:
        updates["bundle_source"] = bundles.source
    if bundles.public_key is not None:
        updates["public_key"] = bundles.public_key
    return opa.model_copy(update=updates) if updates else opa
