"""Evidence: build the sprint's signed evidence pack, hand out signed download links, and list
the packs built with who downloaded them.

Links are short-lived signed URLs issued for the signed-in user when asked for, so a link left
on screen expires rather than travelling. Building and linking need the `auditor` or `captain`
role (or admin), checked on the server by the permission table. Downloads themselves go through
`/evidence/packs/<id>/download` (rate limit, watermark headers, export events).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import dash
from dash import ALL, Input, Output, State, dcc, html, no_update
from dash import ctx as dash_ctx

from console import evidence_service as service
from console.callbacks import callback
from console.components import errors
from console.components.evidence import LINK_BUTTON, download_link, downloads_table, packs_table
from console.runtime import get_context
from console.shell import SPRINT_STORE
from evidence.pack import EvidenceError
from evidence.signing import SigningKeyError
from store.queries.egress import evidence_downloads_frame, evidence_packs_frame
from store.slo import SloConfigError

dash.register_page(
    __name__, path="/evidence", name="Evidence", title="Quarterdeck — Evidence", order=80
)

log = logging.getLogger(__name__)

BUILD = "evidence-build"
BUILD_RESULT = "evidence-build-result"
BUILT = "evidence-built"
PACKS = "evidence-packs"
LINK = "evidence-link"
REFRESH = "evidence-refresh"
REFRESH_MS = 15_000  # downloads happen outside the page; the list catches up on its own
DOWNLOAD_LINK = "evidence-download-link"
BUILD_PERMISSION = "evidence.build"  # roles: console.auth.permissions (auditor, captain, admin)
LINK_PERMISSION = "evidence.link"


def layout() -> html.Div:
    """Skeleton only; the callbacks fill it."""
    return html.Div(
        [
            html.H1("Evidence", className="qd-title"),
            html.P(
                "A pack holds the sprint's acceptance evidence (seed §8) as readable pages with "
                "their data, every file watermarked for its downloader, and MANIFEST.json signed "
                "with Ed25519. Check one with `quarterdeck evidence verify pack.zip`.",
                className="qd-muted",
            ),
            dcc.Store(id=BUILT),
            dcc.Interval(id=REFRESH, interval=REFRESH_MS),
            html.Button("Build evidence pack", id=BUILD, n_clicks=0),
            dcc.Loading(html.Div(id=BUILD_RESULT), type="dot"),
            html.Div(id=LINK),
            dcc.Loading(
                html.Div(html.P("Reading packs…", className="qd-muted"), id=PACKS),
                type="dot",
                delay_show=500,
            ),
        ],
        className="qd-page qd-page--evidence",
    )


@callback(
    Output(BUILD_RESULT, "children"),
    Output(BUILT, "data"),
    Input(BUILD, "n_clicks"),
    State(SPRINT_STORE, "data"),
    prevent_initial_call=True,
)
def build(_clicks: int, slug: str | None) -> tuple[Any, Any]:
    """Build and record a pack for the selected sprint, then offer a signed link to it."""
    ctx = get_context()
    user, refused = service.authorized_user(BUILD_PERMISSION)
    if user is None:
        return errors.refusal_panel(f"Refused: {refused}."), no_update
    try:
        pack = service.build_pack(ctx, slug or ctx.settings.default_sprint, user=user, render=False)
    except (SigningKeyError, EvidenceError) as exc:
        return errors.store_error_panel(str(exc)), no_update
    except SloConfigError as exc:
        return errors.config_error_panel(exc.problems), no_update
    except Exception as exc:
        log.exception("building an evidence pack failed")
        return errors.store_error_panel(errors.store_error_message("Building the pack", exc)), (
            no_update
        )
    url, exp = service.signed_download_url(ctx, pack.pack_id, user=user)
    demo = " with the public DEMO key" if pack.demo_key else ""
    return (
        html.Div(
            [
                html.P(
                    f"Built {pack.pack_id} for {pack.sprint}, signed by "
                    f"{pack.key_fingerprint}{demo}.",
                    id="evidence-built-message",
                ),
                download_link(
                    dash.get_relative_path(url),
                    datetime.fromtimestamp(exp, UTC),
                    link_id=DOWNLOAD_LINK,
                ),
            ]
        ),
        pack.pack_id,
    )


@callback(
    Output(PACKS, "children"),
    Input(SPRINT_STORE, "data"),
    Input(BUILT, "data"),
    Input(REFRESH, "n_intervals"),
)
def show_packs(_slug: str | None, _built: str | None, _tick: int | None = None) -> Any:
    """List packs and the latest downloads."""
    try:
        with get_context().session() as session:
            packs = evidence_packs_frame(session)
            downloads = evidence_downloads_frame(session)
    except Exception as exc:
        log.exception("evidence query failed")
        return errors.store_error_panel(errors.store_error_message("Reading packs", exc))
    return html.Div(
        [
            html.H2("Packs built", className="qd-h"),
            packs_table(packs),
            html.H2("Latest downloads", className="qd-h"),
            downloads_table(downloads),
        ]
    )


@callback(
    Output(LINK, "children"),
    Input({"type": LINK_BUTTON, "pack": ALL}, "n_clicks"),
    prevent_initial_call=True,
)
def issue_link(clicks: list[int | None]) -> Any:
    """Issue a signed download link for the pack whose button was clicked."""
    trigger = dash_ctx.triggered_id
    if not isinstance(trigger, dict) or not any(clicks):
        return no_update  # buttons appearing with a re-rendered list are not clicks
    ctx = get_context()
    user, refused = service.authorized_user(LINK_PERMISSION)
    if user is None:
        return errors.refusal_panel(f"Refused: {refused}.")
    pack_id = str(trigger["pack"])
    url, exp = service.signed_download_url(ctx, pack_id, user=user)
    return download_link(
        dash.get_relative_path(url),
        datetime.fromtimestamp(exp, UTC),
        link_id=f"{LINK}-anchor",
        label=f"Download {pack_id}",
    )
