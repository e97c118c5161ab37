"""The demo sprint: its seed (`demo.seed`), the capability parts it feeds, the moto stand-in for
Route53 and the live simulator. Only the composition root (console.wiring, the CLI) calls it."""
