"""The bundle registry's way in: read an OPA bundle tarball, verify it exactly as OPA 1.9 does,
sign and build bundles whose hashes are the ones `opa build` writes.

OPA's rules (v1/bundle/bundle.go, verify.go, hash.go; the captures in
`reference/captures/opa-bundles` are the judge):

- `.signatures.json` holds exactly one JWT. The key is the configured `signing.keyid`, else the
  JWT header's `kid`, else the payload's deprecated `keyid`. The signature is checked with the
  configured key's algorithm (not the header's). The signed `scope` must equal the configured
  one (`signing.scope`, else the key's `scope`; both may be empty).
- Every file of the tarball except `.signatures.json` must be listed with a matching hash, in
  tar order; listed files that are absent fail afterwards. `exclude_files` globs are skipped.
- Hashes: files named `data.json`, `data.yaml`, `.manifest` (and `signatures.json`) are parsed
  and hashed in a canonical JSON form (keys sorted bytewise, no whitespace, number literals
  kept, UTF-8 raw, no HTML escaping); every other file, `.rego`, `data.yml` or
  `schema/input.json` included, is hashed as raw bytes.
- No `.signatures.json`: refused only when a `signing.keyid` is configured.

A revision that fails any rule is stored as `invalid` with OPA's own message, never as signed.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import io
import json
import logging
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from collectors.base import InvalidItem
from store.ingest import IngestResult, record_rejects, upsert
from store.models import BundleRevision

log = logging.getLogger(__name__)

SOURCE = "bundles"
BUNDLE_SUFFIXES = (".tar.gz", ".tgz")
MAX_BUNDLE_BYTES = 64 * 1024 * 1024
SIGNATURES_FILE = "/.signatures.json"
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
# filepath.Base(name) values OPA parses before hashing (bundle.IsStructuredDoc).
STRUCTURED_NAMES = frozenset({"data.json", "data.yaml", ".manifest", "signatures.json"})
DATA_NAMES = frozenset({"data.json", "data.yaml", "data.yml"})
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+@-]{0,199}$")


@dataclass(frozen=True)
class VerificationKey:
    """A key OPA would be configured with (`keys.<id>`): algorithm, key material, scope."""

    key_id: str
    algorithm: str  # e.g. RS256, ES256, HS256
    key: str  # PEM public key (or certificate), or the shared secret for HS*
    scope: str = ""


@dataclass(frozen=True)
class SigningConfig:
    """OPA's `bundles.<name>.signing` block: which key, which scope, which files to skip."""

    keyid: str = ""
    scope: str = ""
    exclude_files: tuple[str, ...] = ()


@dataclass
class Bundle:
    """A parsed bundle: its files (path → bytes, tar order), manifest and signature verdict."""

    files: dict[str, bytes]
    manifest: dict[str, Any]
    signatures: list[str]
    sha256: str
    signature_status: str = "unsigned"
    signature_detail: str = ""
    key_id: str | None = None
    signatures_plugin: str = ""
    has_signatures_file: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def revision(self) -> str:
        return str(self.manifest.get("revision") or "")


# --------------------------------------------------------------------------------------------
# Canonical JSON (OPA's hash form) and Go's encoding/json output
# --------------------------------------------------------------------------------------------


class _Number(str):
    """A JSON number kept as its literal text (Go's json.Number)."""


def _parse_json(raw: bytes | str) -> Any:
    return json.loads(raw, parse_float=_Number, parse_int=_Number, parse_constant=_reject_const)


def _reject_const(name: str) -> Any:
    raise ValueError(f"invalid character {name[0]!r} looking for beginning of value")


