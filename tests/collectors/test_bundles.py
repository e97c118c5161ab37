import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from collectors.base import InvalidItem
from collectors.bundles import (
    VerificationKey,
    build_bundle,
    read_bundle,
    register_bundle,
    sign_files,
    verify_bundle,
)
from store.models import BundleRevision

KEY = "a-shared-secret-of-at-least-32-bytes!!"
KEYS = {"ci": VerificationKey("ci", "HS256", KEY)}
FILES = {
    "/.manifest": json.dumps({"revision": "r42", "roots": ["acme"]}).encode(),
    "/acme/policy.rego": b"package acme\n\ndefault allow := false\n",
    "/acme/data.json": b'{"b": 1, "a": {"y": 2, "x": 1}}',
}


def signed(files=FILES) -> bytes:
    return build_bundle(
        files, signatures=sign_files(files, key=KEY, algorithm="HS256", key_id="ci")
    )


def test_signed_bundle_verifies_and_reads_its_manifest():
    bundle = verify_bundle(read_bundle(signed()), KEYS)
    assert bundle.revision == "r42"
    assert bundle.signature_status == "verified"


def test_tampered_file_fails_verification_with_the_file_named():
    data = signed()
    tampered = dict(FILES) | {"/acme/policy.rego": b"package acme\n\ndefault allow := true\n"}
    good = read_bundle(data)
    forged = build_bundle(tampered, signatures=json.dumps({"signatures": good.signatures}).encode())
    bundle = verify_bundle(read_bundle(forged), KEYS)
    assert bundle.signature_status == "invalid"
    assert bundle.signature_detail.startswith("acme/policy.rego: digest mismatch (want: ")


def test_extra_unsigned_file_fails_verification():
    good = read_bundle(signed())
    extra = dict(FILES) | {"/acme/backdoor.rego": b"package acme\n"}
    forged = build_bundle(extra, signatures=json.dumps({"signatures": good.signatures}).encode())
    bundle = verify_bundle(read_bundle(forged), KEYS)
    assert bundle.signature_status == "invalid"
    assert bundle.signature_detail == "file acme/backdoor.rego not included in bundle signature"


def test_wrong_key_and_unsigned_bundles_are_never_shown_as_signed():
    other = {"ci": VerificationKey("ci", "HS256", "another-secret-that-is-long-enough-32b")}
    assert verify_bundle(read_bundle(signed()), other).signature_status == "invalid"
    assert verify_bundle(read_bundle(build_bundle(FILES)), KEYS).signature_status == "unsigned"


def test_not_a_tarball_is_refused_with_a_reason():
    with pytest.raises(InvalidItem, match="not a gzipped tarball"):
        read_bundle(b"hello")


def test_registering_the_same_revision_twice_adds_one_row(engine):
    at = datetime(2025, 11, 12, tzinfo=UTC)
    with Session(engine) as session, session.begin():
        register_bundle(session, name="authz", data=signed(), source="t", keys=KEYS, added_at=at)
        register_bundle(session, name="authz", data=signed(), source="t", keys=KEYS, added_at=at)
    with Session(engine) as session:
        rows = session.scalars(select(BundleRevision)).all()
    assert [(r.revision, r.signature_status) for r in rows] == [("r42", "verified")]
