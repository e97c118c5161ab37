"""Extra demo data per capability; each module offers `feed(session)` (see console.discovery)."""
