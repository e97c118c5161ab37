"""Proof for managers: signed export tokens, download rate limits, evidence packs, postmortems."""
