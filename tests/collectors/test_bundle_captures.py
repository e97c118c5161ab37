"""The bundle registry against real OPA 1.9: every captured bundle gets OPA's verdict, and what
Quarterdeck builds and signs carries the hashes (and bytes) `opa build` wrote for the same files.

The judge is `reference/captures/opa-bundles/` (bundles built by the real `opa build`, the
verdict of a fresh `opa run` per case in `verify/results.json`, hashes in `hashes.json`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from collectors.bundles import (
    SigningConfig,
    VerificationKey,
    build_bundle,
    build_like_opa,
    canonical_json,
    file_digest,
    files_from_directory,
    opa_verdict,
    parse_structured,
    read_bundle,
    sign_files,
    verify_bundle,
)
from tests.conftest import CAPTURES, PROJECT_ROOT, peer_missing

BUNDLE_CAPTURES = CAPTURES / "opa-bundles"
REVISION = "2026.12.01-r1"


@pytest.fixture(scope="module")
def captured() -> Path:
    if not (BUNDLE_CAPTURES / "verify" / "results.json").is_file():
        peer_missing(f"the OPA bundle captures are not at {BUNDLE_CAPTURES}")
    return BUNDLE_CAPTURES


def _keys(root: Path) -> dict[str, VerificationKey]:
    """The `keys` map every verdict case ran with (tools/bundle_cases.py)."""
    return {
        "hs_key": VerificationKey("hs_key", "HS256", (root / "keys/hs256.secret").read_text()),
        "hs_wrong": VerificationKey("hs_wrong", "HS256", "some-other-secret"),
        "rsa_key": VerificationKey("rsa_key", "RS256", (root / "keys/rsa-public.pem").read_text()),
        "ec_key": VerificationKey("ec_key", "ES256", (root / "keys/ec-public.pem").read_text()),
    }


def _cases() -> list[dict[str, Any]]:
    path = BUNDLE_CAPTURES / "verify" / "results.json"
    return json.loads(path.read_text()) if path.is_file() else []


def _payload(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def _member(tarball: Path, name: str) -> bytes:
    with tarfile.open(tarball, "r:gz") as tar:
        handle = tar.extractfile(name)
        assert handle is not None
        return handle.read()


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["case"])
def test_every_captured_bundle_gets_real_opas_verdict(captured: Path, case: dict[str, Any]) -> None:
    bundle = read_bundle((captured / "bundles" / case["file"]).read_bytes())
    signing = case["signing"]
    config = None if signing is None else SigningConfig(signing["keyid"], signing.get("scope", ""))
    problem, _, _ = opa_verdict(bundle, _keys(captured), config)
    activated = case["health_bundles"] == 200
    assert activated == (case["status_active_revision"] is not None)
    # OPA's exact message, or None where OPA activated the bundle.
    assert problem == case["status_message"]
    assert (problem is None) == activated
    if activated and bundle.has_signatures_file:
        verdict = verify_bundle(bundle, _keys(captured), config)
        assert verdict.signature_status == "verified"
        assert verdict.revision == case["manifest_in_data_system_bundles"]["revision"]


def test_the_verdict_table_covers_every_captured_bundle(captured: Path) -> None:
    files = {c["file"] for c in _cases()}
    assert files == {p.name for p in (captured / "bundles").glob("*.tar.gz")}
    assert len(_cases()) == 16


def test_every_signed_hash_is_reproduced_file_by_file(captured: Path) -> None:
    hashes = json.loads((captured / "hashes.json").read_text())
    checked = 0
    for name, files in hashes.items():
        contents = read_bundle((captured / "bundles" / name).read_bytes()).files
        for path, info in files.items():
            if "hash_in_signature" not in info or name == "tampered.tar.gz":
                continue
            assert file_digest(path, contents["/" + path]) == info["hash_in_signature"], (
                name,
                path,
            )
            checked += 1
    assert checked == 27  # 5 opa-build bundles × 4 files + the 7 of opa-sign-dir


def test_opa_build_layout_is_reproduced_byte_for_byte(captured: Path) -> None:
    built = build_like_opa(captured / "src", revision=REVISION)
    opa_built = read_bundle((captured / "bundles" / "unsigned.tar.gz").read_bytes()).files
    assert list(built) == list(opa_built)  # /data.json, /src/*.rego, /.manifest
    for name, content in opa_built.items():
        assert built[name] == content, name  # merged data: HTML-escaped, literals, YAML 1.5


def test_quarterdeck_signs_with_the_hashes_opa_build_gives(captured: Path) -> None:
    hashes = json.loads((captured / "hashes.json").read_text())["hs256.tar.gz"]
    built = build_like_opa(captured / "src", revision=REVISION)
    secret = (captured / "keys/hs256.secret").read_text()
    ours = sign_files(built, key=secret, algorithm="HS256", key_id="default")
    token = json.loads(ours)["signatures"][0]
    listed = {f["name"]: f["hash"] for f in _payload(token)["files"]}
    assert listed == {path: info["hash_in_signature"] for path, info in hashes.items()}
    # HMAC is deterministic: the whole `.signatures.json` is the one `opa build` wrote.
    assert ours == _member(captured / "bundles" / "hs256.tar.gz", "/.signatures.json")


def test_rs256_and_es256_signatures_verify_as_opa_would(captured: Path) -> None:
    built = build_like_opa(captured / "src", revision=REVISION)
    for alg, private, key_id in (
        ("RS256", "rsa-private.pem", "rsa_key"),
        ("ES256", "ec-private.pem", "ec_key"),
    ):
        signatures = sign_files(built, key=(captured / "keys" / private).read_text(), algorithm=alg)
        bundle = read_bundle(build_bundle(built, signatures=signatures))
        problem, kid, count = opa_verdict(bundle, _keys(captured), SigningConfig(key_id))
        assert (problem, kid, count) == (None, key_id, 4)


def test_signing_a_directory_as_is_matches_opa_sign(captured: Path) -> None:
    decoded = json.loads((captured / "opa-sign" / "decoded.json").read_text())
    expected = {f["name"]: f["hash"] for f in decoded["jwt_payload"]["files"]}
    files = files_from_directory(captured / "src")
    signatures = sign_files(files, key="x", algorithm="HS256")
    listed = {
        f["name"]: f["hash"] for f in _payload(json.loads(signatures)["signatures"][0])["files"]
    }
    # `data.yaml` in canonical JSON, `acme/schema/input.json` as raw bytes: as OPA does.
    assert listed == expected


def test_claims_scope_is_signed_and_checked(captured: Path) -> None:
    built = build_like_opa(captured / "src", revision=REVISION)
    secret = (captured / "keys/hs256.secret").read_text()
    signatures = sign_files(built, key=secret, algorithm="HS256", claims={"scope": "write"})
    bundle = read_bundle(build_bundle(built, signatures=signatures))
    keys = _keys(captured)
    assert opa_verdict(bundle, keys, SigningConfig("hs_key", "write"))[0] is None
    assert opa_verdict(bundle, keys, SigningConfig("hs_key"))[0] == "scope mismatch"


def test_canonical_form_keeps_literals_and_escapes_nothing_html() -> None:
    value = parse_structured('{"b": 1.50, "a": "Übergröße <b>&\u2028", "big": 1e3}'.encode())
    assert canonical_json(value) == '{"a":"Übergröße <b>&\\u2028","b":1.50,"big":1e3}'.encode()
    assert canonical_json(parse_structured(b"rps: 1.50\nn: 10\n")) == b'{"n":10,"rps":1.5}'


# --- the demo's bundles ------------------------------------------------------------------------


def test_demo_bundle_exercises_the_hashing_path_and_verifies() -> None:
    from demo.seed import REV_NEW, bundle_tarball, demo_bundle_files, demo_verification_keys

    files = demo_bundle_files(REV_NEW)
    data = files["/acme/data.json"]
    assert "Übergröße".encode() in data and b"1.50" in data
    # Hashing raw bytes would differ: only OPA's canonical form gives the signed hash.
    assert file_digest("/acme/data.json", data) != hashlib.sha256(data).hexdigest()
    bundle = verify_bundle(read_bundle(bundle_tarball(REV_NEW)), demo_verification_keys())
    assert bundle.signature_status == "verified", bundle.signature_detail
    assert opa_verdict(bundle, demo_verification_keys(), SigningConfig("demo"))[0] is None


def test_demo_tarball_is_the_same_bytes_in_separate_processes() -> None:
    from demo.seed import REV_NEW, REV_OLD, bundle_tarball

    script = (
        "import hashlib, sys; from demo.seed import bundle_tarball; "
        "print(' '.join(hashlib.sha256(bundle_tarball(r)).hexdigest() for r in sys.argv[1:]))"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", script, REV_OLD, REV_NEW],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        for _ in range(2)
    ]
    here = [hashlib.sha256(bundle_tarball(r)).hexdigest() for r in (REV_OLD, REV_NEW)]
    assert runs[0] == runs[1] == here
    assert here[0] != here[1]


def test_tarballs_are_deterministic_with_fixed_metadata() -> None:
    files = {"/b.rego": b"package b\n", "/.manifest": b'{"revision":"r"}', "/a/data.json": b"{}"}
    first = build_bundle(files, signatures=b"{}")
    assert build_bundle(dict(reversed(files.items())), signatures=b"{}") == first
    assert first[4:8] == b"\x00\x00\x00\x00"  # gzip mtime 0
    with tarfile.open(fileobj=__import__("io").BytesIO(first), mode="r:gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == [
        "a/data.json",
        "b.rego",
        ".signatures.json",
        ".manifest",
    ]
    assert {(m.mode, m.uid, m.gid, m.mtime, m.uname) for m in members} == {(0o600, 0, 0, 0, "")}
