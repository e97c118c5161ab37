"""Alertmanager into incidents: the byte-exact webhook captures of a real Alertmanager 0.25
(captures/alertmanager), and the whole path live — generated rules checked
by `promtool`, loaded into a real Prometheus 2.42 whose synthetic counters make FastBurn fire,
delivered by a real Alertmanager to the console as an open incident, then resolved."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import pytest
import requests
import yaml
from sqlalchemy import func, select

from console.app import create_app
from console.context import AppContext
from console.http.reliability import make_blueprint
from store.metrics import Window
from store.migrate import upgrade
from store.models import Incident
from store.models.reliability import IncidentAlert
from store.queries.reliability import incidents_with_alerts, timeline_frame
from store.slo import dump_yaml, load_slos, rule_groups
from tests.collectors.test_sli_live import gateway_slo, start_slo_peer
from tests.conftest import CAPTURES, free_port, make_settings, peer_missing
from tests.console.test_egress_http import serve
from tests.peers_traffic import wait_until

AM_CAPTURES = CAPTURES / "alertmanager"
TOKEN = "am-test-webhook-token-not-secret"  # the token of the captured http_config


@pytest.fixture
def am_ctx(tmp_path: Path) -> Iterator[AppContext]:
    gateway_slo(tmp_path / "slos")
    ctx = AppContext.from_settings(
        make_settings(
            tmp_path,
            exports={"incidents_token": TOKEN, "slos_dir": str(tmp_path / "slos")},
        )
    )
    upgrade(ctx.engine)
    yield ctx
    ctx.engine.dispose()


@pytest.fixture
def client(am_ctx: AppContext) -> flask.testing.FlaskClient:
    app = flask.Flask(__name__)
    app.register_blueprint(make_blueprint(am_ctx))
    return app.test_client()


def capture(run: str, name: str) -> tuple[bytes, dict[str, str]]:
    body = (AM_CAPTURES / run / f"{name}.body.json").read_bytes()
    request = json.loads((AM_CAPTURES / run / f"{name}.request.json").read_text())
    headers = {k: v for k, v in request["headers"] if k in ("Authorization", "Content-Type")}
    return body, headers


def post(client: Any, run: str, name: str, path: str = "/ingest/alertmanager") -> Any:
    body, headers = capture(run, name)
    return client.post(path, data=body, headers=headers)


def incidents(ctx: AppContext, status: str | None = None) -> list[dict[str, Any]]:
    with ctx.session() as session:
        return incidents_with_alerts(session, status=status)


def test_grouped_capture_opens_one_incident_with_both_alerts_and_resolution_closes_it(
    client, am_ctx
) -> None:
    firing = post(client, "grouped", "webhook-01-firing-service-gateway")
    opened = incidents(am_ctx, "open")
    resolved = post(client, "grouped", "webhook-02-resolved-service-gateway")
    closed = incidents(am_ctx, "resolved")
    again = [
        post(client, "grouped", "webhook-01-firing-service-gateway"),
        post(client, "grouped", "webhook-02-resolved-service-gateway"),
    ]

    assert (firing.status_code, firing.json["stored"], firing.json["rejected"]) == (200, 2, 0)
    assert len(opened) == 1
    assert opened[0]["service"] == "gateway"
    assert opened[0]["severity"] == "sev2"  # the worst alert is severity=page
    assert opened[0]["alert_group"] == '{}:{service="gateway"}'
    assert [(a["alertname"], a["fingerprint"], a["ends_at"]) for a in opened[0]["alerts"]] == [
        ("FastBurn", "75b98985db88100d", None),
        ("SlowBurn", "d81e00de9e385ced", None),
    ]
    assert (resolved.status_code, resolved.json["stored"]) == (200, 2)
    assert incidents(am_ctx, "open") == []
    assert [i["incident_key"] for i in closed] == [opened[0]["incident_key"]]
    resolved_body = json.loads(capture("grouped", "webhook-02-resolved-service-gateway")[0])
    last_end = max(a["endsAt"] for a in resolved_body["alerts"])  # 2026-12-01T15:59:39.984Z
    assert closed[0]["resolved_at"] == last_end.replace("Z", "000Z")
    assert [(r.status_code, r.json["stored"], r.json["duplicates"]) for r in again] == [
        (200, 0, 2),
        (200, 0, 2),
    ]
    assert incidents(am_ctx) == closed  # a re-delivery changes nothing


def test_per_alertname_captures_make_one_incident_per_group(client, am_ctx) -> None:
    names = [
        "webhook-01-firing-SlowBurn",
        "webhook-02-firing-FastBurn",
        "webhook-03-resolved-SlowBurn",
        "webhook-04-resolved-FastBurn",
    ]
    answers = [post(client, "per-alertname", n) for n in names[:2]]
    opened = incidents(am_ctx, "open")
    answers += [post(client, "per-alertname", n) for n in names[2:]]

    assert [(a.status_code, a.json["stored"]) for a in answers] == [(200, 1)] * 4
    assert sorted(i["alerts"][0]["alertname"] for i in opened) == ["FastBurn", "SlowBurn"]
    assert {i["severity"] for i in opened} == {"sev2", "sev3"}
    assert incidents(am_ctx, "open") == []
    assert len(incidents(am_ctx, "resolved")) == 2
    with am_ctx.session() as session:
        first = min(i["started_at"] for i in opened)
        from datetime import datetime, timedelta

        start = datetime.fromisoformat(first.replace("Z", "+00:00"))
        timeline = timeline_frame(
            session, window=Window(start - timedelta(minutes=1), start + timedelta(hours=1))
        )
    alert_rows = timeline[timeline["kind"] == "alert"]
    assert len(alert_rows) == 4  # two firing, two resolved, in the incident timeline
    assert alert_rows["detail"].str.contains("FastBurn").sum() == 2


def test_bad_alerts_are_dead_lettered_the_rest_stored_and_bad_bodies_refused(
    client, am_ctx
) -> None:
    body = json.loads(capture("grouped", "webhook-01-firing-service-gateway")[0])
    body["alerts"][1].pop("fingerprint")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    mixed = client.post("/ingest/alertmanager", json=body, headers=headers)
    not_webhook = client.post("/ingest/alertmanager", data=b"[1, 2]", headers=headers)
    v3 = client.post("/ingest/alertmanager", json={**body, "version": "3"}, headers=headers)

    assert (mixed.status_code, mixed.json["stored"], mixed.json["rejected"]) == (200, 1, 1)
    assert mixed.json["rejects"] == ["alert 2: fingerprint: missing or not a str"] or (
        mixed.json["rejects"][0].startswith("alert 2: fingerprint")
    )
    assert not_webhook.status_code == 400
    assert v3.status_code == 400 and "version" in v3.json["error"]


def test_credentials_bearer_or_basic_and_the_incidents_receiver_reads_webhooks(
    client, am_ctx
) -> None:
    body, _ = capture("grouped", "webhook-01-firing-service-gateway")
    basic = base64.b64encode(f"alertmanager:{TOKEN}".encode()).decode()
    wrong = base64.b64encode(b"alertmanager:nope").decode()
    answers = {
        "none": client.post("/ingest/alertmanager", data=body),
        "wrong bearer": client.post(
            "/ingest/alertmanager", data=body, headers={"Authorization": "Bearer nope"}
        ),
        "wrong basic": client.post(
            "/ingest/alertmanager", data=body, headers={"Authorization": f"Basic {wrong}"}
        ),
        "basic": client.post(
            "/ingest/alertmanager", data=body, headers={"Authorization": f"Basic {basic}"}
        ),
    }
    via_incidents = post(
        client, "grouped", "webhook-01-firing-service-gateway", "/ingest/incidents"
    )

    assert {k: r.status_code for k, r in answers.items()} == {
        "none": 401,
        "wrong bearer": 401,
        "wrong basic": 401,
        "basic": 200,
    }
    assert answers["basic"].json["stored"] == 2
    assert (via_incidents.status_code, via_incidents.json["duplicates"]) == (200, 2)


def test_api_incidents_lists_by_status(am_ctx, client) -> None:
    post(client, "grouped", "webhook-01-firing-service-gateway")
    opened = client.get("/api/incidents?status=open")
    resolved = client.get("/api/incidents?status=resolved")
    bad = client.get("/api/incidents?status=maybe")

    assert opened.status_code == 200
    assert [len(i["alerts"]) for i in opened.json["incidents"]] == [2]
    assert resolved.json["incidents"] == []
    assert bad.status_code == 400


# --------------------------------------------------------------------------------------------
# live: promtool, Prometheus, Alertmanager, console
# --------------------------------------------------------------------------------------------


def test_generated_rules_pass_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        peer_missing("Debian `prometheus` (promtool) is not installed")
    slos = load_slos(Path(__file__).resolve().parents[2] / "data/slos")
    path = tmp_path / "rules.yml"
    path.write_text(dump_yaml(rule_groups(slos, console_url="http://console.example.invalid")))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)

    assert done.returncode == 0, done.stdout + done.stderr
    # per SLO: error ratio + traffic over 6 windows, budget left, FastBurn, SlowBurn
    assert f"SUCCESS: {len(slos) * 15} rules found" in done.stdout


def _alertmanager(work: Path, webhook: str) -> Iterator[str]:
    binary = shutil.which("prometheus-alertmanager")
    if binary is None:
        peer_missing("Debian `prometheus-alertmanager` is not installed")
    config = {
        "route": {
            "receiver": "quarterdeck",
            "group_by": ["alertname", "service"],
            "group_wait": "1s",
            "group_interval": "2s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "quarterdeck",
                "webhook_configs": [
                    {
                        "url": webhook,
                        "send_resolved": True,
                        "http_config": {"authorization": {"type": "Bearer", "credentials": TOKEN}},
                    }
                ],
            }
        ],
    }
    (work / "alertmanager.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(work / "alertmanager.log", "w")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={work / 'alertmanager.yml'}",
            f"--storage.path={work / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/-/ready", timeout=2).ok, "am")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def test_fast_burn_fires_in_prometheus_reaches_the_console_and_resolves(
    am_ctx: AppContext, tmp_path: Path
) -> None:
    from contextlib import contextmanager

    slo = load_slos(tmp_path / "slos")[0]
    rules = dump_yaml(rule_groups([slo], console_url="http://console.example.invalid"))
    with (
        serve(create_app(am_ctx).server) as console,
        contextmanager(_alertmanager)(tmp_path, f"{console}/ingest/alertmanager") as am,
        start_slo_peer(tmp_path, rules=rules, alertmanager=am) as prom,
    ):

        def fast_burn_incident() -> list[dict[str, Any]]:
            found = [
                i
                for i in incidents(am_ctx, "open")
                if any(a["alertname"] == "FastBurn" for a in i["alerts"])
            ]
            return found

        wait_until(fast_burn_incident, "FastBurn incident from Alertmanager", timeout_s=90)
        opened = fast_burn_incident()[0]
        fast = next(a for a in opened["alerts"] if a["alertname"] == "FastBurn")
        # Stop evaluating the rules: Prometheus stops re-sending, Alertmanager resolves the
        # alert at its endsAt and sends the resolved notification (send_resolved).
        (prom.work / "rules.yml").write_text("groups: []\n")
        prom.reload()
        wait_until(
            lambda: any(
                i["incident_key"] == opened["incident_key"] for i in incidents(am_ctx, "resolved")
            ),
            "incident resolved by Alertmanager",
            timeout_s=120,
        )
    with am_ctx.session() as session:
        alerts = session.scalar(select(func.count()).select_from(IncidentAlert))
        count = session.scalar(select(func.count()).select_from(Incident))

    assert fast["labels"]["service"] == "gateway" and fast["labels"]["severity"] == "page"
    assert fast["labels"]["slo"] == "availability"
    assert "reliability?service=gateway#runbook" in fast["annotations"]["runbook_url"]
    assert "Budget left over 30d:" in fast["annotations"]["description"]
    assert count == len({i["incident_key"] for i in incidents(am_ctx)})
    assert alerts == sum(len(i["alerts"]) for i in incidents(am_ctx))


def test_reliability_panels_show_budget_policy_open_alerts_escalation_and_runbook(
    client, am_ctx
) -> None:
    from console.components.reliability import oncall_panels
    from store.queries.reliability import alerts_frame, budget_frame
    from store.slo import load_oncall
    from tests.console.test_components import text_of

    post(client, "grouped", "webhook-01-firing-service-gateway")
    project = Path(__file__).resolve().parents[2]
    slos = load_slos(project / "data/slos")
    oncall = load_oncall(project / "data/oncall", slos=slos)
    with am_ctx.session() as session:
        from datetime import UTC, datetime

        budgets = budget_frame(session, slos, as_of=datetime(2026, 12, 1, 16, tzinfo=UTC))
        firing = alerts_frame(session, status="firing")
    panels = oncall_panels(budgets, firing, oncall)
    gateway = next(p for p in panels.children if getattr(p, "id", "") == "runbook-gateway")
    text = text_of(gateway)

    assert "NO DATA" in text and "Budget left" in text
    assert "FastBurn (page)" in text and "SlowBurn (ticket)" in text
    assert "level 2 after 15m: platform-secondary" in text
    assert "Acknowledge the page in the pager" in text
    assert "gateway specific" in text
