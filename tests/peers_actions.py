"""Local peers for guarded-action tests: moto's Route 53 over real HTTP, a Kubernetes API emulator.

The emulator speaks the few ConfigMap endpoints PinOpaBundle calls, with the real API server's
semantics that kmock 0.8 lacks: every write bumps `metadata.resourceVersion`; a patch carrying a
stale `resourceVersion` gets a 409 `Status` (Conflict); `dryRun=All` validates and answers the
merged object without persisting it, and any other `dryRun` value is a 400.
"""

from __future__ import annotations

import contextlib
import copy
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

ZONE_NAME = "example.com."
RECORD = "api.example.com."
CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _merge(into: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if value is None:
            into.pop(key, None)
        elif isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)
    return into


class KubeEmulator:
    """In-memory ConfigMaps behind a ThreadingHTTPServer on 127.0.0.1:<free port>."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        self.version = 100
        self.lock = threading.Lock()
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self) -> tuple[str, str | None, dict[str, list[str]]] | None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                emulator.requests.append((self.command, parts.path, query))
                segs = parts.path.strip("/").split("/")
                if segs[:3] != ["api", "v1", "namespaces"] or len(segs) < 5:
                    return None
                if segs[4] != "configmaps":
                    return None
                return segs[3], (segs[5] if len(segs) > 5 else None), query

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def do_GET(self) -> None:
                route = self._route()
                if route is None or route[1] is None:
                    self._send(404, _status(404, "NotFound", "the server could not find it"))
                    return
                ns, name, _ = route
                with emulator.lock:
                    obj = emulator.objects.get((ns, name))
                if obj is None:
                    self._send(404, _status(404, "NotFound", f'configmaps "{name}" not found'))
                else:
                    self._send(200, obj)

            def do_POST(self) -> None:
                route = self._route()
                if route is None:
                    self._send(404, _status(404, "NotFound", "the server could not find it"))
                    return
                ns, _, _ = route
                obj = self._body()
                name = obj["metadata"]["name"]
                with emulator.lock:
                    if (ns, name) in emulator.objects:
                        self._send(409, _status(409, "AlreadyExists", f'"{name}" already exists'))
                        return
                    emulator.version += 1
                    obj["metadata"] |= {"namespace": ns, "resourceVersion": str(emulator.version)}
                    obj.setdefault("kind", "ConfigMap")
                    obj.setdefault("apiVersion", "v1")
                    emulator.objects[(ns, name)] = obj
                self._send(201, obj)

            def do_PATCH(self) -> None:
                route = self._route()
                if route is None or route[1] is None:
                    self._send(404, _status(404, "NotFound", "the server could not find it"))
                    return
                ns, name, query = route
                kind = self.headers.get("Content-Type", "")
                if kind not in (
                    "application/strategic-merge-patch+json",
                    "application/merge-patch+json",
                ):
                    self._send(415, _status(415, "UnsupportedMediaType", kind))
                    return
                dry = query.get("dryRun", [])
                if dry and dry != ["All"]:
                    self._send(400, _status(400, "BadRequest", f"invalid dry run value {dry}"))
                    return
                patch = self._body()
                with emulator.lock:
                    current = emulator.objects.get((ns, name))
                    if current is None:
                        self._send(404, _status(404, "NotFound", f'configmaps "{name}" not found'))
                        return
                    wanted = (patch.get("metadata") or {}).get("resourceVersion")
                    if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
                        self._send(
                            409,
                            _status(
                                409,
                                "Conflict",
                                f'Operation cannot be fulfilled on configmaps "{name}": the '
                                "object has been modified; please apply your changes to the "
                                "latest version and try again",
                            ),
                        )
                        return
                    merged = _merge(copy.deepcopy(current), patch)
                    if dry:
                        merged["metadata"]["resourceVersion"] = current["metadata"][
                            "resourceVersion"
                        ]
                    else:
                        emulator.version += 1
                        merged["metadata"]["resourceVersion"] = str(emulator.version)
                        emulator.objects[(ns, name)] = merged
                self._send(200, merged)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> KubeEmulator:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def core_api(self) -> Any:
        import kubernetes

        config = kubernetes.client.Configuration()
        config.host = self.url
        return kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(config))


@pytest.fixture
def kube() -> Iterator[KubeEmulator]:
    emulator = KubeEmulator().start()
    yield emulator
    emulator.stop()


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's server on a free loopback port; yields its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def reset_moto(url: str) -> None:
    """Forget every zone and health check (moto's reset endpoint)."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto's server for the session (reset per test by `route53`)."""
    with moto_server() as url:
        yield url


def route53_client(url: str, **aws: Any) -> Any:
    """A boto3 Route 53 client for ``url`` configured as production's (`botocore_config`).

    ``aws`` overrides `AwsSettings` fields (e.g. `max_attempts=2`).
    """
    import boto3

    from console.clients import botocore_config
    from console.settings.traffic import AwsSettings

    return boto3.client(
        "route53",
        endpoint_url=url,
        region_name="us-east-1",
        config=botocore_config(AwsSettings(**aws)),
        **CREDS,
    )


# Route 53's answer when an account exceeds its 5 requests/s (HTTP 400, `Type` Sender, `Code`
# Throttling, `Message` "Rate exceeded": AWS knowledge center "API throttling errors in Route
# 53"), in the rest-xml error envelope botocore parses for route53.
THROTTLED = (
    b'<?xml version="1.0"?>\n'
    b'<ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">'
    b"<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
    b"<RequestId>8f2c4d5e-0000-4000-8000-000000000000</RequestId></ErrorResponse>"
)


@dataclass
class Calls:
    """What one operation cost: `calls` made by our code (botocore's `before-call`, once per
    client method call) and `sends` on the wire (`before-send`, once per HTTP attempt)."""

    calls: int = 0
    sends: int = 0


def count_calls(client: Any, operation: str) -> Calls:
    """Count ``operation``'s calls and HTTP attempts with botocore event hooks."""
    counts = Calls()

    def on_call(**_: Any) -> None:
        counts.calls += 1

    def on_send(**_: Any) -> None:
        counts.sends += 1

    client.meta.events.register(f"before-call.route53.{operation}", on_call)
    client.meta.events.register_first(f"before-send.route53.{operation}", on_send)
    return counts


def throttle(
    client: Any,
    operation: str,
    *,
    code: str = "Throttling",
    message: str = "Rate exceeded",
    times: int | None = None,
) -> Calls:
    """Answer ``operation``'s next ``times`` HTTP attempts (all when None) as a throttled
    Route 53 does, before they reach moto; later attempts go through. Returns the counts."""
    from botocore.awsrequest import AWSResponse

    counts = count_calls(client, operation)
    body = THROTTLED.replace(b"{code}", code.encode()).replace(b"{message}", message.encode())

    class Raw:
        def stream(self, **_: Any) -> Iterator[bytes]:
            yield body

    def on_send(request: Any, **_: Any) -> AWSResponse | None:
        if times is not None and counts.sends > times:
            return None
        return AWSResponse(request.url, 400, {"Content-Type": "text/xml"}, Raw())

    client.meta.events.register(f"before-send.route53.{operation}", on_send)
    return counts


def create_weighted_record(client: Any, *, east: int = 50, west: int = 50) -> tuple[str, str]:
    """A zone with `api.example.com.` weighted A records us-east/us-west (HC on us-east)."""
    zone = client.create_hosted_zone(Name=ZONE_NAME, CallerReference="qd-test")["HostedZone"]
    zone_id = zone["Id"].split("/")[-1]
    hc = client.create_health_check(
        CallerReference="qd-hc-east",
        HealthCheckConfig={
            "Type": "HTTP",
            "IPAddress": "10.0.0.1",
            "Port": 80,
            "ResourcePath": "/",
        },
    )["HealthCheck"]["Id"]
    client.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": RECORD,
                        "Type": "A",
                        "SetIdentifier": "us-east",
                        "Weight": east,
                        "TTL": 60,
                        "ResourceRecords": [{"Value": "10.0.0.1"}],
                        "HealthCheckId": hc,
                    },
                },
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": RECORD,
                        "Type": "A",
                        "SetIdentifier": "us-west",
                        "Weight": west,
                        "TTL": 60,
                        "ResourceRecords": [{"Value": "10.0.1.1"}],
                    },
                },
            ]
        },
    )
    return zone_id, hc


