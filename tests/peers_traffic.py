"""Real local peers for the traffic and failover tests: Prometheus scraping two ingress-nginx-like
exporters, moto's server, and a PostgreSQL primary with a streaming replica.

Every peer binds to loopback on a free port, lives in a temp dir, and is torn down by its
fixture. A missing binary skips off CI and fails under CI=true (`peer_missing`). This module is
a pytest plugin (`pytest_plugins` in tests/conftest.py): tests request its fixtures by name and
import only its helpers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port, peer_missing

PGBIN = Path("/usr/lib/postgresql/15/bin")
READY_TIMEOUT_S = 60
REGIONS = ("us-east", "us-west")
INGRESSES = ("gateway", "downloads")


def wait_until(check, what: str, timeout_s: float = READY_TIMEOUT_S) -> None:  # type: ignore[no-untyped-def]
    """Poll ``check`` until truthy (peer start-up, not a timed assertion); fail after timeout."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready after {timeout_s} s (last error: {last})")


# --------------------------------------------------------------------------------------------
# Prometheus + exporters
# --------------------------------------------------------------------------------------------


@dataclass
class PrometheusPeer:
    url: str
    exporter_ports: dict[str, int]


class _IngressNginxCollector:
    """Exposes `nginx_ingress_controller_requests` under its exact ingress-nginx name.

    prometheus_client's Counter would append `_total`; the Go client ingress-nginx uses does
    not, so the counts are exposed as an untyped family with the real name.
    """

    LABELS = ("ingress", "namespace", "status", "method", "cache_status")

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


def _start_exporter(region: str, stop: threading.Event) -> tuple[int, object]:
    """An ingress-nginx-shaped exporter; `region` is added by Prometheus (static labels)."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    requests_total = _IngressNginxCollector()
    registry.register(requests_total)  # type: ignore[arg-type]
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    scale = 3 if region == "us-east" else 1

    def traffic() -> None:
        # Bounded: stops with the fixture; 5 ticks/s of a fixed request mix per ingress.
        while not stop.wait(0.2):
            for ingress in INGRESSES:
                requests_total.inc((ingress, "web", "200", "GET", "HIT"), 6 * scale)
                requests_total.inc((ingress, "web", "200", "GET", "MISS"), 2 * scale)
                if ingress == "downloads":
                    requests_total.inc((ingress, "web", "429", "GET", "-"), 1 * scale)
                else:
                    requests_total.inc((ingress, "web", "503", "GET", "-"), 1)

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    return port, (server, thread, worker)


@pytest.fixture(scope="session", name="prometheus_peer")
def fixture_prometheus_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusPeer]:
    binary = shutil.which("prometheus")
    if binary is None:
        peer_missing("Debian `prometheus` is not installed (apt-get install prometheus)")
    stop = threading.Event()
    exporters = {region: _start_exporter(region, stop) for region in REGIONS}
    work = tmp_path_factory.mktemp("prometheus")
    scrape = "\n".join(
        f"""      - targets: ["127.0.0.1:{port}"]
        labels:
          region: {region}"""
        for region, (port, _) in exporters.items()
    )
    (work / "prometheus.yml").write_text(
        f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: ingress-nginx
    static_configs:
{scrape}
"""
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            str(binary),
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(work / "prometheus.log", "w"),  # noqa: SIM115 (closed with the process)
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{url}/-/ready", timeout=2).ok, "prometheus")

        def has_history() -> bool:
            # Tests query 20 s back with rate(…[10s]): wait until every series of both regions
            # has at least 10 s of scrapes, so the first test does not race the first scrape.
            body = requests.get(
                f"{url}/api/v1/query",
                params={
                    "query": "min by (region) "
                    "(count_over_time(nginx_ingress_controller_requests[15s]))"
                },
                timeout=2,
            ).json()
            counts = [float(r["value"][1]) for r in body["data"]["result"]]
            return len(counts) == len(REGIONS) and min(counts) >= 10

        wait_until(has_history, "10 s of scrapes of both exporters")
        yield PrometheusPeer(url, {r: p for r, (p, _) in exporters.items()})
    finally:
        stop.set()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        for _port, (server, _thread, _worker) in exporters.values():  # type: ignore[misc]
            server.shutdown()


