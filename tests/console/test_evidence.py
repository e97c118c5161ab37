"""Evidence packs and tokens: seed-compatible HMAC tokens, a signed pack that `evidence verify`
passes and that names any altered, added or missing file, clear refusals, and the postmortem
generator filing its issue with a local server speaking GitHub's API."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
import threading
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from console import evidence_service as service
from console.cli import evidence as evidence_cli
from console.context import AppContext
from egress.tokens import TokenError, issue_token, verify_token
from evidence.pack import EvidenceError, verify_pack
from evidence.postmortem import PostmortemError, generate_postmortem
from evidence.signing import HOW_TO_CONFIGURE, SigningKeyError, generate_key_text
from store.migrate import upgrade
from store.models import Postmortem
from store.models.egress import EvidencePack
from tests.conftest import make_settings

SECRET = "token-secret"
NOW = 1_800_000_000.0
USER = "manager@acme"


def copy_demo(demo_ctx: AppContext, tmp_path: Path, **overrides: object) -> AppContext:
    """A writable copy of the session's demo store (demo_ctx itself stays read-only)."""
    source = demo_ctx.engine.url.database
    target = tmp_path / "console.db"
    with sqlite3.connect(str(source)) as src, sqlite3.connect(str(target)) as dst:
        src.backup(dst)
    return AppContext.from_settings(make_settings(tmp_path, **overrides))


@pytest.fixture
def pack_ctx(demo_ctx, tmp_path) -> Iterator[AppContext]:
    ctx = copy_demo(demo_ctx, tmp_path)
    yield ctx
    ctx.engine.dispose()


@pytest.fixture
def pack_file(pack_ctx, tmp_path) -> Path:
    built = service.build_pack(pack_ctx, "sprint-27", user=USER)
    path = tmp_path / "pack.zip"
    path.write_bytes(built.data)
    return path


# --------------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------------


def _seed_token(payload: dict[str, Any], secret: str) -> str:
    """Issue a token exactly as seed §5.6's Express code does."""
    body = json.dumps(payload).encode()
    sig = hmac.new(secret.encode(), body, hashlib.sha256).digest()

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return f"{b64(body)}.{b64(sig)}"


def test_a_token_issued_like_the_seed_verifies():
    token = _seed_token({"sub": "ana", "scope": "export:read", "exp": int(NOW) + 600}, SECRET)
    claims = verify_token(SECRET, token, scope="export:read", now=NOW)
    assert (claims.sub, claims.scope) == ("ana", "export:read")


@pytest.mark.parametrize(
    ("token_args", "verify_now", "reason"),
    [
        ({"ttl_s": 60, "now": NOW - 61}, NOW, "expired"),
        ({"ttl_s": 600, "now": NOW - 600}, NOW, "expired"),
        ({"ttl_s": 60, "now": NOW, "scope": "evidence:download:other"}, NOW, "wrong scope"),
        ({"ttl_s": 60, "now": NOW, "secret": "not-the-secret"}, NOW, "bad signature"),
    ],
)
def test_refused_tokens(token_args, verify_now, reason):
    args = {"secret": SECRET, "scope": "evidence:download:p1", **token_args}
    token = issue_token(args.pop("secret"), sub="ana", **args)
    with pytest.raises(TokenError, match=reason):
        verify_token(SECRET, token, scope="evidence:download:p1", now=verify_now)


def test_a_tampered_payload_or_a_long_lived_token_is_refused():
    token = issue_token(SECRET, sub="ana", scope="s", ttl_s=60, now=NOW)
    body, sig = token.split(".")
    forged = base64.urlsafe_b64encode(
        base64.urlsafe_b64decode(body + "==").replace(b'"ana"', b'"eve"')
    ).rstrip(b"=")
    long_lived = _seed_token({"sub": "ana", "scope": "s", "exp": int(NOW) + 3600}, SECRET)

    with pytest.raises(TokenError, match="bad signature"):
        verify_token(SECRET, f"{forged.decode()}.{sig}", scope="s", now=NOW)
    with pytest.raises(TokenError, match="more than 600 s ahead"):
        verify_token(SECRET, long_lived, scope="s", now=NOW)
    with pytest.raises(ValueError, match="ttl_s"):
        issue_token(SECRET, sub="ana", scope="s", ttl_s=601)


