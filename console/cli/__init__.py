"""The `quarterdeck` command: `main` builds the root app; each other module is one command group
(`NAME` and a Typer `app`), mounted explicitly by `console.cli.main`."""
