"""`quarterdeck` command groups; each module offers `NAME` and a Typer `app`."""
