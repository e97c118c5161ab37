"""OPA as a source: decision-log events (decision_logs plugin) and status reports (status plugin).

OPA retries every non-2xx upload forever and a refused chunk blocks the ones behind it, so the
loaders never fail a batch for a bad event: valid events are stored, invalid ones are
dead-lettered with their index and reason, and duplicates (OPA re-sends failed chunks) are
absorbed by the `decision_id` key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from collectors.base import InvalidItem, parse_optional_time, parse_time, require
from store.ingest import IngestResult, record_rejects, upsert
from store.models import OpaDecision, OpaStatusReport

SOURCE_LOGS = "opa.logs"
SOURCE_STATUS = "opa.status"
DRY_RUN_MODES = frozenset({"dry-run", "dryrun", "audit", "warn"})


@dataclass(frozen=True)
class DecisionOptions:
    """How to read decisions: which result field means "allow", which label is the environment."""

    result_field: str = "allow"
    environment_label: str = "environment"
    mode_label: str = "mode"


def _allowed(result: Any, field: str) -> bool | None:
    if isinstance(result, bool):
        return result
    if isinstance(result, dict):
        value = result.get(field)
        if isinstance(value, bool):
            return value
    return None


def transform_decision(
    event: Any, *, received_at: datetime, options: DecisionOptions
) -> dict[str, Any]:
    """Validate one decision event and map it to an `opa_decisions` row."""
    if not isinstance(event, dict):
        raise InvalidItem("event: expected a JSON object")
    decision_id = require(event, "decision_id", str)
    if not decision_id.strip() or len(decision_id) > 100:
        raise InvalidItem("decision_id: must be 1–100 characters")
    labels = require(event, "labels", dict)
    instance = require(labels, "id", str, where="labels")
    timestamp = parse_time(event.get("timestamp"), field="timestamp")
    path = event.get("path")
    if path is None and event.get("query"):
        path = "query"
    if not isinstance(path, str) or not path.strip("/"):
        raise InvalidItem("path: missing (and no query)")
    bundles = event.get("bundles") or {}
    if not isinstance(bundles, dict):
        raise InvalidItem("bundles: expected an object of {name: {revision}}")
    revisions = {
        name: (info or {}).get("revision")
        for name, info in bundles.items()
        if isinstance(info, dict)
    }
    result = event.get("result")
    mode = str(labels.get(options.mode_label, "")).lower()
    dry_run = mode in DRY_RUN_MODES or (isinstance(result, dict) and result.get("dry_run") is True)
    erased = event.get("erased") or []
    masked = event.get("masked") or []
    metrics = event.get("metrics") or {}
    return {
        "decision_id": decision_id,
        "timestamp": timestamp,
        "received_at": received_at,
        "instance_id": instance,
        "environment": labels.get(options.environment_label),
        "opa_version": labels.get("version"),
        "path": path.strip("/"),
        "allowed": _allowed(result, options.result_field),
        "dry_run": dry_run,
        "bundles": revisions,
        "erased": erased if isinstance(erased, list) else [],
        "masked": masked if isinstance(masked, list) else [],
        "input": event.get("input"),
        "result": result,
        "requested_by": event.get("requested_by"),
        "metrics": metrics if isinstance(metrics, dict) else {},
    }


def ingest_decisions(
    session: Session,
    events: Any,
    *,
    received_at: datetime,
    options: DecisionOptions | None = None,
) -> IngestResult:
    """Store a decoded decision-log chunk (a JSON array); invalid events are dead-lettered."""
    options = options or DecisionOptions()
    result = IngestResult()
    if not isinstance(events, list):
        result.rejected = record_rejects(
            session,
            source=SOURCE_LOGS,
            rejects=[(None, "body: expected a JSON array of decision events", events)],
            received_at=received_at,
        )
        result.reasons = ["body: expected a JSON array of decision events"]
        return result
    rows: list[dict[str, Any]] = []
    rejects: list[tuple[int | None, str, Any]] = []
    for index, event in enumerate(events):
        try:
            rows.append(transform_decision(event, received_at=received_at, options=options))
        except InvalidItem as exc:
            rejects.append((index, str(exc), event))
    result.add(upsert(session, OpaDecision, rows, conflict=("decision_id",)))
    if rejects:
        result.rejected = record_rejects(
            session, source=SOURCE_LOGS, rejects=rejects, received_at=received_at
        )
        result.reasons = [f"[{i}] {r}" for i, r, _ in rejects]
    return result


def transform_status(
    report: Any, *, received_at: datetime, environment_label: str = "environment"
) -> list[dict[str, Any]]:
    """Map one status-plugin report to one `opa_status_reports` row per bundle."""
    if not isinstance(report, dict):
        raise InvalidItem("status: expected a JSON object")
    labels = require(report, "labels", dict)
    instance = require(labels, "id", str, where="labels")
    bundles = report.get("bundles") or {}
    if not isinstance(bundles, dict):
        raise InvalidItem("bundles: expected an object keyed by bundle name")
    rows = []
    for name, info in bundles.items():
        if not isinstance(info, dict):
            raise InvalidItem(f"bundles.{name}: expected an object")
        errors = info.get("errors") or []
        message = info.get("message") or ("; ".join(map(str, errors)) if errors else None)
        rows.append(
            {
                "instance_id": instance,
                "environment": labels.get(environment_label),
                "bundle": str(info.get("name") or name),
                "active_revision": info.get("active_revision") or None,
                "last_successful_activation": parse_optional_time(
                    info.get("last_successful_activation"),
                    field=f"bundles.{name}.last_successful_activation",
                ),
                "code": info.get("code") or None,
                "message": message,
                "reported_at": received_at,
            }
        )
    return rows


def ingest_status(session: Session, report: Any, *, received_at: datetime) -> IngestResult:
    """Store one status report (history is kept: drift over time stays visible)."""
    result = IngestResult()
    try:
        rows = transform_status(report, received_at=received_at)
    except InvalidItem as exc:
        result.rejected = record_rejects(
            session,
            source=SOURCE_STATUS,
            rejects=[(None, str(exc), report)],
            received_at=received_at,
        )
        result.reasons = [str(exc)]
        return result
    result.add(
        upsert(session, OpaStatusReport, rows, conflict=("instance_id", "bundle", "reported_at"))
    )
    return result
