"""Evidence downloads behind a real NGINX (Debian nginx 1.22): `limit_req` with nginx's default
status (503) and with `limit_req_status 429`, the console behind it on a loopback port, and
NGINX's access log imported in its three formats (`combined`, ingress-nginx `upstreaminfo`,
JSON). The client's own record of what it was answered is the truth every count is held to.

Bounded: 250 requests per limiter status (500 in all), sequential, loopback only. The limiter
refills 1 request per minute after a burst of 60, so how many pass does not depend on speed
beyond one per elapsed minute, and the assertions compare with what the client saw anyway.
"""

from __future__ import annotations

import base64
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, func, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from collectors import exports
from console import evidence_service as service
from console.app import create_app
from console.context import AppContext
from egress.tokens import issue_token
from store.measures import Window
from store.migrate import upgrade
from store.models import ExportEvent, IngestReject
from store.queries.egress import download_5xx_value, egress_summary
from tests.conftest import make_settings, peer_missing
from tests.console.test_egress_http import serve

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SECRET = "download-token-secret-for-nginx-tests"
REQUESTS = 250
USERS = [f"user-{n}" for n in range(8)]
FORMATS = ("json", "combined", "upstreaminfo")
STATE_SENT = {"none": "missing", "tampered": "invalid", "expired": "expired", "valid": "valid"}

CONF = """
worker_processes 1;
pid logs/nginx.pid;
error_log logs/error.log info;
events {{ worker_connections 64; }}
http {{
    client_body_temp_path tmp/client_body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;

    map $host $proxy_upstream_name {{ default "quarterdeck-console"; }}
    map $host $proxy_alternative_upstream_name {{ default ""; }}
    map $request_id $req_id {{ default $request_id; }}

    log_format upstreaminfo
        '$remote_addr - $remote_user [$time_local] "$request" $status '
        '$body_bytes_sent "$http_referer" "$http_user_agent" $request_length '
        '$request_time [$proxy_upstream_name] '
        '[$proxy_alternative_upstream_name] $upstream_addr '
        '$upstream_response_length $upstream_response_time $upstream_status '
        '$req_id';
    log_format qdjson escape=json
        '{{"time":"$time_iso8601","request_id":"$request_id",'
        '"remote_addr":"$remote_addr","method":"$request_method","uri":"$uri",'
        '"args":"$args","request_uri":"$request_uri","status":$status,'
        '"bytes":$body_bytes_sent,"request_time":$request_time,'
        '"upstream_addr":"$upstream_addr","upstream_status":"$upstream_status",'
        '"upstream_response_time":"$upstream_response_time",'
        '"export_id":"$upstream_http_x_export_id",'
        '"export_user":"$upstream_http_x_export_user",'
        '"token_state":"$upstream_http_x_export_token_state",'
        '"tenant":"$http_x_tenant","user_agent":"$http_user_agent"}}';

    limit_req_zone $binary_remote_addr zone=downloads:1m rate=1r/m;

    server {{
        listen 127.0.0.1:{port};
        access_log logs/combined.log combined;
        access_log logs/upstreaminfo.log upstreaminfo;
        access_log logs/json.log qdjson;

        location /evidence/ {{
            limit_req zone=downloads burst=60 nodelay;
            {status_line}
            proxy_set_header X-Request-ID $request_id;
            proxy_set_header Host $host;
            proxy_pass http://127.0.0.1:{upstream};
        }}
    }}
}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"{what} exited: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{what} did not listen on {port}")


@dataclass
class Nginx:
    url: str
    logs: Path
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        """Graceful quit: every access-log line is written when nginx has exited."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_nginx(prefix: Path, *, upstream: int, limit_req_status: int | None) -> Nginx:
    if not Path(NGINX).exists():
        peer_missing(f"nginx not installed ({NGINX})")
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    port = _free_port()
    status_line = f"limit_req_status {limit_req_status};" if limit_req_status else ""
    conf = prefix / "nginx.conf"
    conf.write_text(CONF.format(port=port, upstream=upstream, status_line=status_line))
    proc = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(conf), "-e", "logs/error.log", "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _wait_for(port, proc, "nginx")
    return Nginx(f"http://127.0.0.1:{port}", prefix / "logs", proc)


