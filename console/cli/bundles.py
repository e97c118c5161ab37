"""`quarterdeck bundles …`: add bundle tarballs to the registry, sync it from its source, list it.

Every revision is verified as OPA would verify it (`QUARTERDECK_OPA__PUBLIC_KEY`,
`…__KEY_ID`, `…__KEY_ALGORITHM`) and stored with its verdict; one that fails is listed as
`invalid` with the reason, never as signed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from collectors.base import InvalidItem
from collectors.bundles import (
    BundleObject,
    SigningConfig,
    VerificationKey,
    build_bundle,
    build_like_opa,
    fetch_folder,
    fetch_s3,
    files_from_directory,
    load_registry,
    parse_s3_url,
    read_bundle,
    sign_files,
    verify_bundle,
)
from console.context import AppContext
from console.settings.opa import OpaSettings
from store.ingest import record_sync_run
from store.queries.policy import bundle_revisions_frame

NAME = "bundles"
app = typer.Typer(no_args_is_help=True, help="The OPA bundle registry.")

EXIT_INVALID = 4


def verification_keys(settings: OpaSettings) -> dict[str, VerificationKey]:
    """The configured verification key as OPA's `keys` map (empty when none is configured)."""
    material = settings.public_key_material()
    if material is None:
        return {}
    return {settings.key_id: VerificationKey(settings.key_id, settings.key_algorithm, material)}


def signing_config(settings: OpaSettings) -> SigningConfig:
    """The `signing` block the registry's OPAs use: `keyid` = the configured key id, scope."""
    return SigningConfig(keyid=settings.key_id, scope=settings.signing_scope)


def _context() -> AppContext:
    from console.cli.common import _context as cli_context

    return cli_context()


def _load(ctx: AppContext, objects: Iterable[BundleObject], source: str) -> None:
    from console.wiring import registry_dir

    started = datetime.now(UTC)
    keys = verification_keys(ctx.settings.opa)
    try:
        with ctx.session() as session:
            result = load_registry(
                session,
                objects,
                keys=keys,
                added_at=started,
                signing=signing_config(ctx.settings.opa) if keys else None,
                store_dir=registry_dir(ctx.settings),
            )
            record_sync_run(session, source="bundles", started_at=started, result=result)
    except InvalidItem as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_INVALID) from exc
    typer.echo(
        f"{source}: {result.stored} new revision(s), {result.duplicates} already known, "
        f"{result.rejected} unreadable"
    )
    for reason in result.reasons:
        typer.echo(f"  rejected: {reason}", err=True)
    if not keys:
        typer.echo(
            "note: no verification key configured (QUARTERDECK_OPA__PUBLIC_KEY): "
            "signed revisions are stored as invalid",
            err=True,
        )


@app.command("add")
def add(
    file: Annotated[Path, typer.Argument(help="bundle tarball (.tar.gz)", exists=True)],
    name: Annotated[str | None, typer.Option(help="bundle name (default: file name)")] = None,
) -> None:
    """Verify FILE and add its revision to the registry."""
    ctx = _context()
    bundle = name or file.name.removesuffix(".tar.gz").removesuffix(".tgz")
    _load(ctx, [BundleObject(bundle, str(file.resolve()), file.read_bytes())], str(file))
    _show(ctx, bundle)


@app.command("sync")
def sync(
    source: Annotated[
        str | None, typer.Argument(help="folder or s3://bucket/prefix (default: settings)")
    ] = None,
) -> None:
    """Register every bundle tarball under the registry source (`<bundle>/<file>.tar.gz`)."""
    ctx = _context()
    where = source or ctx.settings.opa.bundle_source
    if not where:
        typer.echo("error: no source given and QUARTERDECK_OPA__BUNDLE_SOURCE is not set", err=True)
        raise typer.Exit(2)
    if where.startswith("s3://"):
        import boto3

        bucket, prefix = parse_s3_url(where)
        client = boto3.client("s3", endpoint_url=ctx.settings.opa.s3_endpoint_url)
        _load(ctx, fetch_s3(client, bucket=bucket, prefix=prefix), where)
    else:
        _load(ctx, fetch_folder(Path(where)), where)
    _show(ctx, None)


@app.command("sign")
def sign(
    directory: Annotated[Path, typer.Argument(help="bundle source folder", file_okay=False)],
    signing_key: Annotated[
        str, typer.Option(help="PEM private key file, or the HMAC secret (HS*) or its file")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="tarball to write")],
    signing_alg: Annotated[str, typer.Option(help="RS256, ES256, PS256, HS256, …")] = "RS256",
    key_id: Annotated[str, typer.Option(help="`kid` of the JWT (OPA's keys.<id>)")] = "default",
    scope: Annotated[str | None, typer.Option(help="signed scope (OPA signing.scope)")] = None,
    revision: Annotated[
        str | None,
        typer.Option(help="build like `opa build -b DIR --revision R` (merge data files)"),
    ] = None,
) -> None:
    """Sign DIR as `opa build --signing-key` would, for users without the opa CLI.

    With --revision the files are laid out as `opa build` does (one merged /data.json,
    Rego under DIR's name, a .manifest); without, DIR is signed as it is (like `opa sign`),
    and must hold its own .manifest. The hashes are OPA's, so OPA verifies the result.
    """
    if not directory.is_dir():
        typer.echo(f"error: {directory} is not a folder", err=True)
        raise typer.Exit(2)
    key_path = Path(signing_key).expanduser()
    material = key_path.read_text() if key_path.is_file() else signing_key
    try:
        files = (
            build_like_opa(directory, revision=revision)
            if revision
            else files_from_directory(directory)
        )
        signatures = sign_files(
            files,
            key=material,
            algorithm=signing_alg,
            key_id=key_id,
            claims={"scope": scope} if scope else None,
        )
    except (InvalidItem, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_INVALID) from exc
    data = build_bundle(files, signatures=signatures)
    output.write_bytes(data)
    bundle = read_bundle(data)
    line = f"{output}: {len(bundle.files)} files signed ({signing_alg}, kid {key_id!r})"
    if signing_alg.upper().startswith("HS"):
        verdict = verify_bundle(
            bundle,
            {key_id: VerificationKey(key_id, signing_alg.upper(), material)},
            SigningConfig(keyid=key_id, scope=scope or ""),
        )
        line += f"; verified: {verdict.signature_detail}"
    typer.echo(line)


@app.command("list")
def list_revisions(
    bundle: Annotated[str | None, typer.Option(help="only this bundle")] = None,
) -> None:
    """List registered revisions with their signature verdict."""
    _show(_context(), bundle)


def _show(ctx: AppContext, bundle: str | None) -> None:
    with ctx.session() as session:
        df = bundle_revisions_frame(session)
    if bundle:
        df = df[df["bundle"] == bundle]
    for r in df.itertuples(index=False):
        typer.echo(
            f"{r.bundle}@{r.revision}\t{r.signature_status}\t{r.signature_detail}\t{r.source}"
        )
