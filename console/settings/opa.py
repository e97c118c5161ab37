"""Settings for the OPA receivers and the bundle registry (`QUARTERDECK_OPA__…`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, field_validator

from console.settings.ingest import IngestSettings

SIGNING_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
    | {"HS256", "HS384", "HS512"}
)


# Demo only (`make run`): the bearer token per environment that `GET /bundles/<name>` serves
# that environment's pin to; docs/examples/opa-demo.yaml uses the `stage` one.
DEMO_BUNDLE_TOKENS = {
    "dev": "quarterdeck-demo-bundles-dev",  # demo only
    "stage": "quarterdeck-demo-bundles-stage",  # demo only
    "prod": "quarterdeck-demo-bundles-prod",  # demo only
}


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
    # Who an OPA is: this label, else `labels.id` (which OPA replaces with a new UUID on every
    # start). Set it from the pod name: `labels: {instance: "${POD_NAME}"}`.
    instance_label: str = "instance"
    # An instance silent for more than this many of its own reporting intervals is `stale`:
    # shown apart and not counted as drift (and never for less than `stale_min_s`).
    stale_after_intervals: float = Field(default=3.0, gt=0)
    stale_min_s: float = Field(default=300.0, ge=0)
    # OPA's default `upload_size_limit_bytes` is 32 KiB compressed; leave generous headroom.
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_decompressed_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    bundle_source: str | None = None
    public_key: SecretStr | None = None
    key_id: str = "default"
    key_algorithm: str = "RS256"
    # OPA's `signing.scope` of the OPAs the registry serves (empty: no scope signed).
    signing_scope: str = ""
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