def _tamper(token: str) -> str:
    body, sig = token.split(".")
    payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).replace(
        b'"sub":"', b'"sub":"x'
    )
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode() + "." + sig


@dataclass
class Sent:
    kind: str
    status: int
    by_app: bool
    token: str | None


def burst(base: str, pack_id: str) -> list[Sent]:
    """20 % without a token, 20 % tampered, 20 % expired, 40 % valid; 8 users, 2 tenants."""
    scope = service.DOWNLOAD_SCOPE + pack_id
    now = time.time()
    kinds = ["none", "tampered", "expired", "valid", "valid"]
    sent: list[Sent] = []
    with requests.Session() as http:
        for i in range(REQUESTS):
            kind = kinds[i % 5]
            user = USERS[i % len(USERS)]
            tenant = "acme" if i % len(USERS) < 4 else "globex"
            token: str | None = None
            if kind != "none":
                token = issue_token(
                    SECRET,
                    sub=user,
                    scope=scope,
                    ttl_s=300,
                    now=now - 400 if kind == "expired" else now,
                    tenant=tenant,
                )
                if kind == "tampered":
                    token = _tamper(token)
            url = f"{base}/evidence/packs/{pack_id}/download"
            answer = http.get(url, params={"token": token} if token else None, timeout=60)
            sent.append(
                Sent(kind, answer.status_code, "X-Export-Token-State" in answer.headers, token)
            )
    return sent


@dataclass
class Run:
    status: int | None
    sent: list[Sent]
    logs: Path
    app_rows: list[dict[str, Any]]
    window: Window
    tmp: Path


_RUNS: dict[int | None, Run] = {}


@pytest.fixture(params=[None, 429], ids=["default-503", "status-429"], scope="module")
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """One console behind one nginx, one burst; the app's own events kept for each import."""
    tmp = tmp_path_factory.mktemp(f"nginx-{request.param or 503}")
    settings = make_settings(
        tmp,
        exports={"token_secret": SECRET, "rate_limit": 3, "tenant_rate_limit": 1000},
    )
    ctx = AppContext.from_settings(settings)
    upgrade(ctx.engine)
    pack_id = service.build_pack(ctx, "sprint-27", user="builder", render=False).pack_id
    from datetime import UTC, datetime, timedelta

    start = datetime.now(UTC) - timedelta(minutes=1)
    with serve(create_app(ctx).server) as console:
        nginx = start_nginx(
            tmp / "nginx",
            upstream=int(console.rsplit(":", 1)[1]),
            limit_req_status=request.param,
        )
        try:
            sent = burst(nginx.url, pack_id)
        finally:
            nginx.stop()
    with ctx.session() as session:
        rows = [
            {c.key: getattr(e, c.key) for c in ExportEvent.__table__.columns if c.key != "id"}
            for e in session.scalars(select(ExportEvent))
        ]
    ctx.engine.dispose()
    yield Run(
        request.param,
        sent,
        nginx.logs,
        rows,
        Window(start, datetime.now(UTC) + timedelta(minutes=1)),
        tmp,
    )


def _store_with_app_events(run: Run, name: str) -> Engine:
    engine = create_engine(f"sqlite:///{run.tmp / name}.db")
    upgrade(engine)
    with Session(engine) as session, session.begin():
        if run.app_rows:
            session.execute(insert(ExportEvent), run.app_rows)
    return engine


def _import(
    engine: Engine, run: Run, fmt: str, path: Path | None = None
) -> exports.AccessLogImport:
    from datetime import UTC, datetime

    text = (path or run.logs / f"{fmt}.log").read_text(encoding="utf-8")
    with Session(engine) as session, session.begin():
        return exports.import_access_log(
            session, text.splitlines(), received_at=datetime.now(UTC), fmt=fmt
        )


