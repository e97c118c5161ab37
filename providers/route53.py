"""The one Route 53 client: the collector reads through it, FlipDnsWeights reads and writes.

Over a boto3 client built by the composition root (`console.clients`), configured with botocore's
*standard* retry mode: botocore alone retries throttling (`Throttling`,
`PriorRequestNotComplete`, …) and transient errors, with jittered exponential backoff and a retry
quota. Nothing here retries on top, so one call is at most `max_attempts` HTTP requests.

- Lists go through boto3 paginators (`ListHostedZones`, `ListResourceRecordSets`).
- `INSYNC` is awaited with botocore's `resource_record_sets_changed` waiter (`GetChange`), its
  delay and attempts derived from the configured poll period and timeout.
- One zone-lookup rule (`pick_zone`): the most specific zone whose name contains the record;
  when several zones carry that name (split horizon: a public and a private zone) the lookup is
  refused with the zones named, never guessed.
- Every botocore failure surfaces as one `Route53Error` carrying the service's error code.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

# botocore's default for this waiter is 30 s × 60 attempts; ours comes from settings.
WAITER = "resource_record_sets_changed"


class Route53Error(RuntimeError):
    """Route 53 (or botocore on its way there) failed; `messages` holds InvalidChangeBatch's."""

    def __init__(self, code: str, message: str, messages: list[str] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.messages = messages or []


class ZoneLookupError(ValueError):
    """No hosted zone holds the name, or several equally specific zones do."""


def fqdn(name: str) -> str:
    """Return ``name`` lower-cased with the trailing dot Route 53 answers with."""
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


@dataclass(frozen=True)
class HostedZone:
    """One `ListHostedZones` entry: bare id (no `/hostedzone/`), name, public or private."""

    id: str
    name: str
    private: bool = False

    @classmethod
    def from_api(cls, zone: Mapping[str, Any]) -> HostedZone:
        config = zone.get("Config") or {}
        return cls(
            str(zone["Id"]).split("/")[-1],
            fqdn(str(zone.get("Name", ""))),
            bool(config.get("PrivateZone", False)),
        )


def pick_zone(record: str, zones: Sequence[HostedZone]) -> str:
    """The id of the most specific zone holding ``record``; refuse when that is ambiguous."""
    name = fqdn(record)
    holding = [z for z in zones if name == z.name or name.endswith("." + z.name)]
    if not holding:
        raise ZoneLookupError(f"no hosted zone holds {name}")
    longest = max(len(z.name) for z in holding)
    best = sorted((z for z in holding if len(z.name) == longest), key=lambda z: z.id)
    if len(best) > 1:
        ids = ", ".join(f"{z.id} {'private' if z.private else 'public'}" for z in best)
        raise ZoneLookupError(
            f"several hosted zones are named {best[0].name} ({ids}): "
            f"refusing to guess for {name}; give the zone id"
        )
    return best[0].id


def _error(exc: Exception) -> Route53Error:
    response: dict[str, Any] = getattr(exc, "response", None) or {}
    error = response.get("Error") or {}
    if not error:  # BotoCoreError: no credentials, endpoint unreachable, …
        return Route53Error(type(exc).__name__, str(exc))
    messages = [str(m) for m in response.get("messages") or []]
    return Route53Error(
        str(error.get("Code", type(exc).__name__)), str(error.get("Message", exc)), messages
    )


@contextmanager
def _translated() -> Iterator[None]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise _error(exc) from exc


class Route53:
    """The Route 53 calls Quarterdeck makes, over a boto3 client built by the caller.

    ``poll_s``/``insync_timeout_s`` become the waiter's `Delay` and `MaxAttempts`
    (attempts = timeout // delay + 1, at least one `GetChange`). ``page_size`` is passed to
    the paginators as `MaxItems` (None: the service's default, 300 record sets per page).
    """

    def __init__(
        self,
        client: Any,
        *,
        insync_timeout_s: float = 120.0,
        poll_s: float = 5.0,
        page_size: int | None = None,
    ) -> None:
        if poll_s <= 0:
            raise ValueError("poll_s must be positive")
        self.client = client
        self.poll_s = poll_s
        self.insync_timeout_s = max(0.0, insync_timeout_s)
        self.page_size = page_size

    @property
    def waiter_attempts(self) -> int:
        return math.floor(self.insync_timeout_s / self.poll_s + 1e-9) + 1

    def _pages(self, operation: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        config = {"PageSize": self.page_size} if self.page_size else {}
        paginator = self.client.get_paginator(operation)
        with _translated():
            yield from paginator.paginate(**kwargs, PaginationConfig=config)

    # -- zones ---------------------------------------------------------------------------------

    def hosted_zones(self) -> list[HostedZone]:
        """`ListHostedZones`, every page."""
        return [
            HostedZone.from_api(zone)
            for page in self._pages("list_hosted_zones")
            for zone in page.get("HostedZones") or []
        ]

    def find_zone(self, record: str) -> str:
        """The zone holding ``record`` by `pick_zone`'s rule (raises ZoneLookupError)."""
        return pick_zone(record, self.hosted_zones())

    # -- record sets ---------------------------------------------------------------------------

    def record_sets(self, zone_id: str, record: str) -> list[dict[str, Any]]:
        """Every record set named ``record`` (all types), read from `StartRecordName` on.

        Route 53 lists in DNS order, so the sets of one name are contiguous: the read stops at
        the first other name, and follows `NextRecordName/Type/Identifier` across pages.
        """
        name = fqdn(record)
        sets: list[dict[str, Any]] = []
        for page in self._pages(
            "list_resource_record_sets", HostedZoneId=zone_id, StartRecordName=name
        ):
            for rs in page.get("ResourceRecordSets") or []:
                if fqdn(str(rs.get("Name", ""))) != name:
                    return sets
                sets.append(rs)
        return sets

    def weighted_sets(self, zone_id: str, record: str) -> list[dict[str, Any]]:
        """The weighted record sets of ``record`` (every type)."""
        return [rs for rs in self.record_sets(zone_id, record) if "Weight" in rs]

    # -- health --------------------------------------------------------------------------------

    def health_check_status(self, health_check_id: str) -> dict[str, Any]:
        """`GetHealthCheckStatus`: the latest observation of each Route 53 checker.

        AWS intends this call for diagnosis, not high-rate polling: call it once per poll.
        """
        with _translated():
            return dict(self.client.get_health_check_status(HealthCheckId=health_check_id))

    def health(self, health_check_id: str) -> list[bool]:
        """One verdict per checker ("Success…" is healthy)."""
        return [
            str((o.get("StatusReport") or {}).get("Status", "")).startswith("Success")
            for o in self.health_check_status(health_check_id).get("HealthCheckObservations") or []
        ]

    def health_check_config(self, health_check_id: str) -> dict[str, Any]:
        """`GetHealthCheck`'s `HealthCheckConfig` (type, `Inverted`, `Disabled`, …)."""
        with _translated():
            answer = self.client.get_health_check(HealthCheckId=health_check_id)
        return dict((answer.get("HealthCheck") or {}).get("HealthCheckConfig") or {})

    def health_verdict(self, health_check_id: str, *, healthy_share: float) -> tuple[bool, str]:
        """The health check's status as Route 53 routes on it, with the reason.

        Route 53 considers a *disabled* health check healthy whatever its checkers see, and an
        *inverted* one unhealthy when its checkers find the endpoint healthy (and vice versa);
        the checkers' reports (`GetHealthCheckStatus`) are the raw observations, so both flags
        are read from `GetHealthCheck` and applied here. Healthy: more than ``healthy_share`` of
        the checkers report success.
        """
        config = self.health_check_config(health_check_id)
        if config.get("Disabled"):
            return True, f"health check {health_check_id} is disabled: Route 53 treats it healthy"
        statuses = self.health(health_check_id)
        raw = bool(statuses) and sum(statuses) / len(statuses) > healthy_share
        seen = f"{sum(statuses)}/{len(statuses)} Route 53 checkers healthy"
        if config.get("Inverted"):
            return (not raw), f"{seen}, health check inverted: {'unhealthy' if raw else 'healthy'}"
        return raw, seen

    # -- changes -------------------------------------------------------------------------------

    def change(self, zone_id: str, batch: dict[str, Any]) -> str:
        """`ChangeResourceRecordSets` (one transactional batch); returns the change id."""
        with _translated():
            info = self.client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch=batch)
        return str(info["ChangeInfo"]["Id"])

    def wait_insync(self, change_id: str) -> str:
        """Wait with botocore's waiter until `INSYNC`; return the last status seen.

        Still `PENDING` after the configured attempts is returned as such (the caller reports
        the change unverified); an error answer from `GetChange` raises Route53Error.
        """
        from botocore.exceptions import BotoCoreError, ClientError, WaiterError

        waiter = self.client.get_waiter(WAITER)
        config = {"Delay": self.poll_s, "MaxAttempts": self.waiter_attempts}
        try:
            waiter.wait(Id=change_id, WaiterConfig=config)
        except WaiterError as exc:  # a BotoCoreError: caught first
            last: dict[str, Any] = exc.last_response or {}
            error = last.get("Error") or {}
            if error:
                raise Route53Error(
                    str(error.get("Code", "WaiterError")), str(error.get("Message", exc))
                ) from exc
            return str((last.get("ChangeInfo") or {}).get("Status", "UNKNOWN"))
        except (BotoCoreError, ClientError) as exc:
            raise _error(exc) from exc
        return "INSYNC"
