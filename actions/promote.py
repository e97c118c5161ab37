"""PromoteDatabase (`db.promote`): promote a replica to primary, behind the RPO gate.

Providers say what the replica is, how far behind it is (read from the database itself at the
moment of asking), promote it and prove it takes writes:

- :class:`PostgresDatabase`: lag from the standby (`now() - pg_last_xact_replay_timestamp()`
  while it has received WAL it has not replayed, else 0) and from the primary's
  `pg_stat_replication.replay_lag` when the primary answers, whichever is larger; promotion is
  `SELECT pg_promote(true, <timeout>)` on the standby; the probe write commits one row in
  `quarterdeck_failover_probe` (the table the failover probe uses).
- :class:`RdsDatabase`: `PromoteReadReplica` for an instance replica, `FailoverDBCluster` for an
  Aurora cluster, then waits (bounded) for the status `available`; lag from CloudWatch
  `ReplicaLag` / `AuroraReplicaLag` (unknown without a datapoint: the gate then blocks).
- :class:`SimulatedDatabase`: the demo's in-memory replica.

The lag rule (`replica-lag-within-rpo`) is read twice: at plan time, and again at apply, just
before promotion; the RPO recorded is the second reading. An admin may override it with a
reason (the action service audits the override); a node that is not a replica is never promoted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from actions.base import (
    SYSTEM_CLOCK,
    ApplyOutcome,
    Clock,
    GuardedAction,
    InvalidParams,
    PlanView,
    Proposal,
    RuleResult,
    state_token,
)
from store.models.actions import ActionPlan

log = logging.getLogger(__name__)

LAG_RULE = "replica-lag-within-rpo"
REPLICA_RULE = "replica-in-recovery"

Connect = Callable[[], Any]
"""Returns a DB-API connection (psycopg) to one node; the caller closes it."""


@dataclass(frozen=True)
class LagReading:
    """Replication lag as a database reported it: seconds (None: unknown), when, how."""

    lag_s: float | None
    read_at: datetime
    how: str


class DatabaseProvider(Protocol):
    """What PromoteDatabase needs from one replicated database."""

    kind: str

    def role(self) -> str:
        """`replica`, `primary` (already promoted) or `unknown`."""
        ...

    def lag(self) -> LagReading:
        """The replica's lag now, read from the database."""
        ...

    def promote(self, timeout_s: float) -> datetime:
        """Promote the replica; return when it reported done (raises on failure)."""
        ...

    def probe_write(self, note: str) -> datetime | None:
        """Commit one row on the new primary; its time, or None when writes cannot be probed."""
        ...


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------

STANDBY_LAG_SQL = """
SELECT now(), pg_is_in_recovery(),
       CASE WHEN NOT pg_is_in_recovery() THEN 0
            WHEN pg_last_wal_receive_lsn() IS NOT NULL
                 AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8
       END
"""
PRIMARY_LAG_SQL = """
SELECT EXTRACT(EPOCH FROM replay_lag)::float8 FROM pg_stat_replication
WHERE application_name = %s
"""
PROBE_TABLE_SQL = """
CREATE TABLE IF NOT EXISTS quarterdeck_failover_probe (
    id bigserial PRIMARY KEY,
    written_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    note text NOT NULL
)
"""
PROBE_WRITE_SQL = "INSERT INTO quarterdeck_failover_probe (note) VALUES (%s) RETURNING written_at"


