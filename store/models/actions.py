"""Guarded actions: the tables of identity, plans, approvals and locks (issue 6 adds them)."""

from __future__ import annotations
