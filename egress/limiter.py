"""Per-user and per-tenant download rate limits: in memory by default, Redis when several
workers share them.

Fixed windows (`rate_limit` hits per `window_s`): cheap, exact at one instant and simple to
explain in a `Retry-After`. A limiter never raises: if Redis is unreachable the hit is counted
in memory and the outage logged, because a limiter must answer 429 or let through, never 5xx.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """Whether one hit is allowed, how many remain, and when to retry when refused."""

    allowed: bool
    limit: int
    remaining: int
    retry_after_s: int


class RateLimiter(Protocol):
    def hit(self, key: str) -> Decision: ...


def _decide(count: int, limit: int, window_s: int, now: float) -> Decision:
    reset = (math.floor(now / window_s) + 1) * window_s
    return Decision(
        allowed=count <= limit,
        limit=limit,
        remaining=max(0, limit - count),
        retry_after_s=max(1, math.ceil(reset - now)),
    )


class MemoryLimiter:
    """Counts hits per key and window in this process."""

    def __init__(
        self, *, limit: int, window_s: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self._counts: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> Decision:
        now = self.clock()
        bucket = math.floor(now / self.window_s)
        with self._lock:
            for old in [k for k in self._counts if k[1] < bucket]:
                del self._counts[old]
            count = self._counts.get((key, bucket), 0) + 1
            self._counts[(key, bucket)] = count
        return _decide(count, self.limit, self.window_s, now)


class RedisLimiter:
    """Counts hits in Redis (`INCR` + `EXPIRE` in one transaction) so workers share the limit."""

    def __init__(
        self,
        client: Any,
        *,
        limit: int,
        window_s: int,
        prefix: str = "quarterdeck:dl:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client, self.limit, self.window_s = client, limit, window_s
        self.prefix, self.clock = prefix, clock
        self._fallback = MemoryLimiter(limit=limit, window_s=window_s, clock=clock)

    def hit(self, key: str) -> Decision:
        import redis

        now = self.clock()
        bucket = math.floor(now / self.window_s)
        name = f"{self.prefix}{key}:{bucket}"
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.incr(name)
            pipe.expire(name, self.window_s + 1)
            count = int(pipe.execute()[0])
        except redis.RedisError as exc:
            log.warning("rate limiter: Redis unavailable (%s); counting in memory", exc)
            return self._fallback.hit(key)
        return _decide(count, self.limit, self.window_s, now)


def make_limiter(
    *, limit: int, window_s: int, redis_url: str | None, prefix: str = "quarterdeck:dl:"
) -> RateLimiter:
    """A Redis limiter when ``redis_url`` is set, else an in-memory one."""
    if not redis_url:
        return MemoryLimiter(limit=limit, window_s=window_s)
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    return RedisLimiter(client, limit=limit, window_s=window_s, prefix=prefix)


@dataclass(frozen=True)
class LimitVerdict:
    """The outcome of both limits for one download: refused by which (``user``/``tenant``)."""

    allowed: bool
    refused_by: str | None
    decision: Decision
    window_s: int


class DownloadLimits:
    """Per-user then per-tenant limits (seed DE-1403); a user over its limit spends no tenant hit.

    Both refusals answer 429 with `Retry-After`; ``refused_by`` says which limit it was.
    """

    def __init__(
        self,
        user: RateLimiter,
        tenant: RateLimiter,
        *,
        user_window_s: int,
        tenant_window_s: int,
    ) -> None:
        self.user, self.tenant = user, tenant
        self.user_window_s, self.tenant_window_s = user_window_s, tenant_window_s

    def check(self, *, user: str, tenant: str) -> LimitVerdict:
        by_user = self.user.hit(user)
        if not by_user.allowed:
            return LimitVerdict(False, "user", by_user, self.user_window_s)
        by_tenant = self.tenant.hit(tenant)
        if not by_tenant.allowed:
            return LimitVerdict(False, "tenant", by_tenant, self.tenant_window_s)
        tighter = by_user if by_user.remaining <= by_tenant.remaining else by_tenant
        return LimitVerdict(True, None, tighter, self.user_window_s)
