"""Settings for identity and guarded actions (`QUARTERDECK_AUTH__…`, `QUARTERDECK_ACTIONS__…`)."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr


class AuthSettings(BaseModel):
    """`header` mode trusts an auth proxy's headers from `trusted_proxies`; `local` signs in."""

    mode: str = Field(default="local", pattern="^(local|header)$")
    trusted_proxies: list[str] = Field(
        default_factory=lambda: ["127.0.0.1"], description="addresses or CIDRs of the auth proxy"
    )
    allow_anonymous_read: bool = Field(
        default=False, description="let signed-out visitors see pages (never act)"
    )
    user_header: str = Field(
        default="X-Forwarded-User",
        description="the proxy header (claim) naming the user; its value is trimmed and "
        "case-folded into the one user key used for requester, approver, audit and limits",
    )
    groups_header: str = "X-Forwarded-Groups"
    group_roles: dict[str, str] = Field(
        default_factory=lambda: {
            "quarterdeck-viewers": "viewer",
            "quarterdeck-sre": "sre",
            "quarterdeck-captains": "captain",
            "quarterdeck-auditors": "auditor",
            "quarterdeck-admins": "admin",
        },
        description="proxy group → role",
    )
    default_role: str | None = Field(
        default="viewer", description="role of a proxy user in no mapped group (None: no access)"
    )
    session_hours: float = Field(default=12.0, gt=0)
    cookie_secure: bool | None = Field(
        default=None,
        description="Secure cookie flag; None: set it when the request is HTTPS, directly or "
        "as a trusted proxy's X-Forwarded-Proto says",
    )
    signin_account_free: int = Field(
        default=5, ge=1, description="failed sign-ins per account before the backoff starts"
    )
    signin_address_free: int = Field(
        default=20, ge=1, description="failed sign-ins per client address before the backoff"
    )
    signin_backoff_s: float = Field(default=1.0, gt=0, description="first lock; doubles after")
    signin_backoff_max_s: float = Field(default=900.0, gt=0, description="longest lock")
    signin_forget_s: float = Field(
        default=3600.0, gt=0, description="a key with no failure this long starts from zero"
    )
    signin_redis_prefix: str = Field(
        default="quarterdeck:signin:", description="Redis key prefix of the sign-in throttle"
    )


class KubernetesPinSettings(BaseModel):
    """Where the OPA ConfigMap lives (`QUARTERDECK_ACTIONS__KUBERNETES__…`)."""

    host: str | None = None
    token: SecretStr | None = None
    namespace: str = "opa"
    namespaces: dict[str, str] = Field(default_factory=dict, description="environment → namespace")
    config_map: str = "opa-config"
    key: str = "config.yaml"


class DatabaseTargetSettings(BaseModel):
    """One database a runbook may promote (`QUARTERDECK_ACTIONS__RUNBOOKS__DATABASES`)."""

    provider: str = Field(default="postgresql", pattern="^(postgresql|rds|aurora|simulated)$")
    standby_dsn: SecretStr | None = Field(default=None, description="the replica to promote")
    primary_dsn: SecretStr | None = Field(default=None, description="read for replay_lag")
    replica_name: str = Field(default="", description="application_name in pg_stat_replication")
    instance: str | None = Field(default=None, description="RDS read replica to promote")
    cluster: str | None = Field(default=None, description="Aurora cluster to fail over")
    target: str | None = Field(default=None, description="Aurora instance to make the writer")
    writer_dsn: SecretStr | None = Field(default=None, description="RDS: DSN for probe writes")
    simulated_lag_s: float = Field(default=2.0, ge=0)


class RunbookSettings(BaseModel):
    """Where runbooks live, how often the job advances runs, and the databases they promote."""

    dir: str | None = Field(default=None, description="runbook folder (default data/runbooks)")
    tick_s: float = Field(default=1.0, gt=0, description="seconds between job passes")
    promote_timeout_s: float = Field(default=60.0, gt=0)
    connect_timeout_s: int = Field(default=3, ge=1)
    databases: dict[str, DatabaseTargetSettings] = Field(default_factory=dict)


class ActionsSettings(BaseModel):
    """Live apply is off everywhere unless an environment is listed."""

    live_environments: list[str] = Field(default_factory=list)
    production_environments: list[str] = Field(default_factory=lambda: ["prod"])
    approval_ttl_minutes: float = Field(default=60.0, gt=0)
    lock_ttl_minutes: float = Field(default=15.0, gt=0)
    verify_timeout_s: float = Field(default=300.0, gt=0)
    max_step_pct: float = Field(default=50.0, gt=0, le=100)
    min_healthy_regions: int = Field(default=1, ge=1)
    synthetic_urls: dict[str, str] = Field(default_factory=dict, description="region → URL")
    insync_timeout_s: float = Field(default=120.0, ge=0)
    insync_poll_s: float = Field(default=5.0, gt=0)
    stage_environment: str = "stage"
    soak_hours: float = Field(default=24.0, ge=0)
    replay_last: int = Field(default=500, ge=1)
    max_flip_pct: float = Field(default=5.0, ge=0, le=100)
    max_not_evaluated_pct: float = Field(
        default=10.0, ge=0, le=100, description="impact preview blocks above this share"
    )
    bundle_tokens: dict[str, SecretStr] = Field(
        default_factory=dict, description="environment → bearer token for GET /bundles/<name>"
    )
    bundle_dir: str | None = Field(
        default=None, description="registry folder <bundle>/<revision>.tar.gz (default var/bundles)"
    )
    kubernetes: KubernetesPinSettings = Field(default_factory=KubernetesPinSettings)
    runbooks: RunbookSettings = Field(default_factory=RunbookSettings)