def _aware(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidParams(f"expected a timestamp from the database, got {value!r}")
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


class PostgresDatabase:
    """A PostgreSQL streaming standby (``standby``) and, when reachable, its primary."""

    kind = "postgresql"

    def __init__(
        self, standby: Connect, primary: Connect | None = None, *, replica_name: str = ""
    ) -> None:
        self.standby = standby
        self.primary = primary
        self.replica_name = replica_name

    def _one(self, connect: Connect, sql: str, args: tuple[Any, ...] = ()) -> Any:
        conn = connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                row = cur.fetchone()
            conn.commit()
            return row
        finally:
            conn.close()

    def role(self) -> str:
        try:
            (in_recovery,) = self._one(self.standby, "SELECT pg_is_in_recovery()")
        except Exception as exc:  # unreachable: the rule says so
            log.warning("standby role unknown: %s", exc)
            return "unknown"
        return "replica" if in_recovery else "primary"

    def lag(self) -> LagReading:
        now, _in_recovery, standby_lag = self._one(self.standby, STANDBY_LAG_SQL)
        read_at = _aware(now)
        readings = []
        how = []
        if standby_lag is not None:
            readings.append(float(standby_lag))
            how.append(f"standby replay delay {float(standby_lag):.1f} s")
        else:
            how.append("standby has replayed no transaction yet")
        if self.primary is not None and self.replica_name:
            try:
                row = self._one(self.primary, PRIMARY_LAG_SQL, (self.replica_name,))
            except Exception as exc:
                how.append(f"primary unreachable ({type(exc).__name__})")
            else:
                if row is None:
                    how.append(f"primary has no standby named {self.replica_name}")
                else:
                    primary_lag = float(row[0]) if row[0] is not None else 0.0
                    readings.append(primary_lag)
                    how.append(f"pg_stat_replication.replay_lag {primary_lag:.1f} s")
        lag = max(readings) if readings else None
        return LagReading(lag, read_at, "; ".join(how))

    def promote(self, timeout_s: float) -> datetime:
        wait = max(1, int(timeout_s))
        (done,) = self._one(self.standby, "SELECT pg_promote(true, %s)", (wait,))
        if not done:
            raise RuntimeError(f"pg_promote() did not finish within {wait} s")
        (now,) = self._one(self.standby, "SELECT now()")
        return _aware(now)

    def probe_write(self, note: str) -> datetime | None:
        conn = self.standby()
        try:
            with conn.cursor() as cur:
                cur.execute(PROBE_TABLE_SQL)
                cur.execute(PROBE_WRITE_SQL, (note[:200],))
                (written_at,) = cur.fetchone()
            conn.commit()
        finally:
            conn.close()
        return _aware(written_at)


# --------------------------------------------------------------------------------------------
# RDS / Aurora
# --------------------------------------------------------------------------------------------


class RdsDatabase:
    """An RDS read replica (``instance``) or an Aurora cluster (``cluster`` + ``target``)."""

    kind = "rds"

    def __init__(
        self,
        rds: Any,
        *,
        instance: str | None = None,
        cluster: str | None = None,
        target: str | None = None,
        cloudwatch: Any | None = None,
        writer: Connect | None = None,
        poll_s: float = 10.0,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not instance and not (cluster and target):
            raise InvalidParams("rds: give instance, or cluster and target")
        self.rds = rds
        self.instance = instance
        self.cluster = cluster
        self.target = target
        self.cloudwatch = cloudwatch
        self.writer = writer
        self.poll_s = poll_s
        self.clock = clock
        self.sleep = sleep

    def _instance(self, name: str) -> dict[str, Any]:
        found = self.rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"]
        return dict(found[0])

    def role(self) -> str:
        try:
            if self.cluster:
                members = self.rds.describe_db_clusters(DBClusterIdentifier=self.cluster)[
                    "DBClusters"
                ][0].get("DBClusterMembers", [])
                for member in members:
                    if member.get("DBInstanceIdentifier") == self.target:
                        return "primary" if member.get("IsClusterWriter") else "replica"
                return "unknown"
            info = self._instance(str(self.instance))
        except Exception as exc:
            log.warning("rds role unknown: %s", exc)
            return "unknown"
        return "replica" if info.get("ReadReplicaSourceDBInstanceIdentifier") else "primary"

    def lag(self) -> LagReading:
        now = self.clock()
        if self.cloudwatch is None:
            return LagReading(None, now, "no CloudWatch client: lag unknown")
        metric = "AuroraReplicaLag" if self.cluster else "ReplicaLag"
        name = str(self.target if self.cluster else self.instance)
        answer = self.cloudwatch.get_metric_statistics(
            Namespace="AWS/RDS",
            MetricName=metric,
            Dimensions=[{"Name": "DBInstanceIdentifier", "Value": name}],
            StartTime=now - timedelta(minutes=5),
            EndTime=now,
            Period=60,
            Statistics=["Maximum"],
        )
        points = sorted(answer.get("Datapoints", []), key=lambda p: p["Timestamp"])
        if not points:
            return LagReading(None, now, f"no CloudWatch {metric} datapoint in the last 5 min")
        value = float(points[-1]["Maximum"])
        if metric == "AuroraReplicaLag":  # milliseconds
            value /= 1000.0
        return LagReading(value, _aware(points[-1]["Timestamp"]), f"CloudWatch {metric}")

    def promote(self, timeout_s: float) -> datetime:
        deadline = time.monotonic() + timeout_s
        if self.cluster:
            self.rds.failover_db_cluster(
                DBClusterIdentifier=self.cluster, TargetDBInstanceIdentifier=self.target
            )
        else:
            self.rds.promote_read_replica(DBInstanceIdentifier=self.instance)
        while True:
            if self.role() == "primary" and self._available():
                return self.clock()
            if time.monotonic() >= deadline:
                raise RuntimeError(f"not available as primary within {timeout_s:g} s")
            self.sleep(self.poll_s)

    def _available(self) -> bool:
        if self.cluster:
            status = self.rds.describe_db_clusters(DBClusterIdentifier=self.cluster)["DBClusters"][
                0
            ].get("Status")
        else:
            status = self._instance(str(self.instance)).get("DBInstanceStatus")
        return bool(status == "available")

    def probe_write(self, note: str) -> datetime | None:
        if self.writer is None:
            return None
        return PostgresDatabase(self.writer).probe_write(note)


# --------------------------------------------------------------------------------------------
# The demo's simulated database
# --------------------------------------------------------------------------------------------


@dataclass
class SimulatedDatabase:
    """An in-memory replica for the demo: a fixed lag, promotion flips its role."""

    lag_s: float = 2.0
    is_replica: bool = True
    clock: Clock = SYSTEM_CLOCK
    writes: list[str] = field(default_factory=list)
    kind: str = "simulated"

    def role(self) -> str:
        return "replica" if self.is_replica else "primary"

    def lag(self) -> LagReading:
        return LagReading(self.lag_s if self.is_replica else 0.0, self.clock(), "simulated")

    def promote(self, timeout_s: float) -> datetime:
        self.is_replica = False
        return self.clock()

    def probe_write(self, note: str) -> datetime | None:
        if self.is_replica:
            raise RuntimeError("cannot execute INSERT in a read-only transaction (simulated)")
        self.writes.append(note)
        return self.clock()


# --------------------------------------------------------------------------------------------
# The action
# --------------------------------------------------------------------------------------------

Databases = dict[str, Callable[[], DatabaseProvider]]


def lag_rule(reading: LagReading, target_s: float) -> RuleResult:
    """Pass while the replica's lag is known and within ``target_s`` (the RPO target)."""
    if reading.lag_s is None:
        return RuleResult(LAG_RULE, False, f"lag unknown ({reading.how}); RPO {target_s:g} s")
    return RuleResult(
        LAG_RULE,
        reading.lag_s <= target_s,
        f"replica lag {reading.lag_s:.1f} s (RPO target {target_s:g} s; {reading.how})",
    )


class PromoteDatabase(GuardedAction):
    """Promote a configured replica, refusing while it lags beyond the RPO target."""

    slug = "db.promote"
    title = "Promote the database replica"

    def __init__(
        self,
        databases: Databases,
        *,
        default_rpo_s: float = 300.0,
        promote_timeout_s: float = 60.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.databases = databases
        self.default_rpo_s = default_rpo_s
        self.promote_timeout_s = promote_timeout_s
        self.clock = clock
        self._cache: dict[str, DatabaseProvider] = {}

    def provider(self, name: str) -> DatabaseProvider:
        if name not in self.databases:
            known = ", ".join(sorted(self.databases)) or "none configured"
            raise InvalidParams(f"database: unknown target {name!r} (known: {known})")
        if name not in self._cache:
            self._cache[name] = self.databases[name]()
        return self._cache[name]

    def _params(self, params: dict[str, Any]) -> tuple[str, float]:
        name = str(params.get("database") or "")
        if not name:
            raise InvalidParams("database: give the database target to promote")
        try:
            target = float(params.get("rpo_target_s", self.default_rpo_s))
        except (TypeError, ValueError):
            raise InvalidParams("rpo_target_s: not a number") from None
        if target < 0:
            raise InvalidParams("rpo_target_s: must be ≥ 0")
        return name, target

    def propose(self, session: Session, params: dict[str, Any], environment: str) -> Proposal:
        name, target = self._params(params)
        db = self.provider(name)
        role = db.role()
        try:
            reading = db.lag() if role == "replica" else LagReading(None, self.clock(), role)
        except Exception as exc:
            reading = LagReading(None, self.clock(), f"lag read failed: {type(exc).__name__}")
        rules = [
            RuleResult(
                REPLICA_RULE,
                role == "replica",
                f"{name} is {'a replica' if role == 'replica' else role}",
                overridable=False,
            ),
            lag_rule(reading, target),
        ]
        return Proposal(
            target=f"db:{environment}/{name}",
            before={"database": name, "kind": db.kind, "role": role, "lag_s": reading.lag_s},
            after={"database": name, "kind": db.kind, "role": "primary"},
            rules=rules,
            state_token=state_token({"role": role}),
            preview={"lag": {"lag_s": reading.lag_s, "how": reading.how}, "rpo_target_s": target},
        )

    def current_token(self, session: Session, plan: PlanView) -> str:
        return state_token({"role": self.provider(str(plan.before["database"])).role()})

    def apply(self, session: Session, plan: PlanView, *, live: bool) -> ApplyOutcome:
        name, target = self._params(plan.params)
        db = self.provider(name)
        reading = db.lag()
        rule = lag_rule(reading, target)
        detail: dict[str, Any] = {
            "database": name,
            "lag_s": reading.lag_s,
            "lag_read_at": reading.read_at.isoformat(),
            "lag_how": reading.how,
            "rpo_target_s": target,
        }
        if not live:
            return ApplyOutcome(
                True, f"dry run: {name} would be promoted ({rule.reason})", detail=detail
            )
        overrides = session.scalar(
            select(ActionPlan.overrides).where(ActionPlan.plan_id == plan.plan_id)
        )
        if not rule.passed and LAG_RULE not in (overrides or []):
            return ApplyOutcome(
                False, f"blocked by {LAG_RULE} at promotion: {rule.reason}", None, detail
            )
        promoted = db.promote(self.promote_timeout_s)
        detail["promoted_at"] = promoted.isoformat()
        try:
            written = db.probe_write(f"quarterdeck promote {plan.plan_id}")
        except Exception as exc:
            detail["probe_error"] = f"{type(exc).__name__}: {exc}"
            return ApplyOutcome(
                True, f"{name} promoted but the probe write failed: {exc}", False, detail
            )
        detail["writable_at"] = written.isoformat() if written else None
        text = f"{name} promoted; " + (
            f"probe write committed at {written:%H:%M:%S} UTC" if written else "writes not probed"
        )
        return ApplyOutcome(True, text, True if written else None, detail)

    def verify(self, session: Session, plan: PlanView) -> bool | None:
        return self.provider(str(plan.before["database"])).role() == "primary"

    def rollback_params(self, plan: PlanView) -> dict[str, Any]:
        raise InvalidParams(
            "a promoted replica cannot be demoted by Quarterdeck: rebuild the old primary as a "
            "replica of the new one (pg_rewind or pg_basebackup; on RDS a new read replica)"
        )
