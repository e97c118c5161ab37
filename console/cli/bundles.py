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
    VerificationKey,
    fetch_folder,
    fetch_s3,
    load_registry,
    parse_s3_url,
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


def _context() -> AppContext:
    from console.cli.main import _context as cli_context

    return cli_context()


def _load(ctx: AppContext, objects: Iterable[BundleObject], source: str) -> None:
    started = datetime.now(UTC)
    keys = verification_keys(ctx.settings.opa)
    try:
        with ctx.session() as session:
            result = load_registry(session, objects, keys=keys, added_at=started)
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
