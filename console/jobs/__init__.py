"""Background services started by `quarterdeck serve`; each module offers `start(ctx)`."""
