"""The SLI collector against a real Prometheus 2.42 scraping an exporter that exposes the real
ingress-nginx request counter (`nginx_ingress_controller_requests` with its `service` and
`status` labels, no cache label): budget, burn rates and the gate follow the counters.

Besides the tests, this module holds the Prometheus + exporter peer (`start_slo_peer`) that
tests/console/test_alertmanager.py reuses with the generated rules loaded.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from sqlalchemy import func, select

from actions.rules import error_budget_not_frozen
from collectors import sli
from console.context import AppContext
from console.http.reliability import make_blueprint
from store.migrate import upgrade
from store.models import SloSample, SyncRun
from store.queries.reliability import budget_status
from store.slo import SloDefinition, load_slos
from tests.conftest import free_port, make_settings, peer_missing
from tests.peers_traffic import wait_until

PROJECT = Path(__file__).resolve().parents[2]
TICK_S = 0.2


class IngressCounter:
    """`nginx_ingress_controller_requests` as ingress-nginx labels it (untyped, no `_total`)."""

    LABELS = ("ingress", "namespace", "service", "status", "method")

    def __init__(self) -> None:
        self.counts: dict[tuple[str, ...], float] = {}
        self.lock = threading.Lock()

    def inc(self, labels: tuple[str, ...], amount: float) -> None:
        with self.lock:
            self.counts[labels] = self.counts.get(labels, 0.0) + amount

    def collect(self):  # type: ignore[no-untyped-def]
        from prometheus_client.core import UnknownMetricFamily

        family = UnknownMetricFamily(
            "nginx_ingress_controller_requests",
            "The total number of client requests",
            labels=list(self.LABELS),
        )
        with self.lock:
            for labels, value in self.counts.items():
                family.add_metric(list(labels), value)
        yield family


@dataclass
class SloPeer:
    """Prometheus scraping one exporter; `error_share` of gateway requests answer 503."""

    url: str
    work: Path
    proc: subprocess.Popen[bytes]
    error_share: list[float] = field(default_factory=lambda: [0.5])

    def reload(self) -> None:
        requests.post(f"{self.url}/-/reload", timeout=10).raise_for_status()


@contextmanager
def start_slo_peer(
    work: Path, *, rules: str | None = None, alertmanager: str | None = None
) -> Iterator[SloPeer]:
    binary = shutil.which("prometheus")
    if binary is None:
        peer_missing("Debian `prometheus` is not installed (apt-get install prometheus)")
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    counter = IngressCounter()
    registry.register(counter)  # type: ignore[arg-type]
    exporter_port = free_port()
    server, _thread = start_http_server(exporter_port, addr="127.0.0.1", registry=registry)
    stop = threading.Event()
    share = [0.5]

    def traffic() -> None:  # bounded by the fixture: 50 requests/s for the gateway
        while not stop.wait(TICK_S):
            bad = 10 * share[0]
            counter.inc(("gateway", "web", "gateway", "200", "GET"), 10 - bad)
            counter.inc(("gateway", "web", "gateway", "503", "GET"), bad)

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "ingress-nginx",
                "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}],
            }
        ],
    }
    if rules is not None:
        (work / "rules.yml").write_text(rules)
        config["rule_files"] = [str(work / "rules.yml")]
    if alertmanager is not None:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(work / "prometheus.log", "w")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(
        [
            str(binary),
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            "--rules.alert.resend-delay=1s",
            "--storage.tsdb.retention.time=1h",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    peer = SloPeer(f"http://127.0.0.1:{port}", work, proc, share)
    try:
        wait_until(lambda: requests.get(f"{peer.url}/-/ready", timeout=2).ok, "prometheus")

        def has_history() -> bool:
            body = requests.get(
                f"{peer.url}/api/v1/query",
                params={"query": "count_over_time(nginx_ingress_controller_requests[30s])"},
                timeout=2,
            ).json()
            counts = [float(r["value"][1]) for r in body["data"]["result"]]
            return len(counts) == 2 and min(counts) >= 22

        wait_until(has_history, "22 s of scrapes of the exporter")
        yield peer
    finally:
        stop.set()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        server.shutdown()


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------


def gateway_slo(folder: Path, **policy: object) -> SloDefinition:
    """data/slos/gateway.yaml as shipped (same queries), with a 5 s step for a fast test."""
    raw = yaml.safe_load((PROJECT / "data/slos/gateway.yaml").read_text())
    raw["source"].update({"step": "5s", "lookback": "1m"})
    raw["policy"].update(policy)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gateway.yaml").write_text(yaml.safe_dump(raw))
    return load_slos(folder)[0]


@pytest.fixture(scope="module")
def slo_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SloPeer]:
    with start_slo_peer(tmp_path_factory.mktemp("sli-prometheus")) as peer:
        yield peer


@pytest.fixture
def sli_ctx(tmp_path: Path) -> Iterator[tuple[AppContext, SloDefinition]]:
    slo = gateway_slo(tmp_path / "slos")
    ctx = AppContext.from_settings(
        make_settings(tmp_path, exports={"slos_dir": str(tmp_path / "slos")})
    )
    upgrade(ctx.engine)
    yield ctx, slo
    ctx.engine.dispose()


class RecordingHttp:
    """requests.Session that remembers the timeout of every call."""

    def __init__(self) -> None:
        self.session = requests.Session()
        self.timeouts: list[float] = []

    def post(self, url: str, *, data: Any, timeout: float) -> Any:
        self.timeouts.append(timeout)
        return self.session.post(url, data=data, timeout=timeout)


def test_fast_burn_from_real_counters_freezes_the_gate_and_blocks_guarded_actions(
    slo_peer: SloPeer, sli_ctx
) -> None:
    ctx, slo = sli_ctx
    slo_peer.error_share[0] = 0.5  # half the gateway's requests answer 503: burn ≈ 500×
    now = datetime.now(UTC)  # the real Prometheus holds real-time samples

    report = sli.sync_slis(
        ctx.sessions, requests.Session(), [slo], base_url=slo_peer.url, now=now,
        settle=timedelta(seconds=0),
    )  # fmt: skip

    assert report.errors == {}
    assert report.results["gateway/availability"].stored >= 4
    with ctx.sessions() as session:
        samples = session.scalars(select(SloSample).order_by(SloSample.ts)).all()
        latest = samples[-1].ts
        status = budget_status(session, slo, as_of=latest)
        blocked = error_budget_not_frozen(session, [slo], now=latest)
    # 10 requests per 0.2 s tick = 50/s: each 5 s step counts ≈ 250, half of them bad.
    full = [s for s in samples if s.total > 0][1:]
    assert full and all(200 <= s.total <= 300 for s in full)
    assert all(0.4 <= 1 - s.good / s.total <= 0.6 for s in full)
    assert status.state == "freeze"
    assert status.burn[timedelta(minutes=5)] == pytest.approx(500, rel=0.2)
    assert [p.pair.label for p in status.firing][:1] == ["1h/5m × 14.4"]
    assert (blocked.name, blocked.passed) == ("error-budget-not-frozen", False)
    assert blocked.reason.startswith("error-budget policy says freeze — gateway: ")
    assert "page burn alert 1h/5m × 14.4" in blocked.reason
    import flask

    app = flask.Flask(__name__)
    app.register_blueprint(make_blueprint(ctx))
    gate = app.test_client().get("/api/gates/gateway", query_string={"at": latest.isoformat()})
    assert gate.status_code == 423
    assert gate.json["state"] == "freeze"
    assert gate.json["slos"][0]["policy_applied"] == "budget"


def test_a_rerun_adds_nothing_and_the_cursor_holds(slo_peer: SloPeer, sli_ctx) -> None:
    ctx, slo = sli_ctx
    now = datetime.now(UTC)
    http = RecordingHttp()
    sli.sync_slo(ctx.sessions, http, slo, base_url=slo_peer.url, now=now, timeout_s=7.5,
                 settle=timedelta(0))  # fmt: skip
    with ctx.sessions() as session:
        before = session.scalar(select(func.count()).select_from(SloSample))
    again = sli.sync_slo(ctx.sessions, http, slo, base_url=slo_peer.url, now=now,
                         timeout_s=7.5, settle=timedelta(0))  # fmt: skip
    with ctx.sessions() as session:
        after = session.scalar(select(func.count()).select_from(SloSample))
        runs = session.scalars(select(SyncRun).where(SyncRun.source.like("prometheus.sli:%"))).all()

    assert before and after == before
    assert again.stored == 0
    assert [r.status for r in runs] == ["ok", "ok"]
    assert runs[0].cursor == runs[1].cursor
    assert http.timeouts and set(http.timeouts) == {7.5}  # QUARTERDECK_PROMETHEUS__TIMEOUT_S


def test_prometheus_down_is_a_failed_run_per_slo_and_no_data_follows_the_policy(
    sli_ctx, tmp_path: Path
) -> None:
    ctx, slo = sli_ctx
    now = datetime.now(UTC)
    report = sli.sync_slis(
        ctx.sessions, requests.Session(), [slo], base_url=f"http://127.0.0.1:{free_port()}",
        now=now, timeout_s=2,
    )  # fmt: skip
    fail_closed = gateway_slo(tmp_path / "closed", no_data="freeze")
    with ctx.sessions() as session:
        run = session.scalars(select(SyncRun)).one()
        normal = budget_status(session, slo, as_of=now)
        frozen = budget_status(session, fail_closed, as_of=now)

    assert "gateway/availability" in report.errors
    assert (run.source, run.status) == ("prometheus.sli:gateway/availability", "failed")
    assert (normal.state, normal.no_data) == ("normal", True)
    assert frozen.state == "freeze"
    assert frozen.reason == "no SLO samples in the 30d window: the no-data policy is freeze"
