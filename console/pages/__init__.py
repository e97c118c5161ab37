"""One module per page; Dash Pages loads them by file (as `console.pages.<name>`)."""
