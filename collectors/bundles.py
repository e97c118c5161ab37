"""The bundle registry's way in: read an OPA bundle tarball, verify its signature as OPA does.

Verification follows OPA's rules: the JWT in `.signatures.json` must verify with the configured
key; the set of files it lists must equal the bundle's files exactly; every listed hash must
match. JSON files are hashed after parsing with keys sorted recursively (OPA's canonical form).
A revision that fails any rule is stored as `invalid`, never as signed.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import jwt
from sqlalchemy.orm import Session

from collectors.base import InvalidItem
from store.ingest import IngestResult, record_rejects, upsert
from store.models import BundleRevision

log = logging.getLogger(__name__)

SOURCE = "bundles"
BUNDLE_SUFFIXES = (".tar.gz", ".tgz")
MAX_BUNDLE_BYTES = 64 * 1024 * 1024
_HASHES = {
    "MD5": "md5",
    "SHA-1": "sha1",
    "SHA-224": "sha224",
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
    "SHA-512-224": "sha512_224",
    "SHA-512-256": "sha512_256",
}


@dataclass(frozen=True)
class VerificationKey:
    """A key OPA would be configured with (`keys.<id>`): algorithm and key material."""

    key_id: str
    algorithm: str  # e.g. RS256, ES256, HS256
    key: str  # PEM public key, or the shared secret for HS*


@dataclass
class Bundle:
    """A parsed bundle: its files (path → bytes), manifest and signature verdict."""

    files: dict[str, bytes]
    manifest: dict[str, Any]
    signatures: list[str]
    sha256: str
    signature_status: str = "unsigned"
    signature_detail: str = ""
    key_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def revision(self) -> str:
        return str(self.manifest.get("revision") or "")


def read_bundle(data: bytes) -> Bundle:
    """Parse a gzipped bundle tarball; raises :class:`InvalidItem` when it is not one."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise InvalidItem(f"bundle: {len(data)} bytes exceeds the {MAX_BUNDLE_BYTES} byte limit")
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar.getmembers():
                if not member.isfile():
                    continue
                handle = tar.extractfile(member)
                if handle is None:
                    continue
                files["/" + member.name.removeprefix("./").lstrip("/")] = handle.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InvalidItem(f"bundle: not a gzipped tarball ({exc})") from exc
    manifest: dict[str, Any] = {}
    if "/.manifest" in files:
        try:
            manifest = json.loads(files["/.manifest"])
        except ValueError as exc:
            raise InvalidItem(f".manifest: not JSON ({exc})") from exc
        if not isinstance(manifest, dict):
            raise InvalidItem(".manifest: expected a JSON object")
        revision = manifest.get("revision", "")
        if not isinstance(revision, str):
            raise InvalidItem(".manifest: revision must be a string")
        roots = manifest.get("roots", [""])
        if not isinstance(roots, list) or not all(isinstance(r, str) for r in roots):
            raise InvalidItem(".manifest: roots must be a list of path prefixes (strings)")
    signatures: list[str] = []
    if "/.signatures.json" in files:
        try:
            doc = json.loads(files.pop("/.signatures.json"))
            signatures = list(doc.get("signatures") or [])
        except (ValueError, AttributeError) as exc:
            raise InvalidItem(f".signatures.json: not valid ({exc})") from exc
    return Bundle(
        files=files,
        manifest=manifest,
        signatures=signatures,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def file_digest(name: str, content: bytes, algorithm: str) -> str:
    """Hash one bundle file as OPA does (JSON files in canonical form)."""
    hasher = hashlib.new(_HASHES[algorithm])
    if name.endswith(".json") or name.endswith("/.manifest") or name == "/.manifest":
        try:
            value = json.loads(content)
            content = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
        except ValueError:
            pass
    hasher.update(content)
    return hasher.hexdigest()


def verify_bundle(bundle: Bundle, keys: dict[str, VerificationKey]) -> Bundle:
    """Set the bundle's signature verdict (`verified`, `unsigned` or `invalid`) with a reason."""
    if not bundle.signatures:
        bundle.signature_status, bundle.signature_detail = "unsigned", "no .signatures.json"
        return bundle
    token = bundle.signatures[0]
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        return _invalid(bundle, f"signature is not a JWT: {exc}")
    key_id = header.get("kid") or (next(iter(keys)) if len(keys) == 1 else None)
    bundle.key_id = key_id
    key = keys.get(key_id or "")
    if key is None:
        return _invalid(bundle, f"no verification key configured for kid {key_id!r}")
    try:
        claims = jwt.decode(
            token, key.key, algorithms=[key.algorithm], options={"verify_aud": False}
        )
    except jwt.PyJWTError as exc:
        return _invalid(bundle, f"JWT signature does not verify with key {key.key_id!r}: {exc}")
    listed = claims.get("files")
    if not isinstance(listed, list):
        return _invalid(bundle, "JWT payload has no files list")
    names = {str(f.get("name", "")).lstrip("/") for f in listed if isinstance(f, dict)}
    actual = {n.lstrip("/") for n in bundle.files}
    if names != actual:
        missing, extra = sorted(actual - names), sorted(names - actual)
        return _invalid(
            bundle, f"file list differs: unsigned files {missing}, absent files {extra}"
        )
    for entry in listed:
        name = "/" + str(entry.get("name", "")).lstrip("/")
        algorithm = str(entry.get("algorithm", "")).upper()
        if algorithm not in _HASHES:
            return _invalid(bundle, f"{name}: unsupported hash algorithm {algorithm!r}")
        if file_digest(name, bundle.files[name], algorithm) != entry.get("hash"):
            return _invalid(bundle, f"{name}: hash does not match the signed hash")
    bundle.signature_status = "verified"
    bundle.signature_detail = (
        f"{len(listed)} files verified with key {key.key_id!r} ({key.algorithm})"
    )
    return bundle


def _invalid(bundle: Bundle, reason: str) -> Bundle:
    bundle.signature_status, bundle.signature_detail = "invalid", reason
    return bundle


def sign_files(
    files: dict[str, bytes],
    *,
    key: str,
    algorithm: str,
    key_id: str,
    algorithm_hash: str = "SHA-256",
) -> bytes:
    """Return a `.signatures.json` for ``files`` (what `opa sign` writes)."""
    listed = [
        {
            "name": name.lstrip("/"),
            "hash": file_digest(name, content, algorithm_hash),
            "algorithm": algorithm_hash,
        }
        for name, content in sorted(files.items())
    ]
    token = jwt.encode({"files": listed}, key, algorithm=algorithm, headers={"kid": key_id})
    return json.dumps({"signatures": [token]}).encode()


def build_bundle(files: dict[str, bytes], *, signatures: bytes | None = None) -> bytes:
    """Pack ``files`` (and optionally `.signatures.json`) into a gzipped bundle tarball."""
    buffer = io.BytesIO()
    entries = dict(files)
    if signatures is not None:
        entries["/.signatures.json"] = signatures
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for name, content in sorted(entries.items()):
            info = tarfile.TarInfo(name.lstrip("/"))
            info.size = len(content)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def register_bundle(
    session: Session,
    *,
    name: str,
    data: bytes,
    source: str,
    keys: dict[str, VerificationKey],
    added_at: datetime,
) -> tuple[IngestResult, Bundle]:
    """Read, verify and store one bundle revision (re-adding the same revision adds nothing)."""
    bundle = verify_bundle(read_bundle(data), keys)
    if not bundle.revision:
        raise InvalidItem(".manifest: no revision; the registry keys bundles by revision")
    result = IngestResult()
    result.add(
        upsert(
            session,
            BundleRevision,
            [
                {
                    "bundle": name,
                    "revision": bundle.revision,
                    "sha256": bundle.sha256,
                    "manifest": bundle.manifest,
                    "signature_status": bundle.signature_status,
                    "signature_detail": bundle.signature_detail,
                    "key_id": bundle.key_id,
                    "source": source,
                    "added_at": added_at,
                }
            ],
            conflict=("bundle", "revision"),
        )
    )
    return result, bundle


@dataclass(frozen=True)
class BundleObject:
    """One bundle tarball found in the registry source: bundle name, where it is, its bytes."""

    name: str
    location: str
    data: bytes


def _bundle_name(relative: Path) -> str:
    """`<bundle>/<file>.tar.gz` names the bundle by its folder; a top-level file by its stem."""
    if len(relative.parts) > 1:
        return relative.parts[0]
    name = relative.name
    for suffix in BUNDLE_SUFFIXES:
        name = name.removesuffix(suffix)
    return name


def fetch_folder(root: Path) -> Iterator[BundleObject]:
    """Read every `*.tar.gz`/`*.tgz` under ``root`` (a local registry folder), sorted by path."""
    if not root.is_dir():
        raise InvalidItem(f"bundle source {root}: no such folder")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if not path.name.endswith(BUNDLE_SUFFIXES):
            continue
        if path.stat().st_size > MAX_BUNDLE_BYTES:
            raise InvalidItem(f"{path}: over the {MAX_BUNDLE_BYTES} byte bundle limit")
        yield BundleObject(_bundle_name(path.relative_to(root)), str(path), path.read_bytes())


def parse_s3_url(url: str) -> tuple[str, str]:
    """Split `s3://bucket/prefix` into (bucket, prefix without a trailing slash)."""
    if not url.startswith("s3://") or not url[5:].split("/", 1)[0]:
        raise InvalidItem(f"bundle source {url!r}: expected s3://bucket/prefix")
    bucket, _, prefix = url[5:].partition("/")
    return bucket, prefix.strip("/")


def fetch_s3(client: Any, *, bucket: str, prefix: str) -> Iterator[BundleObject]:
    """Read every bundle tarball under ``prefix`` with S3 `ListObjectsV2` + `GetObject`.

    ``client`` is a boto3 S3 client built by the caller (endpoint and credentials are theirs).
    """
    paginator = client.get_paginator("list_objects_v2")
    base = f"{prefix}/" if prefix else ""
    for page in paginator.paginate(Bucket=bucket, Prefix=base):
        for obj in page.get("Contents", []):
            key = str(obj["Key"])
            if not key.endswith(BUNDLE_SUFFIXES):
                continue
            if int(obj.get("Size", 0)) > MAX_BUNDLE_BYTES:
                raise InvalidItem(f"s3://{bucket}/{key}: over the {MAX_BUNDLE_BYTES} byte limit")
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            yield BundleObject(_bundle_name(Path(key[len(base) :])), f"s3://{bucket}/{key}", body)


def load_registry(
    session: Session,
    objects: Iterable[BundleObject],
    *,
    keys: dict[str, VerificationKey],
    added_at: datetime,
) -> IngestResult:
    """Register every bundle object; unreadable ones are dead-lettered with the reason.

    A revision that does not verify is stored as `invalid` with the reason, never skipped, so
    the console shows it for what it is.
    """
    result = IngestResult()
    rejects: list[tuple[int | None, str, Any]] = []
    for index, obj in enumerate(objects):
        try:
            one, bundle = register_bundle(
                session,
                name=obj.name,
                data=obj.data,
                source=obj.location,
                keys=keys,
                added_at=added_at,
            )
        except InvalidItem as exc:
            rejects.append((index, f"{obj.location}: {exc}", {"location": obj.location}))
            continue
        log.info("bundle %s@%s: %s", obj.name, bundle.revision, bundle.signature_status)
        result.merge(one)
    if rejects:
        result.rejected = record_rejects(session, source=SOURCE, rejects=rejects)
        result.reasons = [reason for _, reason, _ in rejects]
    return result