# --------------------------------------------------------------------------------------------
# Packs
# --------------------------------------------------------------------------------------------


def test_fresh_pack_verifies_and_every_file_carries_the_export_id_and_user(pack_file, pack_ctx):
    verdict = verify_pack(pack_file)

    assert verdict.ok, verdict.problems
    export_id = verdict.watermark["export_id"]
    with zipfile.ZipFile(pack_file) as zf:
        names = zf.namelist()
        unmarked = [n for n in names if export_id.encode() not in zf.read(n)]
        unmarked += [n for n in names if USER.encode() not in zf.read(n)]
    assert unmarked == []
    sections = {"goals", "ci", "failover", "policy", "exports", "postmortems", "audit"}
    assert {f"{s}.html" for s in sections} | {f"{s}.json" for s in sections} <= set(names)
    assert {"index.html", "plotly.min.js", "MANIFEST.json", "SIGNATURE.json"} <= set(names)
    with pack_ctx.session() as session:
        recorded = session.scalars(select(EvidencePack)).one()
    assert recorded.pack_id == export_id and recorded.built_by == USER


def test_pages_are_viewable_offline(pack_file):
    with zipfile.ZipFile(pack_file) as zf:
        pages = {n: zf.read(n).decode() for n in zf.namelist() if n.endswith(".html")}
    assert all("https://" not in p.split("<body>")[0] for p in pages.values())
    assert '<script src="plotly.min.js"></script>' in pages["exports.html"]


def _rewrite(pack: Path, out: Path, change: dict[str, bytes | None]) -> None:
    with zipfile.ZipFile(pack) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            if name in change and change[name] is None:
                continue
            dst.writestr(name, change.get(name) or src.read(name))
        for name, data in change.items():
            if name not in src.namelist() and data is not None:
                dst.writestr(name, data)


def test_one_changed_byte_in_any_file_is_named(pack_file, tmp_path):
    with zipfile.ZipFile(pack_file) as zf:
        contents = {n: zf.read(n) for n in zf.namelist()}
    missed = []
    for name, data in contents.items():
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x01
        altered = tmp_path / "altered.zip"
        _rewrite(pack_file, altered, {name: bytes(flipped)})
        verdict = verify_pack(altered)
        if verdict.ok or not any(p.startswith(f"altered: {name}") for p in verdict.problems):
            missed.append((name, verdict.problems))
    assert missed == []


def test_added_and_missing_files_are_named(pack_file, tmp_path):
    out = tmp_path / "changed.zip"
    _rewrite(pack_file, out, {"extra.csv": b"a,b\n", "policy.json": None})

    verdict = verify_pack(out)

    assert not verdict.ok
    assert verdict.problems == ["missing: policy.json", "added: extra.csv (not in the manifest)"]


