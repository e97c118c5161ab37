"""HTTP receivers and APIs beside the pages; each module offers `make_blueprint(ctx)`."""
