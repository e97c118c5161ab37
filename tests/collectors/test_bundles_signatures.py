"""Bundle signatures verified the way OPA does, with RS256 keys made here, and the registry read
from a folder and from an S3 prefix (moto's server on loopback)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from collectors.base import InvalidItem
from collectors.bundles import (
    VerificationKey,
    build_bundle,
    fetch_folder,
    fetch_s3,
    load_registry,
    parse_s3_url,
    read_bundle,
    sign_files,
    verify_bundle,
)
from store.models import BundleRevision, IngestReject

ADDED = datetime(2025, 11, 12, 8, tzinfo=UTC)


def rsa_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@pytest.fixture(scope="module")
def keys() -> tuple[str, str, str]:
    private, public = rsa_pair()
    _, other_public = rsa_pair()
    return private, public, other_public


def files(revision: str = "v2") -> dict[str, bytes]:
    return {
        "/.manifest": json.dumps({"revision": revision, "roots": ["acme"]}).encode(),
        "/acme/authz/policy.rego": b"package acme.authz\n\ndefault allow := false\n",
        "/acme/data.json": json.dumps({"b": 1, "a": {"z": 2, "y": 3}}).encode(),
    }


def signed(content: dict[str, bytes], private: str) -> bytes:
    sig = sign_files(content, key=private, algorithm="RS256", key_id="release")
    return build_bundle(content, signatures=sig)


def verdict(data: bytes, public: str) -> tuple[str, str]:
    bundle = verify_bundle(
        read_bundle(data), {"release": VerificationKey("release", "RS256", public)}
    )
    return bundle.signature_status, bundle.signature_detail


def test_rs256_signed_bundle_verifies(keys: tuple[str, str, str]) -> None:
    private, public, _ = keys
    status, detail = verdict(signed(files(), private), public)
    assert status == "verified"
    assert detail == "3 files verified with key 'release' (RS256)"


def test_tampered_file_is_invalid_and_named(keys: tuple[str, str, str]) -> None:
    private, public, _ = keys
    content = files()
    sig = sign_files(content, key=private, algorithm="RS256", key_id="release")
    content["/acme/authz/policy.rego"] += b"\nallow := true\n"

    status, detail = verdict(build_bundle(content, signatures=sig), public)

    assert status == "invalid"
    assert detail.startswith("acme/authz/policy.rego: digest mismatch (want: ")


def test_missing_file_is_invalid(keys: tuple[str, str, str]) -> None:
    private, public, _ = keys
    content = files()
    sig = sign_files(content, key=private, algorithm="RS256", key_id="release")
    del content["/acme/data.json"]

    status, detail = verdict(build_bundle(content, signatures=sig), public)

    assert status == "invalid"
    assert detail == (
        "file(s) [acme/data.json] specified in bundle signatures but not found in the target bundle"
    )


def test_wrong_key_is_invalid(keys: tuple[str, str, str]) -> None:
    private, _, other_public = keys
    status, detail = verdict(signed(files(), private), other_public)
    assert status == "invalid"
    assert detail == "failed to verify JWT signature: crypto/rsa: verification error"


def test_json_files_are_hashed_in_canonical_form(keys: tuple[str, str, str]) -> None:
    private, public, _ = keys
    content = files()
    sig = sign_files(content, key=private, algorithm="RS256", key_id="release")
    content["/acme/data.json"] = b'{ "a": {"y": 3, "z": 2},\n  "b": 1 }'  # same value, reformatted
    assert verdict(build_bundle(content, signatures=sig), public)[0] == "verified"


def test_manifest_with_bad_roots_is_refused() -> None:
    content = files()
    content["/.manifest"] = json.dumps({"revision": "v1", "roots": "acme"}).encode()
    with pytest.raises(InvalidItem, match="roots must be a list"):
        read_bundle(build_bundle(content))


def write_registry(root: Path, private: str) -> None:
    (root / "authz").mkdir(parents=True)
    (root / "authz" / "v1.tar.gz").write_bytes(signed(files("v1"), private))
    (root / "authz" / "v2.tar.gz").write_bytes(build_bundle(files("v2")))  # unsigned
    (root / "authz" / "broken.tar.gz").write_bytes(b"not a tarball")
    (root / "authz" / "README.txt").write_text("ignored")


def stored(session: Session) -> dict[str, str]:
    rows = session.scalars(select(BundleRevision).order_by(BundleRevision.revision)).all()
    return {r.revision: r.signature_status for r in rows}


def test_folder_registry_stores_every_revision_with_its_verdict(
    engine: Engine, tmp_path: Path, keys: tuple[str, str, str]
) -> None:
    private, public, _ = keys
    write_registry(tmp_path / "bundles", private)
    verification = {"release": VerificationKey("release", "RS256", public)}

    with Session(engine, expire_on_commit=False) as session, session.begin():
        first = load_registry(
            session, fetch_folder(tmp_path / "bundles"), keys=verification, added_at=ADDED
        )
    with Session(engine, expire_on_commit=False) as session, session.begin():
        again = load_registry(
            session, fetch_folder(tmp_path / "bundles"), keys=verification, added_at=ADDED
        )
        assert stored(session) == {"v1": "verified", "v2": "unsigned"}
        reject = session.scalars(select(IngestReject)).one()

    assert (first.stored, first.rejected) == (2, 1)
    assert (again.stored, again.duplicates) == (0, 2)
    assert "broken.tar.gz" in reject.reason and "not a gzipped tarball" in reject.reason


@pytest.fixture
def s3_client() -> Iterator[object]:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client(
        "s3",
        endpoint_url=f"http://{host}:{port}",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    yield client
    server.stop()


def test_s3_prefix_registry_reads_bundles_under_the_prefix(
    engine: Engine, s3_client: object, keys: tuple[str, str, str]
) -> None:
    private, _, other_public = keys
    client: object = s3_client
    client.create_bucket(Bucket="policy")  # type: ignore[attr-defined]
    client.put_object(  # type: ignore[attr-defined]
        Bucket="policy", Key="opa/authz/v1.tar.gz", Body=signed(files("v1"), private)
    )
    client.put_object(  # type: ignore[attr-defined]
        Bucket="policy", Key="other/authz/v9.tar.gz", Body=signed(files("v9"), private)
    )
    bucket, prefix = parse_s3_url("s3://policy/opa/")

    with Session(engine, expire_on_commit=False) as session, session.begin():
        result = load_registry(
            session,
            fetch_s3(client, bucket=bucket, prefix=prefix),
            keys={"release": VerificationKey("release", "RS256", other_public)},
            added_at=ADDED,
        )
        row = session.scalars(select(BundleRevision)).one()

    assert result.stored == 1
    assert (row.bundle, row.revision, row.source) == (
        "authz",
        "v1",
        "s3://policy/opa/authz/v1.tar.gz",
    )
    assert row.signature_status == "invalid"  # signed, but not with the configured key
