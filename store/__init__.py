"""The one SQL store: engine, typed models, idempotent upserts and the read side."""
