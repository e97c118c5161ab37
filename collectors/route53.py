"""Route53 as a source: weighted record sets of configured names, and health-check observations.

Snapshot semantics: each poll records every weighted set it sees; a set seen before but absent
now is recorded once as `gone`, so a deleted record never silently keeps its old weight.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from collectors.base import InvalidItem, parse_time
from store.ingest import IngestResult, upsert
from store.models import DnsWeightObservation, HealthCheckObservation

SOURCE = "route53"


def _name(value: str) -> str:
    return value.rstrip(".").lower() + "."


def transform_record_sets(
    response: dict[str, Any], *, zone_id: str, names: list[str], observed_at: datetime
) -> list[dict[str, Any]]:
    """Map a `ListResourceRecordSets` page to rows for the weighted sets of ``names``."""
    wanted = {_name(n) for n in names}
    rows = []
    for record in response.get("ResourceRecordSets") or []:
        name = _name(str(record.get("Name", "")))
        if name not in wanted or "Weight" not in record:
            continue
        if "SetIdentifier" not in record:
            raise InvalidItem(f"{name}: weighted record without SetIdentifier")
        rows.append(
            {
                "zone_id": zone_id,
                "record_name": name,
                "record_type": str(record.get("Type")),
                "set_identifier": str(record["SetIdentifier"]),
                "weight": int(record["Weight"]),
                "ttl": record.get("TTL"),
                "health_check_id": record.get("HealthCheckId"),
                "gone": False,
                "observed_at": observed_at,
            }
        )
    return rows


def load_record_sets(
    session: Session,
    rows: list[dict[str, Any]],
    *,
    zone_id: str,
    names: list[str],
    observed_at: datetime,
) -> IngestResult:
    """Store one snapshot; sets that were present at the last poll and are missing now → gone."""
    result = IngestResult()
    seen = {(r["record_name"], r["record_type"], r["set_identifier"]) for r in rows}
    latest = (
        select(
            DnsWeightObservation.record_name,
            DnsWeightObservation.record_type,
            DnsWeightObservation.set_identifier,
            func.max(DnsWeightObservation.observed_at).label("at"),
        )
        .where(DnsWeightObservation.record_name.in_([_name(n) for n in names]))
        .where(DnsWeightObservation.observed_at < observed_at)
        .group_by(
            DnsWeightObservation.record_name,
            DnsWeightObservation.record_type,
            DnsWeightObservation.set_identifier,
        )
        .subquery()
    )
    previous = session.execute(
        select(DnsWeightObservation).join(
            latest,
            (DnsWeightObservation.record_name == latest.c.record_name)
            & (DnsWeightObservation.record_type == latest.c.record_type)
            & (DnsWeightObservation.set_identifier == latest.c.set_identifier)
            & (DnsWeightObservation.observed_at == latest.c.at),
        )
    ).scalars()
    gone = [
        {
            "zone_id": zone_id,
            "record_name": p.record_name,
            "record_type": p.record_type,
            "set_identifier": p.set_identifier,
            "weight": 0,
            "ttl": p.ttl,
            "health_check_id": p.health_check_id,
            "gone": True,
            "observed_at": observed_at,
        }
        for p in previous
        if not p.gone and (p.record_name, p.record_type, p.set_identifier) not in seen
    ]
    result.add(
        upsert(
            session,
            DnsWeightObservation,
            rows + gone,
            conflict=("record_name", "record_type", "set_identifier", "observed_at"),
        )
    )
    return result


def transform_health_check_status(
    response: dict[str, Any], *, health_check_id: str
) -> list[dict[str, Any]]:
    """Map `GetHealthCheckStatus` observations to rows (`Success…` status text = healthy)."""
    rows = []
    for obs in response.get("HealthCheckObservations") or []:
        report = obs.get("StatusReport") or {}
        status = str(report.get("Status", ""))
        rows.append(
            {
                "health_check_id": health_check_id,
                "checker_region": str(obs.get("Region") or obs.get("IPAddress") or "?"),
                "healthy": status.lower().startswith("success"),
                "status": status[:1000],
                "checked_at": parse_time(report.get("CheckedTime"), field="CheckedTime"),
            }
        )
    return rows


def load_health_checks(session: Session, rows: list[dict[str, Any]]) -> IngestResult:
    """Upsert health-check observations."""
    result = IngestResult()
    result.add(
        upsert(
            session,
            HealthCheckObservation,
            rows,
            conflict=("health_check_id", "checker_region", "checked_at"),
        )
    )
    return result