def test_cli_verify_exit_codes_name_the_file(pack_file, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(evidence_cli.app, ["verify", str(pack_file)])
    altered = tmp_path / "altered.zip"
    with zipfile.ZipFile(pack_file) as zf:
        csv = zf.read("goals-goals.csv")
    _rewrite(pack_file, altered, {"goals-goals.csv": csv.replace(b"missed", b"met", 1)})
    bad = runner.invoke(evidence_cli.app, ["verify", str(altered)])

    assert ok.exit_code == 0, ok.output
    assert "intact" in ok.output
    assert bad.exit_code == 1
    assert "altered: goals-goals.csv" in bad.output


def test_cli_verify_with_the_published_key_refuses_another_signer(pack_file):
    _, other_public = generate_key_text()
    result = CliRunner().invoke(
        evidence_cli.app, ["verify", str(pack_file), "--public-key", other_public]
    )
    assert result.exit_code == 1
    assert "SIGNATURE.json: signed by ed25519:" in result.output


def test_unknown_sprint_is_a_clear_error(pack_ctx):
    with pytest.raises(
        EvidenceError, match="unknown sprint 'sprint-99' \\(known sprints: sprint-27"
    ):
        service.build_pack(pack_ctx, "sprint-99", user=USER)


def test_missing_signing_key_outside_demo_mode_says_how_to_configure(tmp_path):
    ctx = AppContext.from_settings(
        make_settings(tmp_path, demo_mode=False, secret_key="a-real-secret-for-this-test")
    )
    upgrade(ctx.engine)
    with pytest.raises(SigningKeyError) as err:
        service.build_pack(ctx, "sprint-27", user=USER)
    assert str(err.value) == HOW_TO_CONFIGURE
    assert "QUARTERDECK_EVIDENCE__SIGNING_KEY" in HOW_TO_CONFIGURE
    ctx.engine.dispose()


def test_configured_key_signs_and_verify_accepts_its_public_key(demo_ctx, tmp_path):
    private, public = generate_key_text()
    ctx = copy_demo(demo_ctx, tmp_path, exports={"evidence_signing_key": private})
    built = service.build_pack(ctx, "sprint-27", user=USER)
    ctx.engine.dispose()

    verdict = verify_pack(built.data, public_key=public)

    assert verdict.ok and not verdict.demo_key


# --------------------------------------------------------------------------------------------
# Postmortems
# --------------------------------------------------------------------------------------------


class _GitHub(BaseHTTPRequestHandler):
    """Just enough of GitHub's `POST /repos/{owner}/{repo}/issues`."""

    received: list[dict[str, Any]] = []  # noqa: RUF012

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).received.append(
            {"path": self.path, "auth": self.headers["Authorization"], "body": body}
        )
        if self.headers["Authorization"] != "Bearer gh-token":
            self._send(401, {"message": "Bad credentials"})
            return
        self._send(201, {"number": 7, "html_url": "https://github.example/acme/runbooks/issues/7"})

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def github_url() -> Iterator[str]:
    _GitHub.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _GitHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


def test_postmortem_fills_the_template_files_the_issue_and_is_recorded(pack_ctx, github_url):
    at = datetime(2025, 11, 20, 9, tzinfo=UTC)
    with pack_ctx.session() as session:
        done = generate_postmortem(
            session,
            "inc-2741",
            slos=service.slo_definitions(pack_ctx),
            generated_by="sre-ana",
            action_items=["Rate-limit cache purges", ""],
            now=at,
            github={"api_url": github_url, "repo": "acme/runbooks", "token": "gh-token"},
        )
    with pack_ctx.session() as session:
        stored = session.scalars(select(Postmortem).where(Postmortem.generated_at == at)).one()

    assert done.issue_url == "https://github.example/acme/runbooks/issues/7"
    request = _GitHub.received[0]
    assert request["path"] == "/repos/acme/runbooks/issues"
    assert request["body"]["title"] == "Postmortem: INC-2741"
    assert request["body"]["labels"] == ["incident", "postmortem"]
    md = done.markdown
    assert "## Postmortem: INC-2741 — us-east gateway 5xx during cache purge" in md
    assert "**burn_alert** gateway/availability: page 1h/5m × 14.4" in md
    assert "**incident** INC-2741: started" in md
    assert "of the window's error budget consumed" in md
    assert "- [ ] Rate-limit cache purges" in md
    assert stored.issue_url == done.issue_url
    assert stored.action_items == [{"text": "Rate-limit cache purges", "done": False}]


def test_github_refusal_records_nothing(pack_ctx, github_url):
    at = datetime(2025, 11, 20, 10, tzinfo=UTC)
    with (
        pytest.raises(PostmortemError, match="HTTP 401 Bad credentials"),
        pack_ctx.session() as session,
    ):
        generate_postmortem(
            session,
            "INC-2741",
            slos=[],
            generated_by="sre-ana",
            now=at,
            github={"api_url": github_url, "repo": "acme/runbooks", "token": "wrong"},
        )
    with pack_ctx.session() as session:
        assert session.scalars(select(Postmortem).where(Postmortem.generated_at == at)).all() == []


