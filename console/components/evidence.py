"""Pure builders for the Evidence page: packs built (with who downloaded them) and downloads."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import pandas as pd
from dash import html

from console.components.html_attrs import data_attrs

LINK_BUTTON = "evidence-get-link"


def _when(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return "—"
    at = value if isinstance(value, datetime) else pd.Timestamp(value).to_pydatetime()
    return at.strftime("%Y-%m-%d %H:%M:%S")


def _table(headers: list[str], rows: list[Any], class_name: str) -> html.Table:
    return html.Table(
        [html.Thead(html.Tr([html.Th(h) for h in headers])), html.Tbody(rows)],
        className=f"qd-table {class_name}",
    )


def packs_table(packs: pd.DataFrame) -> html.Table | html.P:
    """Packs built, newest first (columns of `evidence_packs_frame`), each with a link button."""
    if packs.empty:
        return html.P("No evidence pack has been built yet.", className="qd-empty")
    rows = [
        html.Tr(
            [
                html.Th(str(r["pack_id"]), scope="row", className="qd-mono"),
                html.Td(str(r["sprint"])),
                html.Td(_when(r["built_at"]), className="qd-mono"),
                html.Td(str(r["built_by"])),
                html.Td(str(r["key_fingerprint"]), className="qd-mono"),
                html.Td(str(int(r["downloads"])), className="qd-num"),
                html.Td(str(int(r["refused"])), className="qd-num"),
                html.Td(str(r["downloaded_by"]) or "nobody yet"),
                html.Td(
                    html.Button(
                        "Get download link",
                        id={"type": LINK_BUTTON, "pack": str(r["pack_id"])},
                        n_clicks=0,
                    )
                ),
            ],
            **data_attrs(pack=str(r["pack_id"])),
        )
        for r in packs.to_dict("records")
    ]
    headers = [
        "Pack",
        "Sprint",
        "Built (UTC)",
        "Built by",
        "Signing key",
        "Downloads",
        "Refused",
        "Downloaded by",
        "",
    ]
    return _table(headers, rows, "evidence-packs")


def downloads_table(downloads: pd.DataFrame) -> html.Table | html.P:
    """The latest download attempts (columns of `evidence_downloads_frame`)."""
    if downloads.empty:
        return html.P("No downloads yet.", className="qd-empty")
    rows = [
        html.Tr(
            [
                html.Td(_when(r["ts"]), className="qd-mono"),
                html.Td(str(r["route"]).split("/")[3], className="qd-mono"),
                html.Td(str(r["user"] or "—")),
                html.Td(str(int(r["status"])), className="qd-num"),
                html.Td(str(r["export_id"] or "—"), className="qd-mono"),
                html.Td(f"{int(r['bytes'] or 0):,}", className="qd-num"),
            ]
        )
        for r in downloads.to_dict("records")
    ]
    headers = ["When (UTC)", "Pack", "User", "Status", "Export id", "Bytes"]
    return _table(headers, rows, "evidence-downloads")


def download_link(
    url: str, expires_at: datetime, *, link_id: str, label: str = "Download pack"
) -> html.Div:
    """A signed download link and when it stops working."""
    return html.Div(
        [
            html.A(label, href=url, id=link_id, className="qd-area-link"),
            html.Span(
                f" — signed link for you, valid until {expires_at:%H:%M:%S} UTC",
                className="qd-muted",
            ),
        ]
    )
