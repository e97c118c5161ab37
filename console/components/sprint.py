"""Pure builders for the Sprint page: backlog per epic and week, DoR, risks, calendar, and the rows
view behind any goal or gate check. Everything takes evaluated results; nothing reads the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from dash import dcc, html

from console.components.goals import format_value, status_badge
from console.components.html_attrs import aria_attrs, data_attrs
from store.goals import CheckResult, Sprint
from store.queries.rows import RowsPage

GOOD = ("met", "at_risk")


def item_state(checks: Sequence[CheckResult], prs: Sequence[Mapping[str, Any]]) -> str:
    """done = every proving check met (or, with none, a merged PR); in progress = a PR or a
    check with data; else not started."""
    if checks and all(c.status in GOOD for c in checks):
        return "done"
    if not checks and any(p["state"] == "merged" for p in prs):
        return "done"
    if prs or any(c.status != "no_data" for c in checks):
        return "in progress"
    return "not started"


def _table(head: list[str], rows: list[Any], css: str) -> html.Div:
    return html.Div(
        html.Table(
            [html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)],
            className=f"qd-table {css}",
        ),
        className="qd-table-wrap",
    )


def _check_links(ids: Sequence[str], results: Mapping[str, CheckResult]) -> list[Any]:
    out: list[Any] = []
    for ref in ids:
        r = results.get(ref)
        if r is None:
            continue
        out += [status_badge(r.status), " ", dcc.Link(r.title, href=r.rows_view or "#"), html.Br()]
    return out or ["—"]


def backlog_section(
    sprint: Sprint, results: Mapping[str, CheckResult], prs: Mapping[str, list[dict[str, Any]]]
) -> html.Section:
    """Progress per epic and per week, then every item with its tracking, PRs and checks."""
    states = {
        b.id: item_state([results[c] for c in b.checks if c in results], prs.get(b.id, []))
        for b in sprint.backlog
    }
    epic_rows = []
    for epic in sprint.epics:
        items = [b for b in sprint.backlog if b.epic == epic.id]
        done = sum(1 for b in items if states[b.id] == "done")
        epic_rows.append(
            html.Tr(
                [
                    html.Th(f"{epic.id} — {epic.title}", scope="row"),
                    html.Td(f"{done} / {len(items)}"),
                ],
                **data_attrs(epic=epic.id),
            )
        )
    week_rows = []
    for week in sprint.calendar.weeks if sprint.calendar else []:
        done = sum(1 for i in week.scope if states.get(i) == "done")
        week_rows.append(
            html.Tr(
                [html.Th(f"Week {week.week}", scope="row"), html.Td(f"{done} / {len(week.scope)}")]
            )
        )
    item_rows = []
    for b in sprint.backlog:
        links = [
            html.A(f"#{p['number']} ({p['state']})", href=p["url"] or "#", target="_blank")
            for p in prs.get(b.id, [])
        ]
        item_rows.append(
            html.Tr(
                [
                    html.Th(b.id, scope="row"),
                    html.Td(b.title),
                    html.Td(b.epic),
                    html.Td(b.owner),
                    html.Td(f"week {b.week}"),
                    html.Td(b.issue or f"label {b.label}" if (b.issue or b.label) else "—"),
                    html.Td(links or "no PR names it yet"),
                    html.Td(_check_links(b.checks, results)),
                    html.Td(states[b.id], className=f"qd-item--{states[b.id].replace(' ', '-')}"),
                ],
                **data_attrs(item=b.id, state=states[b.id]),
            )
        )
    return html.Section(
        [
            html.H2(
                f"Backlog ({len(sprint.backlog)} items, {len(sprint.epics)} epics)",
                className="qd-h2",
            ),
            _table(["Epic", "Done"], epic_rows, "qd-epics"),
            _table(["Week", "Done"], week_rows, "qd-weeks"),
            _table(
                ["Item", "Title", "Epic", "Owner", "Week", "Tracked by", "PRs", "Checks", "State"],
                item_rows,
                "qd-backlog",
            ),
            html.P(
                "State: done when every proving check is met (or, without checks, a PR naming "
                "the item merged); PRs are those whose title names the item id.",
                className="qd-muted",
            ),
        ],
        className="qd-section",
        **data_attrs(section="backlog"),
    )


def dor_section(sprint: Sprint, results: Mapping[str, CheckResult]) -> html.Section:
    rows = []
    for item in sprint.definition_of_ready:
        if item.kind == "automatic" and item.check:
            r = results.get(item.check)
            how: list[Any] = _check_links([item.check], results)
            ticked = r is not None and r.status in GOOD
        else:
            ticked = item.ticked_by is not None
            how = [f"ticked by {item.ticked_by} on {item.ticked_on}" if ticked else "not ticked"]
        rows.append(
            html.Tr(
                [
                    html.Td(
                        "☑" if ticked else "☐",
                        **aria_attrs(label="ready" if ticked else "not ready"),
                    ),
                    html.Td(item.text),
                    html.Td(item.kind),
                    html.Td(how),
                ],
                **data_attrs(kind=item.kind, ready=str(ticked).lower()),
            )
        )
    return html.Section(
        [
            html.H2("Definition of Ready", className="qd-h2"),
            _table(["", "Item", "Kind", "How"], rows, "qd-dor"),
        ],
        className="qd-section",
        **data_attrs(section="dor"),
    )


def risks_section(sprint: Sprint, results: Mapping[str, CheckResult]) -> html.Section:
    rows = []
    for risk in sprint.risks:
        watched = [results[c] for c in risk.watch if c in results]
        working = (
            "working"
            if watched and all(c.status in GOOD for c in watched)
            else ("no data" if all(c.status == "no_data" for c in watched) else "not working")
        )
        rows.append(
            html.Tr(
                [
                    html.Th(risk.risk, scope="row"),
                    html.Td(risk.prob),
                    html.Td(risk.impact),
                    html.Td(risk.mitigation),
                    html.Td(risk.owner),
                    html.Td(_check_links(risk.watch, results)),
                    html.Td(working),
                ],
                **data_attrs(risk=risk.id, mitigation=working.replace(" ", "-")),
            )
        )
    return html.Section(
        [
            html.H2("Risk register", className="qd-h2"),
            _table(
                ["Risk", "Prob", "Impact", "Mitigation", "Owner", "Watched by", "Mitigation"],
                rows,
                "qd-risks",
            ),
        ],
        className="qd-section",
        **data_attrs(section="risks"),
    )


def calendar_section(sprint: Sprint, today: date) -> html.Section:
    cal = sprint.calendar
    if cal is None:
        return html.Section(html.P("This sprint has no calendar.", className="qd-muted"))
    days = (cal.release_cut - today).days
    low, high = cal.canary_soak_hours
    cut = (
        f"{days} day(s) to the release cut ({cal.release_cut})"
        if days >= 0
        else f"release cut {cal.release_cut} was {-days} day(s) ago"
    )
    weeks = [
        html.Li(
            f"Week {w.week} ({w.start} → {w.end}): " + ", ".join(w.scope),
            className="qd-week-current" if w.start <= today <= w.end else "",
        )
        for w in cal.weeks
    ]
    return html.Section(
        [
            html.H2("Calendar", className="qd-h2"),
            html.P(cut, **data_attrs(figure="days-to-cut")),
            html.P(f"Canary soak after the cut: {low}–{high} h; rollback {cal.rollback or '—'}."),
            html.Ul(weeks),
        ],
        className="qd-section",
        **data_attrs(section="calendar"),
    )


def _cell(column: str, value: Any) -> Any:
    if value is None:
        return "—"
    if column == "source_url" and isinstance(value, str):
        return (
            html.A("source", href=value, target="_blank")
            if value.startswith("http")
            else dcc.Link("source", href=value)
        )
    if isinstance(value, float) and column.endswith("_s"):
        return format_value(value / 60, "min")
    return str(value)


def rows_view(result: CheckResult, page: RowsPage, *, api_url: str) -> html.Section:
    """The rows behind one number: status and samples as on the Overview, then the rows."""
    columns = [c for c in page.columns if c not in ("pr_url",)]
    body = [
        html.Tr([html.Td(_cell(c, row.get(c))) for c in columns], className="qd-row")
        for row in page.rows
    ]
    shown = f"{page.offset + 1}–{page.offset + len(page.rows)}" if page.rows else "0"
    return html.Section(
        [
            html.H2(["Rows behind: ", result.title], className="qd-h2"),
            html.P(
                [
                    status_badge(result.status),
                    f" {format_value(result.value, result.unit)} · {result.samples:,} samples · "
                    f"{page.total:,} rows (showing {shown}) · ",
                    html.A("JSON", href=api_url),
                ],
                **data_attrs(samples=str(result.samples), total=str(page.total)),
            ),
            html.P(page.note, className="qd-muted"),
            _table(columns, body, "qd-rows"),
        ],
        className="qd-section",
        **data_attrs(section="rows", check=result.id),
    )