def _go_float(value: float) -> str:
    """A float64 as Go's encoding/json writes it (shortest digits; exponent outside 1e-6…1e21)."""
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"unsupported value: {value}")
    if value == 0:
        return "-0" if str(value).startswith("-") else "0"
    magnitude = abs(value)
    text = repr(value)
    if 1e-6 <= magnitude < 1e21:
        from decimal import Decimal

        text = format(Decimal(text), "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return text
    mantissa, _, exponent = text.partition("e")  # repr uses an exponent out of this range
    sign = "-" if exponent.startswith("-") else "+"
    return f"{mantissa}e{sign}{exponent.lstrip('+-').lstrip('0') or '0'}"


def _yaml_value(value: Any) -> Any:
    """A YAML-decoded value as JSON numbers after YAML→JSON conversion (`1.50` becomes `1.5`)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return _Number(str(value))
    if isinstance(value, float):
        return _Number(_go_float(value))
    if isinstance(value, dict):
        return {str(k): _yaml_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_yaml_value(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def parse_structured(content: bytes) -> Any:
    """Parse a data/manifest file as OPA's util.Unmarshal does: JSON, else YAML as JSON."""
    try:
        return _parse_json(content)
    except ValueError:
        pass
    import yaml

    try:
        loaded = yaml.safe_load(content.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(f"error converting YAML to JSON: {exc}") from exc
    return _yaml_value(loaded)


def _encode_string(text: str, *, html: bool) -> str:
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch in "\n\r\t\b\f":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}[ch])
        elif code < 0x20 or code in (0x2028, 0x2029) or (html and ch in "<>&"):
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\ufffd")  # Go writes invalid UTF-8 as U+FFFD
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _encode(value: Any, *, html: bool) -> str:
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: k.encode("utf-8", "surrogatepass"))
        inner = ",".join(
            _encode_string(k, html=html) + ":" + _encode(value[k], html=html) for k in keys
        )
        return "{" + inner + "}"
    if isinstance(value, list):
        return "[" + ",".join(_encode(v, html=html) for v in value) + "]"
    if isinstance(value, _Number):
        return str(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return _encode_string(value, html=html)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def canonical_json(value: Any) -> bytes:
    """OPA's hash form of a parsed JSON value (keys sorted bytewise, literals kept, no escaping)."""
    return _encode(value, html=False).encode("utf-8")


def go_json(value: Any) -> bytes:
    """What Go's `json.Marshal` writes for a parsed value (HTML-escaped, keys sorted)."""
    return _encode(value, html=True).encode("utf-8")


def is_structured(name: str) -> bool:
    return name.rsplit("/", 1)[-1] in STRUCTURED_NAMES


def file_digest(name: str, content: bytes, algorithm: str = "SHA-256") -> str:
    """Hash one bundle file as OPA does (data files and `.manifest` in canonical form)."""
    try:
        hasher = hashlib.new(_HASHES[algorithm])
    except KeyError:
        raise ValueError(f"unsupported hashing algorithm: {algorithm}") from None
    hasher.update(canonical_json(parse_structured(content)) if is_structured(name) else content)
    return hasher.hexdigest()


# --------------------------------------------------------------------------------------------
# Reading and verifying
# --------------------------------------------------------------------------------------------


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
    bundle = Bundle(
        files=files, manifest=manifest, signatures=[], sha256=hashlib.sha256(data).hexdigest()
    )
    if SIGNATURES_FILE in files:
        try:
            doc = json.loads(files.pop(SIGNATURES_FILE))
            if not isinstance(doc, dict):
                raise ValueError("expected a JSON object")
            signatures = doc.get("signatures") or []
            if not isinstance(signatures, list) or not all(isinstance(s, str) for s in signatures):
                raise ValueError("signatures must be a list of JWTs")
            bundle.signatures = list(signatures)
            bundle.signatures_plugin = str(doc.get("plugin") or "")
        except ValueError as exc:
            raise InvalidItem(f".signatures.json: not valid ({exc})") from exc
        bundle.has_signatures_file = bool(bundle.signatures or bundle.signatures_plugin)
    return bundle


def _b64(part: str) -> bytes:
    if "=" in part:
        raise ValueError("illegal base64 data (padding)")
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


_CURVES = {"ES256": ("P-256", 32), "ES384": ("P-384", 48), "ES512": ("P-521", 66)}
_DIGESTS = {"256": "SHA256", "384": "SHA384", "512": "SHA512"}


def _public_key(material: str) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    data = material.encode()
    if b"CERTIFICATE" in data:
        return x509.load_pem_x509_certificate(data).public_key()
    if b"PRIVATE KEY" in data:
        return serialization.load_pem_private_key(data, password=None).public_key()
    return serialization.load_pem_public_key(data)


def _verify_jws(signing_input: bytes, signature: bytes, key: VerificationKey) -> str | None:
    """Check a JWS signature with the key's own algorithm; None, or jwx's error text."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

    alg = key.algorithm.upper()
    family, bits = alg[:2], alg[2:]
    if bits not in _DIGESTS or family not in ("HS", "RS", "PS", "ES"):
        return f"unknown signature algorithm: {key.algorithm}"
    if family == "HS":
        digest = hmac.new(key.key.encode(), signing_input, f"sha{bits}").digest()
        return None if hmac.compare_digest(digest, signature) else "invalid HMAC signature"
    algorithm = getattr(hashes, _DIGESTS[bits])()
    try:
        public = _public_key(key.key)
    except ValueError as exc:
        return f"failed to parse key: {exc}"
    try:
        if family in ("RS", "PS"):
            if not isinstance(public, rsa.RSAPublicKey):
                return "invalid key type for RSA verification"
            pad = (
                padding.PKCS1v15()
                if family == "RS"
                else padding.PSS(mgf=padding.MGF1(algorithm), salt_length=padding.PSS.AUTO)
            )
            public.verify(signature, signing_input, pad, algorithm)
            return None
        curve, size = _CURVES[alg]
        if not isinstance(public, ec.EllipticCurvePublicKey):
            return "invalid key type for ECDSA verification"
        if len(signature) != 2 * size:
            return (
                "dsig.VerifyECDSA: failed to unpack ECDSA signature: "
                f'invalid signature length for curve "{curve}"'
            )
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        public.verify(utils.encode_dss_signature(r, s), signing_input, ec.ECDSA(algorithm))
        return None
    except InvalidSignature:
        # Not captured for ECDSA; the RSA text is Go's crypto/rsa.ErrVerification.
        return "crypto/rsa: verification error" if family != "ES" else "invalid ECDSA signature"


def opa_verdict(
    bundle: Bundle, keys: dict[str, VerificationKey], signing: SigningConfig | None
) -> tuple[str | None, str | None, int]:
    """What OPA 1.9 does with ``bundle``: (error message or None if it activates, key id, files).

    ``keys`` is OPA's `keys` map; ``signing`` its `signing` block. OPA builds a verification
    config when either is configured; with neither, a signed bundle is refused.
    """
    config = signing if signing is not None else (SigningConfig() if keys else None)
    if not bundle.has_signatures_file:
        if config is not None and config.keyid:
            return "bundle missing .signatures.json file", None, 0
        return None, None, 0
    if config is None:
        return "verification key not provided", None, 0
    if bundle.signatures_plugin not in ("", "_default"):
        return f"no verifier exists under id {bundle.signatures_plugin}", None, 0
    if not bundle.signatures:
        return ".signatures.json: missing JWT (expected exactly one)", None, 0
    if len(bundle.signatures) > 1:
        return ".signatures.json: multiple JWTs not supported (expected exactly one)", None, 0
    parts = bundle.signatures[0].split(".")
    if len(parts) != 3:
        return f"invalid number of segments: {len(parts)}", None, 0
    try:
        header = json.loads(_b64(parts[0]))
    except ValueError as exc:
        return f"failed to parse JWT headers: {exc}", None, 0
    try:
        payload = json.loads(_b64(parts[1]))
        signature = _b64(parts[2])
    except ValueError as exc:
        return str(exc), None, 0
    if not isinstance(header, dict) or not isinstance(payload, dict):
        return "failed to parse JWT: expected JSON objects", None, 0
    key_id = config.keyid or _text(header.get("kid")) or _text(payload.get("keyid"))
    if not key_id:
        return "verification key ID is empty", None, 0
    key = keys.get(key_id)
    if key is None:
        return f"verification key corresponding to ID {key_id} not found", key_id, 0
    problem = _verify_jws(f"{parts[0]}.{parts[1]}".encode(), signature, key)
    if problem is not None:
        return f"failed to verify JWT signature: {problem}", key_id, 0
    if _text(payload.get("scope")) != (config.scope or key.scope):
        return "scope mismatch", key_id, 0
    listed: dict[str, dict[str, Any]] = {}
    for entry in payload.get("files") or []:
        if isinstance(entry, dict):
            listed[_text(entry.get("name"))] = entry
    count = 0
    for name, content in bundle.files.items():
        path = name.lstrip("/")
        if any(fnmatch.fnmatchcase(path, pattern) for pattern in config.exclude_files):
            listed.pop(path, None)
            continue
        entry = listed.get(path)
        if entry is None:
            return f"file {path} not included in bundle signature", key_id, count
        algorithm = _text(entry.get("algorithm"))
        if not algorithm:
            return f"no hashing algorithm provided for file {path}", key_id, count
        try:
            got = file_digest(path, content, algorithm)
        except ValueError as exc:
            return str(exc), key_id, count
        want = _text(entry.get("hash")).lower()
        if want != got:
            return f"{path}: digest mismatch (want: {want}, got: {got})", key_id, count
        del listed[path]
        count += 1
    if listed:
        names = " ".join(listed)
        return (
            f"file(s) [{names}] specified in bundle signatures but not found in the target bundle",
            key_id,
            count,
        )
    return None, key_id, count


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def verify_bundle(
    bundle: Bundle, keys: dict[str, VerificationKey], signing: SigningConfig | None = None
) -> Bundle:
    """Set the verdict (`verified`, `unsigned` or `invalid`) with OPA's own reason.

    ``signing`` is what the registry's OPAs are configured with; by default the single key's
    id is the `signing.keyid` (what docs/policy.md recommends).
    """
    if signing is None and len(keys) == 1:
        signing = SigningConfig(keyid=next(iter(keys)))
    problem, key_id, count = opa_verdict(bundle, keys, signing)
    bundle.key_id = key_id
    if not bundle.has_signatures_file:
        bundle.signature_status = "unsigned"
        bundle.signature_detail = problem or "no .signatures.json (OPA activates it only "
        "when no signing.keyid is configured)"
        return bundle
    if problem is not None:
        bundle.signature_status, bundle.signature_detail = "invalid", problem
        return bundle
    key = keys[key_id or ""]
    bundle.signature_status = "verified"
    bundle.signature_detail = f"{count} files verified with key {key.key_id!r} ({key.algorithm})"
    return bundle


# --------------------------------------------------------------------------------------------
# Signing and building (what `opa build` / `opa sign` write)
# --------------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jws(header: dict[str, Any], payload: dict[str, Any], *, key: str, algorithm: str) -> str:
    """A compact JWS over compact JSON, serialised as `opa build` does (byte-identical for HS*)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

    alg = algorithm.upper()
    head = _b64url(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())
    # Top-level claims sorted (a Go map), file entries in struct order (name, hash, algorithm).
    ordered = {k: payload[k] for k in sorted(payload)}
    body = _b64url(json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode())
    signing_input = f"{head}.{body}".encode()
    family, bits = alg[:2], alg[2:]
    if bits not in _DIGESTS or family not in ("HS", "RS", "PS", "ES"):
        raise ValueError(f"unsupported signing algorithm {algorithm!r}")
    if family == "HS":
        signature = hmac.new(key.encode(), signing_input, f"sha{bits}").digest()
    else:
        digest = getattr(hashes, _DIGESTS[bits])()
        private = serialization.load_pem_private_key(key.encode(), password=None)
        if family in ("RS", "PS") and isinstance(private, rsa.RSAPrivateKey):
            pad = (
                padding.PKCS1v15()
                if family == "RS"
                else padding.PSS(mgf=padding.MGF1(digest), salt_length=padding.PSS.DIGEST_LENGTH)
            )
            signature = private.sign(signing_input, pad, digest)
        elif family == "ES" and isinstance(private, ec.EllipticCurvePrivateKey):
            size = _CURVES[alg][1]
            r, s = utils.decode_dss_signature(private.sign(signing_input, ec.ECDSA(digest)))
            signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
        else:
            raise ValueError(f"the key does not fit {algorithm}")
    return f"{head}.{body}.{_b64url(signature)}"


def _signing_order(name: str) -> tuple[int, str]:
    # `opa build` lists rego files, then data.json, then .manifest.
    base = name.rsplit("/", 1)[-1]
    return (2 if base == ".manifest" else 1 if base in DATA_NAMES else 0, name)


def sign_files(
    files: dict[str, bytes],
    *,
    key: str,
    algorithm: str,
    key_id: str = "default",
    claims: dict[str, Any] | None = None,
    algorithm_hash: str = "SHA-256",
) -> bytes:
    """Return the `.signatures.json` `opa build --signing-key` writes for ``files``.

    Header `{"alg","kid","typ":"JWT"}`, payload `{"files":[…],"keyid"}` (+ ``claims``, e.g.
    `scope`); every file hashed with OPA's rule (:func:`file_digest`).
    """
    listed = [
        {
            "name": name.lstrip("/"),
            "hash": file_digest(name, content, algorithm_hash),
            "algorithm": algorithm_hash,
        }
        for name, content in sorted(files.items(), key=lambda kv: _signing_order(kv[0]))
        if name != SIGNATURES_FILE
    ]
    payload: dict[str, Any] = {"files": listed, "keyid": key_id, **(claims or {})}
    token = sign_jws(
        {"alg": algorithm.upper(), "kid": key_id, "typ": "JWT"},
        payload,
        key=key,
        algorithm=algorithm,
    )
    doc = {"signatures": [token], "plugin": "_default"}
    return json.dumps(doc, indent=1).encode()


def build_bundle(files: dict[str, bytes], *, signatures: bytes | None = None) -> bytes:
    """Pack ``files`` into a deterministic gzipped tarball: same files → same bytes.

    Entries sorted by name (`.signatures.json` and `.manifest` last, as `opa build` does),
    names without a leading `/` (`opa build` writes one; OPA reads both), mode 0600,
    uid/gid 0, no owner names, mtime 0; gzip mtime 0.
    """
    entries = {"/" + name.lstrip("/"): content for name, content in files.items()}
    if signatures is not None:
        entries[SIGNATURES_FILE] = signatures
    special = {SIGNATURES_FILE: 1, "/.manifest": 2}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in sorted(entries, key=lambda n: (special.get(n, 0), n)):
            content = entries[name]
            info = tarfile.TarInfo(name.lstrip("/"))  # OPA reads `a/b` and `/a/b` alike
            info.size = len(content)
            info.mode = 0o600
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(content))
    import gzip

    return gzip.compress(buffer.getvalue(), compresslevel=9, mtime=0)