# --------------------------------------------------------------------------------------------
# moto
# --------------------------------------------------------------------------------------------


@pytest.fixture(name="moto_endpoint")
def fixture_moto_endpoint(moto_url: str) -> str:
    """moto's server (`moto_url`: tests.peers_actions, one per session) reset for this test."""
    requests.post(f"{moto_url}/moto-api/reset", timeout=10)
    return moto_url


def boto_client(service: str, endpoint: str):  # type: ignore[no-untyped-def]
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "max_attempts": 2}),
    )


# --------------------------------------------------------------------------------------------
# PostgreSQL primary + streaming replica
# --------------------------------------------------------------------------------------------


def _as_pg(*args: str) -> subprocess.CompletedProcess[str]:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *args], check=True, capture_output=True, text=True, timeout=120)


@dataclass
class PgPair:
    """A running primary and a streaming standby (`cluster_name` = application_name)."""

    root: Path
    primary_port: int
    standby_port: int
    standby_name: str = "standby1"

    def dsn(self, port: int) -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/postgres"

    @property
    def primary_dsn(self) -> str:
        return self.dsn(self.primary_port)

    @property
    def standby_dsn(self) -> str:
        return self.dsn(self.standby_port)

    def ctl(self, node: str, *args: str) -> None:
        _as_pg(str(PGBIN / "pg_ctl"), "-D", str(self.root / node), *args)

    def promote(self) -> None:
        """`pg_ctl promote -w`: returns once the standby has left recovery."""
        self.ctl("standby", "-w", "promote")

    def stop(self, node: str) -> None:
        self.ctl(node, "-m", "immediate", "stop")


def _options(port: int, root: Path, extra: str = "") -> str:
    return (
        f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root} "
        f"-c fsync=off -c wal_level=replica -c max_wal_senders=5 {extra}"
    ).strip()


@pytest.fixture(name="pg_pair")
def fixture_pg_pair() -> Iterator[PgPair]:
    """A fresh primary + replica per test (promotion is one-way)."""
    if not (PGBIN / "initdb").exists() or (os.geteuid() == 0 and not shutil.which("runuser")):
        peer_missing(f"PostgreSQL 15 server binaries not found in {PGBIN}")
    root = Path(tempfile.mkdtemp(prefix="qd-pgpair-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    pair = PgPair(root, free_port(), free_port())
    started: list[str] = []
    try:
        _as_pg(
            str(PGBIN / "initdb"), "-D", str(root / "primary"), "-U", "postgres",
            "--auth=trust", "-E", "UTF8", "--no-locale",
        )  # fmt: skip
        _as_pg(
            str(PGBIN / "pg_ctl"), "-D", str(root / "primary"), "-w",
            "-l", str(root / "primary.log"),
            "-o", _options(pair.primary_port, root), "start",
        )  # fmt: skip
        started.append("primary")
        _as_pg(
            str(PGBIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(pair.primary_port),
            "-U", "postgres", "-D", str(root / "standby"), "-R", "-X", "stream",
        )  # fmt: skip
        _as_pg(
            str(PGBIN / "pg_ctl"), "-D", str(root / "standby"), "-w",
            "-l", str(root / "standby.log"),
            "-o", _options(pair.standby_port, root, f"-c cluster_name={pair.standby_name}"),
            "start",
        )  # fmt: skip
        started.append("standby")
        import psycopg

        def streaming() -> bool:
            with psycopg.connect(pair.primary_dsn) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
                ).fetchone()
                return bool(row and row[0] == 1)

        wait_until(streaming, "streaming replication")
        yield pair
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"PostgreSQL pair failed to start: {exc.cmd}: {exc.stderr}", pytrace=False)
    finally:
        for node in reversed(started):
            with contextlib.suppress(subprocess.CalledProcessError):  # the test stopped it
                pair.stop(node)
        shutil.rmtree(root, ignore_errors=True)
