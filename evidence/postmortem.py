"""The postmortem generator (IX-1303): a Markdown postmortem from what the store knows.

It fills the postmortem template with the incident, the unified timeline of its window (deploys,
weight flips, bundle pins, failover phases, burn alerts, guarded actions), the error budget the
incident consumed per SLO of the service, and action items; optionally opens a GitHub issue
labelled `incident,postmortem` (as the seed's bot does) through the REST API; and records the
postmortem, which feeds the "≥ 1 postmortem generated" goal.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import requests
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.ingest import upsert
from store.metrics import Window
from store.models import Incident, Postmortem, SloSample
from store.queries.reliability import timeline_frame, window_sums
from store.slo import SloDefinition

log = logging.getLogger(__name__)

CONTEXT_BEFORE = timedelta(hours=1)
CONTEXT_AFTER = timedelta(minutes=30)
LABELS = ("incident", "postmortem")


class PostmortemError(ValueError):
    """A postmortem cannot be generated or its issue cannot be opened; says why."""


@dataclass(frozen=True)
class BudgetUse:
    """Error budget an incident consumed of one SLO's window budget."""

    service: str
    slo: str
    bad_events: float
    consumed: float | None  # fraction of the SLO window's budget


def budget_consumed(session: Session, slo: SloDefinition, window: Window) -> BudgetUse:
    """Bad events inside ``window`` over the budget of the SLO window ending at its end."""
    bad = session.scalar(
        select(func.coalesce(func.sum(SloSample.total - SloSample.good), 0.0)).where(
            SloSample.service == slo.service,
            SloSample.slo == slo.slo,
            SloSample.ts > window.start,
            SloSample.ts <= window.end,
        )
    )
    _, sums = window_sums(session, slo, as_of=window.end)
    total = sums[slo.window_delta][1]
    allowed = total * slo.budget
    return BudgetUse(
        slo.service, slo.slo, float(bad or 0), float(bad or 0) / allowed if allowed else None
    )


def _when(at: Any) -> str:
    return pd.Timestamp(at).tz_convert(UTC).strftime("%Y-%m-%d %H:%M UTC")


def render_markdown(
    incident: Incident,
    *,
    timeline: pd.DataFrame,
    budgets: Sequence[BudgetUse],
    action_items: Sequence[str],
    generated_by: str,
    generated_at: datetime,
) -> str:
    """Fill the postmortem template (blameless, seed IX-1303) for ``incident``."""
    end = incident.resolved_at
    duration = (
        f"{(end - incident.started_at).total_seconds() / 60:.0f} minutes" if end else "ongoing"
    )
    lines = [
        f"## Postmortem: {incident.incident_key} — {incident.title}",
        "",
        f"- **Severity:** {incident.severity}",
        f"- **Service:** {incident.service or 'unknown'}",
        f"- **Window:** {_when(incident.started_at)} → "
        f"{_when(end) if end else 'not resolved'} ({duration})",
        f"- **Generated:** {_when(generated_at)} by {generated_by} (Quarterdeck)",
        "",
        "### Summary",
        incident.summary or "_To be written by the incident owner._",
        "",
        "### Impact and error budget",
    ]
    if budgets:
        for use in budgets:
            share = "unknown (no SLO samples)" if use.consumed is None else f"{use.consumed:.1%}"
            lines.append(
                f"- `{use.service}/{use.slo}`: {use.bad_events:,.0f} bad events, "
                f"{share} of the window's error budget consumed"
            )
    else:
        lines.append("- No SLO is defined for this service; budget impact not computed.")
    lines += ["", "### Timeline (from the store)"]
    if timeline.empty:
        lines.append("- No stored events in the incident window.")
    for row in timeline.to_dict("records"):
        lines.append(f"- {_when(row['at'])} — **{row['kind']}** {row['subject']}: {row['detail']}")
    lines += [
        "",
        "### Root cause",
        "_To be written: what failed, and why the safeguards did not stop it._",
        "",
        "### What went well / what went badly",
        "_To be written._",
        "",
        "### Action items",
    ]
    if action_items:
        lines += [f"- [ ] {item}" for item in action_items]
    else:
        lines.append("- [ ] Agree action items with owners and due dates")
    return "\n".join(lines) + "\n"


def open_github_issue(
    *,
    api_url: str,
    repo: str,
    token: str,
    title: str,
    body: str,
    labels: Sequence[str] = LABELS,
    http: requests.Session | None = None,
    timeout_s: float = 15.0,
) -> str:
    """Create an issue via `POST /repos/{owner}/{repo}/issues`; return its `html_url`."""
    client = http or requests.Session()
    try:
        response = client.post(
            f"{api_url.rstrip('/')}/repos/{repo}/issues",
            json={"title": title, "body": body, "labels": list(labels)},
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            },
            timeout=timeout_s,
        )
    except requests.RequestException as exc:
        raise PostmortemError(f"GitHub unreachable at {api_url}: {exc}") from exc
    if response.status_code != 201:
        message = ""
        try:
            message = str(response.json().get("message", ""))
        except ValueError:
            message = response.text[:200]
        raise PostmortemError(
            f"GitHub refused the issue in {repo}: HTTP {response.status_code} {message}".strip()
        )
    url = response.json().get("html_url")
    if not isinstance(url, str):
        raise PostmortemError("GitHub answered without an html_url")
    return url


@dataclass(frozen=True)
class GeneratedPostmortem:
    incident_key: str
    generated_at: datetime
    issue_url: str | None
    markdown: str


def generate_postmortem(
    session: Session,
    incident_key: str,
    *,
    slos: Sequence[SloDefinition],
    generated_by: str,
    action_items: Sequence[str] = (),
    now: datetime,
    github: dict[str, str] | None = None,
) -> GeneratedPostmortem:
    """Render, optionally file (``github``: api_url, repo, token) and record a postmortem."""
    incident = session.scalars(
        select(Incident).where(Incident.incident_key == incident_key.upper())
    ).first()
    if incident is None:
        raise PostmortemError(f"no incident {incident_key!r}")
    end = incident.resolved_at or now
    window = Window(
        incident.started_at - CONTEXT_BEFORE, max(end, incident.started_at) + CONTEXT_AFTER
    )
    service_slos = [s for s in slos if s.service == incident.service]
    timeline = timeline_frame(session, window=window, slos=service_slos)
    impact = Window(incident.started_at, max(end, incident.started_at + timedelta(minutes=1)))
    budgets = [budget_consumed(session, slo, impact) for slo in service_slos]
    items = [i.strip() for i in action_items if i.strip()]
    markdown = render_markdown(
        incident,
        timeline=timeline,
        budgets=budgets,
        action_items=items,
        generated_by=generated_by,
        generated_at=now,
    )
    issue_url = None
    if github:
        issue_url = open_github_issue(
            api_url=github["api_url"],
            repo=github["repo"],
            token=github["token"],
            title=f"Postmortem: {incident.incident_key}",
            body=markdown,
        )
    upsert(
        session,
        Postmortem,
        [
            {
                "incident_key": incident.incident_key,
                "generated_at": now,
                "generated_by": generated_by,
                "issue_url": issue_url,
                "action_items": [{"text": i, "done": False} for i in items],
                "body_markdown": markdown,
            }
        ],
        conflict=("incident_key", "generated_at"),
    )
    return GeneratedPostmortem(incident.incident_key, now, issue_url, markdown)
