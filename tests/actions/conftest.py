"""Local peers for the action tests (moto's Route 53, the Kubernetes API emulator)."""

from tests.peers_actions import kube, moto_url, route53

__all__ = ["kube", "moto_url", "route53"]