def _insert(into: dict[str, Any], path: list[str], value: Any, where: str) -> None:
    node = into
    for part in path:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise InvalidItem(f"{where}: data path /{'/'.join(path)} is not an object")
        node = child
    if not isinstance(value, dict):
        if not path:
            raise InvalidItem(f"{where}: root data must be an object")
        parent = into
        for part in path[:-1]:
            parent = parent[part]
        parent[path[-1]] = value
        return
    for key, item in value.items():
        if isinstance(item, dict) and isinstance(node.get(key), dict):
            _insert(node, [key], item, where)
        elif key in node:
            raise InvalidItem(f"{where}: merge error at /{'/'.join([*path, key])}")
        else:
            node[key] = item


def files_from_directory(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` as bundle path → bytes (what `opa sign -b DIR` signs)."""
    if not root.is_dir():
        raise InvalidItem(f"{root}: no such folder")
    out: dict[str, bytes] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel == ".signatures.json":
            continue
        out["/" + rel] = path.read_bytes()
    return out


def build_like_opa(
    root: Path, *, revision: str, prefix: str | None = None, roots: list[str] | None = None
) -> dict[str, bytes]:
    """The files `opa build -b ROOT --revision R` puts in a bundle, byte for byte.

    Data files (`data.json`, `data.yaml`, `data.yml`) are merged into one `/data.json` (Go's
    encoder: compact, keys sorted, HTML-escaped, number literals kept, a trailing newline);
    Rego files keep the path as given (``prefix``, default ROOT's name); `.manifest` gets the
    revision, roots (`[""]`) and `rego_version: 1`. Other files are left out, as OPA does.
    """
    prefix = root.name if prefix is None else prefix
    data: dict[str, Any] = {}
    rego: dict[str, bytes] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if path.suffix == ".rego":
            rego["/" + "/".join(p for p in (prefix, rel.as_posix()) if p)] = path.read_bytes()
        elif path.name in DATA_NAMES:
            try:
                value = parse_structured(path.read_bytes())
            except ValueError as exc:
                raise InvalidItem(f"{rel}: {exc}") from exc
            _insert(data, list(rel.parent.parts), value, str(rel))
    manifest = {"revision": revision, "roots": roots or [""], "rego_version": 1}
    files = {"/data.json": go_json(data) + b"\n"}
    files.update(rego)
    files["/.manifest"] = json.dumps(manifest, separators=(",", ":")).encode() + b"\n"
    return files


# --------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------


def stored_path(store_dir: Path, bundle: str, revision: str) -> Path | None:
    """Where the registry keeps its copy of a revision (None for names unsafe as file names)."""
    if not (_SAFE_NAME.match(bundle) and _SAFE_NAME.match(revision)):
        return None
    return store_dir / bundle / f"{revision}.tar.gz"


def store_copy(store_dir: Path, bundle: str, revision: str, data: bytes) -> Path | None:
    """Keep the registered bytes once (never overwritten), so the revision is served as stored."""
    path = stored_path(store_dir, bundle, revision)
    if path is None:
        return None
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)
    return path


def register_bundle(
    session: Session,
    *,
    name: str,
    data: bytes,
    source: str,
    keys: dict[str, VerificationKey],
    added_at: datetime,
    signing: SigningConfig | None = None,
    store_dir: Path | None = None,
) -> tuple[IngestResult, Bundle]:
    """Read, verify and store one bundle revision (re-adding the same revision adds nothing).

    With ``store_dir`` the tarball's bytes are kept there (`<bundle>/<revision>.tar.gz`) the
    first time the revision is registered, and served from there.
    """
    bundle = verify_bundle(read_bundle(data), keys, signing)
    if not bundle.revision:
        raise InvalidItem(".manifest: no revision; the registry keys bundles by revision")
    result = IngestResult()
    outcome = upsert(
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
    result.add(outcome)
    if store_dir is not None:
        registered = session.scalar(
            select(BundleRevision.sha256).where(
                BundleRevision.bundle == name, BundleRevision.revision == bundle.revision
            )
        )
        if registered == bundle.sha256:  # a different tarball under a known revision: not kept
            store_copy(store_dir, name, bundle.revision, data)
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
    signing: SigningConfig | None = None,
    store_dir: Path | None = None,
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
                signing=signing,
                store_dir=store_dir,
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
