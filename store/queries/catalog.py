"""Imports every query module so that all metrics are registered."""

from store.queries import audit, ci, egress, failover, policy, reliability, traffic

__all__ = ["audit", "ci", "egress", "failover", "policy", "reliability", "traffic"]
