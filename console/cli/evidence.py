"""`quarterdeck evidence …`: build a signed evidence pack for a sprint, verify one, make a key.

`verify` exits 0 on an intact pack and 1 naming every altered, added or missing file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from console.context import AppContext

NAME = "evidence"
app = typer.Typer(no_args_is_help=True, help="Signed evidence packs (seed §8).")

EXIT_FAILED = 1
EXIT_CONFIG = 2


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@app.command("build")
def build(
    sprint: Annotated[str, typer.Option(help="sprint slug (data/sprints/<slug>.yaml)")],
    out: Annotated[Path, typer.Option(help="where to write the pack (.zip)")],
    user: Annotated[
        str | None, typer.Option(help="who the pack is exported to (default: cli:<login>)")
    ] = None,
) -> None:
    """Build the sprint's evidence pack, record it, and write it (signed) to OUT."""
    from console.cli.common import _context
    from console.evidence_service import build_pack, local_user
    from evidence.pack import EvidenceError
    from evidence.signing import SigningKeyError
    from store.slo import SloConfigError

    ctx: AppContext = _context()
    try:
        pack = build_pack(ctx, sprint, user=user or local_user())
    except SigningKeyError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from exc
    except SloConfigError as exc:
        raise _fail("invalid SLO definitions: " + "; ".join(exc.problems), EXIT_CONFIG) from exc
    except EvidenceError as exc:
        raise _fail(str(exc), EXIT_FAILED) from exc
    finally:
        ctx.engine.dispose()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(pack.data)
    demo = " (DEMO KEY — not for real evidence)" if pack.demo_key else ""
    typer.echo(f"{out}: pack {pack.pack_id} for sprint {pack.sprint}, {len(pack.data)} bytes")
    typer.echo(f"signed by {pack.key_fingerprint}{demo}; exported to {pack.built_by}")


@app.command("verify")
def verify(
    pack: Annotated[Path, typer.Argument(help="the pack (.zip)", exists=True, dir_okay=False)],
    public_key: Annotated[
        str | None, typer.Option(help="require this signer (base64 raw key or PEM file path)")
    ] = None,
) -> None:
    """Check the pack's signature and every file's SHA-256; name each altered/added/missing file."""
    from evidence.pack import verify_pack

    key_text = public_key
    if public_key and Path(public_key).is_file():
        key_text = Path(public_key).read_text(encoding="utf-8")
    verdict = verify_pack(pack, public_key=key_text)
    for problem in verdict.problems:
        typer.echo(f"{pack}: {problem}", err=True)
    if not verdict.ok:
        raise typer.Exit(EXIT_FAILED)
    mark = verdict.watermark
    demo = " (DEMO KEY)" if verdict.demo_key else ""
    typer.echo(
        f"{pack}: intact — {verdict.files} files match MANIFEST.json, signed by "
        f"{verdict.key_fingerprint}{demo}; export {mark.get('export_id')} for {mark.get('user')}"
    )


@app.command("keygen")
def keygen() -> None:
    """Print a new Ed25519 key pair for QUARTERDECK_EVIDENCE__SIGNING_KEY (keep the private one)."""
    from evidence.signing import generate_key_text

    private, public = generate_key_text()
    typer.echo(f"QUARTERDECK_EVIDENCE__SIGNING_KEY={private}")
    typer.echo(f"public key (publish it for `evidence verify --public-key`): {public}")
