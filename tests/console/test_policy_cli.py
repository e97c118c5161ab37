"""`quarterdeck bundles add/list`: a person adds tarballs and sees each revision's verdict."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from collectors.bundles import build_bundle, sign_files
from console.cli.main import app
from store.db import make_engine
from store.migrate import upgrade
from tests.collectors.test_bundles_signatures import files, rsa_pair


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    private, public = rsa_pair()
    engine = make_engine(f"sqlite:///{tmp_path / 'cli.db'}")
    upgrade(engine)
    engine.dispose()
    (tmp_path / "pub.pem").write_text(public)
    monkeypatch.setenv("QUARTERDECK_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("QUARTERDECK_DEMO_MODE", "true")
    monkeypatch.setenv("QUARTERDECK_OPA__PUBLIC_KEY", str(tmp_path / "pub.pem"))
    monkeypatch.setenv("QUARTERDECK_OPA__KEY_ID", "release")
    content = files("v7")
    sig = sign_files(content, key=private, algorithm="RS256", key_id="release")
    (tmp_path / "authz.tar.gz").write_bytes(build_bundle(content, signatures=sig))
    content["/acme/authz/policy.rego"] += b"allow := true\n"
    content["/.manifest"] = b'{"revision": "v8"}'
    (tmp_path / "tampered.tar.gz").write_bytes(build_bundle(content, signatures=sig))
    return tmp_path


def test_bundles_add_verifies_and_lists_each_revision_with_its_verdict(env: Path) -> None:
    runner = CliRunner()

    good = runner.invoke(app, ["bundles", "add", str(env / "authz.tar.gz")])
    bad = runner.invoke(app, ["bundles", "add", str(env / "tampered.tar.gz"), "--name", "authz"])
    again = runner.invoke(app, ["bundles", "add", str(env / "authz.tar.gz")])
    listing = runner.invoke(app, ["bundles", "list"])

    assert good.exit_code == 0, good.output
    assert "1 new revision(s)" in good.output
    assert "authz@v7\tverified\t3 files verified with key 'release' (RS256)" in good.output
    assert bad.exit_code == 0
    assert "0 new revision(s), 1 already known" in again.output
    lines = {line.split("\t")[0]: line for line in listing.output.splitlines()}
    assert "\tinvalid\t" in lines["authz@v8"]
    # OPA's own words for a file whose bytes differ from the signed hash.
    assert "digest mismatch" in lines["authz@v8"]