def test_the_burst_met_both_the_limiter_and_the_console(run):
    by = Counter((s.by_app, s.status) for s in run.sent)
    limiter_status = run.status or 503
    assert by[(False, limiter_status)] > 0  # nginx refused some
    assert by[(True, 200)] > 0 and by[(True, 429)] > 0  # served, and the per-user limit hit
    assert {s for (app, s) in by if not app} == {limiter_status}
    # Every request the console answered is one app event, before any log is imported.
    assert len(run.app_rows) == sum(1 for s in run.sent if s.by_app)


def test_before_the_log_is_in_the_no_5xx_goal_has_no_data(run):
    engine = _store_with_app_events(run, "before")
    with Session(engine) as session:
        value = download_5xx_value(egress_summary(session, window=run.window))
    assert value.value is None
    assert "limiter's access log" in value.detail


@pytest.mark.parametrize("fmt", FORMATS)
def test_imported_log_gives_one_event_per_request_matching_the_client(run, fmt):
    engine = _store_with_app_events(run, fmt)
    done = _import(engine, run, fmt)
    again = _import(engine, run, fmt)

    with Session(engine) as session:
        events = session.scalars(select(ExportEvent)).all()
        summary = egress_summary(session, window=run.window)
        no_5xx = download_5xx_value(summary)

    assert done.result.rejected == 0
    assert done.merged == len(run.app_rows)  # each console event met its log line
    assert (again.result.stored, again.merged, again.result.duplicates) == (0, 0, REQUESTS)
    assert len(events) == REQUESTS == summary.requests
    assert Counter(e.status for e in events) == Counter(s.status for s in run.sent)
    assert Counter(e.answered_by for e in events) == Counter(
        "application" if s.by_app else "limiter" for s in run.sent
    )
    assert Counter(e.token_state for e in events) == Counter(
        STATE_SENT[s.kind] if s.by_app else "not_checked" for s in run.sent
    )
    assert all(e.in_proxy_log for e in events)
    served = sum(1 for s in run.sent if s.status == 200)
    assert (summary.served, summary.covered, summary.coverage) == (served, served, 1.0)
    assert summary.status_429 == sum(1 for s in run.sent if s.status == 429)
    assert summary.refused["rate_limited_user"] == sum(
        1 for s in run.sent if s.by_app and s.status == 429
    )
    limiter = sum(1 for s in run.sent if not s.by_app)
    assert summary.refused["limiter"] == limiter
    assert summary.uncovered_routes == []
    if run.status is None:  # nginx's default: the limiter's refusals are 503s
        assert summary.status_5xx["limiter"] == summary.limiter_503 == limiter
        assert no_5xx.value == float(limiter)
        assert "limit_req_status 429" in no_5xx.detail
    else:
        assert summary.total_5xx == summary.limiter_503 == 0
        assert no_5xx.value == 0.0
    assert {t["tenant"] for t in summary.tenants if t["served"]} == {"acme", "globex"}


def test_no_stored_row_holds_a_download_token_even_from_a_misnamed_format(run):
    engine = _store_with_app_events(run, "secrets")
    wrong = _import(engine, run, "combined", path=run.logs / "json.log")  # JSON read as combined
    _import(engine, run, "upstreaminfo")
    tokens = {s.token for s in run.sent if s.token}
    with Session(engine) as session:
        rejects = session.execute(select(IngestReject.reason, IngestReject.payload)).all()
        events = session.scalars(select(ExportEvent)).all()
    assert wrong.result.rejected == REQUESTS
    assert all("not an nginx combined line" in r.reason for r in rejects)
    stored = " ".join(str(v) for r in rejects for v in r) + " ".join(
        str(getattr(e, c.key)) for e in events for c in ExportEvent.__table__.columns
    )
    assert "token=[redacted]" in stored
    leaked = [t for t in tokens if t in stored or t.split(".")[0] in stored]
    assert leaked == []
    # nginx itself logged them: the redaction is what keeps them out of the store.
    assert any(t in (run.logs / "combined.log").read_text() for t in tokens)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(IngestReject)) == REQUESTS