def read_weights(client: Any, zone_id: str) -> dict[str, int]:
    sets = client.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    return {rs["SetIdentifier"]: rs["Weight"] for rs in sets if "Weight" in rs}


@pytest.fixture
def route53(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A clean moto account and a client for it (also exported as AWS_* for app code)."""
    reset_moto(moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return route53_client(moto_url)


# -- OPA bundles: two Rego revisions whose difference is known ----------------------------------

BUNDLE = "authz"
REV_1, REV_2 = "2026.01.01-r1", "2026.01.08-r2"
SIGNING_KEY = "test-bundle-signing-key-0123456789"
REGO = {
    # r1: only SREs are allowed.
    REV_1: b"package acme.authz\n\nimport rego.v1\n\ndefault allow := false\n\n"
    b'allow if "sre" in input.user.roles\n',
    # r2 adds: viewers may GET. Every recorded viewer GET flips deny → allow; nothing else moves.
    REV_2: b"package acme.authz\n\nimport rego.v1\n\ndefault allow := false\n\n"
    b'allow if "sre" in input.user.roles\n\n'
    b'allow if {\n\tinput.method == "GET"\n\t"viewer" in input.user.roles\n}\n',
}


def bundle_bytes(revision: str) -> bytes:
    from collectors.bundles import build_bundle, sign_files

    files = {
        "/.manifest": json.dumps({"revision": revision, "roots": ["acme"]}).encode(),
        "/acme/authz/policy.rego": REGO[revision],
    }
    signatures = sign_files(files, key=SIGNING_KEY, algorithm="HS256", key_id="test")
    return build_bundle(files, signatures=signatures)


def register_revisions(session: Any, registry: Any, *, added_at: Any) -> None:
    """Write both revisions to ``registry``/<bundle>/<rev>.tar.gz and register them."""
    from collectors.bundles import VerificationKey, register_bundle

    keys = {"test": VerificationKey("test", "HS256", SIGNING_KEY)}
    for revision in (REV_1, REV_2):
        data = bundle_bytes(revision)
        path = registry / BUNDLE / f"{revision}.tar.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        register_bundle(
            session, name=BUNDLE, data=data, source=str(path), keys=keys, added_at=added_at
        )


def record_decisions(session: Any, environment: str, *, at: Any) -> None:
    """Six decisions made under r1: 2 SRE allows, 3 viewer GET denies, 1 viewer POST deny."""
    from datetime import timedelta

    from store.models import OpaDecision

    cases = [("sre", "POST", True)] * 2 + [("viewer", "GET", False)] * 3
    cases += [("viewer", "POST", False)]
    for i, (role, method, allowed) in enumerate(cases):
        session.add(
            OpaDecision(
                decision_id=f"{environment}-d{i}",
                timestamp=at + timedelta(seconds=i),
                received_at=at + timedelta(seconds=i),
                instance_id=f"{environment}-opa-1",
                environment=environment,
                path="acme/authz/allow",
                allowed=allowed,
                dry_run=False,
                bundles={BUNDLE: {"revision": REV_1}},
                input={"user": {"name": f"u{i}", "roles": [role]}, "method": method},
                result=allowed,
            )
        )
    session.flush()


def report_status(
    session: Any, environment: str, instances: list[str], revision: str, *, at: Any
) -> None:
    """Store OPA status reports as the status receiver would."""
    from store.models import OpaStatusReport

    for instance in instances:
        session.add(
            OpaStatusReport(
                instance_id=instance,
                environment=environment,
                bundle=BUNDLE,
                active_revision=revision,
                reported_at=at,
            )
        )
    session.flush()


def drop_audit_guard(session: Any) -> None:
    """Drop the triggers that make the audit append-only, as an intruder with DDL rights would."""
    from sqlalchemy import text

    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("DROP TRIGGER IF EXISTS action_audit_no_change ON action_audit"))
        session.execute(text("DROP TRIGGER IF EXISTS action_audit_no_truncate ON action_audit"))
    else:
        session.execute(text("DROP TRIGGER IF EXISTS action_audit_no_update"))
        session.execute(text("DROP TRIGGER IF EXISTS action_audit_no_delete"))