# --------------------------------------------------------------------------------------------
# CLI: build, and `collect exports` (wired by the lead under the `collect` group)
# --------------------------------------------------------------------------------------------


def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **values: str) -> None:
    monkeypatch.setenv("QUARTERDECK_DATABASE_URL", f"sqlite:///{tmp_path / 'console.db'}")
    monkeypatch.setenv("QUARTERDECK_VAR_DIR", str(tmp_path))
    for name, value in values.items():
        monkeypatch.setenv(f"QUARTERDECK_{name}", value)


def test_cli_build_writes_a_pack_that_verifies(pack_ctx, tmp_path, monkeypatch):
    _env(monkeypatch, tmp_path, DEMO_MODE="true")
    out = tmp_path / "out" / "pack.zip"

    result = CliRunner().invoke(
        evidence_cli.app, ["build", "--sprint", "sprint-27", "--out", str(out), "--user", "mgr"]
    )

    assert result.exit_code == 0, result.output
    assert "signed by ed25519:" in result.output and "DEMO KEY" in result.output
    assert verify_pack(out).ok


def test_cli_build_refuses_without_a_signing_key_or_for_an_unknown_sprint(
    pack_ctx, tmp_path, monkeypatch
):
    _env(monkeypatch, tmp_path, DEMO_MODE="false", SECRET_KEY="a-real-secret-for-this-test")
    no_key = CliRunner().invoke(
        evidence_cli.app, ["build", "--sprint", "sprint-27", "--out", str(tmp_path / "a.zip")]
    )
    private, _ = generate_key_text()
    # The documented variable, and its `exports` fallback for settings without `evidence`.
    monkeypatch.setenv("QUARTERDECK_EVIDENCE__SIGNING_KEY", private)
    monkeypatch.setenv("QUARTERDECK_EXPORTS__EVIDENCE_SIGNING_KEY", private)
    unknown = CliRunner().invoke(
        evidence_cli.app, ["build", "--sprint", "sprint-99", "--out", str(tmp_path / "b.zip")]
    )

    assert no_key.exit_code == 2
    assert "QUARTERDECK_EVIDENCE__SIGNING_KEY" in no_key.output
    assert "quarterdeck evidence keygen" in no_key.output
    assert unknown.exit_code == 1
    assert "unknown sprint 'sprint-99'" in unknown.output
    assert not (tmp_path / "a.zip").exists() and not (tmp_path / "b.zip").exists()


def test_collect_exports_imports_an_nginx_log_once(ctx, tmp_path, monkeypatch):
    import typer

    from console.cli.collect_exports import exports as collect_exports
    from store.models import ExportEvent

    _env(monkeypatch, tmp_path, DEMO_MODE="true")
    line = {
        "time_iso8601": "2025-11-12T10:00:00+00:00",
        "req_id": "r1",
        "request_uri": "/exports/exp-1/download?token=x.y",
        "status": 200,
        "bytes_sent": 10,
        "upstream_http_x_export_id": "exp-1",
        "upstream_http_x_export_user": "ana",
        "upstream_http_x_export_timestamp": "2025-11-12T10:00:00Z",
    }
    log = tmp_path / "access.log"
    log.write_text(json.dumps(line) + "\n" + json.dumps({**line, "request_uri": "/"}) + "\n")
    cli = typer.Typer()
    cli.command()(collect_exports)

    first = CliRunner().invoke(cli, [str(log)])
    again = CliRunner().invoke(cli, [str(log)])

    assert first.exit_code == 0, first.output
    assert "1 new, 0 already there, 1 outside" in first.output
    assert "0 new, 1 already there" in again.output
    with ctx.session() as session:
        assert session.scalars(select(ExportEvent.user)).all() == ["ana"]
