"""Sign-in throttling: exponential backoff per account and per client address.

Each failed password check counts against two keys, the account (the canonical user key as
typed, whether or not such a user exists, so an unknown name costs exactly what a known one
does) and the client address (as seen through the trusted proxy). Past ``free`` failures a key
is locked for ``base_s · 2^(failures − free)`` seconds, capped at ``max_s``; while either key is
locked a sign-in answers 429 with `Retry-After` without checking the password. A success clears
the account's count (not the address's, so one known password does not launder guesses at
others); a key with no failure for ``forget_s`` starts again from zero.

State lives in memory, or in Redis (one Lua script per failure, atomic) when several workers
share it. The clock is injected, so tests advance it instead of sleeping. If Redis is
unreachable the throttle counts in memory and logs the outage: it answers 429 or lets through,
never 5xx.
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

Clock = Callable[[], float]


@dataclass(frozen=True)
class Policy:
    """How many failures are free and how long the backoff grows."""

    account_free: int = 5
    address_free: int = 20
    base_s: float = 1.0
    max_s: float = 900.0
    forget_s: float = 3600.0

    def lock_s(self, failures: int, free: int) -> float:
        if failures < free:
            return 0.0
        return float(min(self.max_s, self.base_s * 2 ** min(failures - free, 40)))


class Store(Protocol):
    def locked_until(self, key: str, now: float, forget_s: float) -> float: ...

    def fail(self, key: str, now: float, free: int, policy: Policy) -> tuple[int, float]: ...

    def reset(self, key: str) -> None: ...


class MemoryStore:
    """Failure counts of this process: key → (failures, last failure, locked until)."""

    def __init__(self) -> None:
        self._state: dict[str, tuple[int, float, float]] = {}
        self._lock = threading.Lock()

    def _current(self, key: str, now: float, forget_s: float) -> tuple[int, float, float]:
        failures, last, until = self._state.get(key, (0, 0.0, 0.0))
        if failures and now - last > forget_s and now >= until:
            del self._state[key]
            return 0, 0.0, 0.0
        return failures, last, until

    def locked_until(self, key: str, now: float, forget_s: float) -> float:
        with self._lock:
            return self._current(key, now, forget_s)[2]

    def fail(self, key: str, now: float, free: int, policy: Policy) -> tuple[int, float]:
        with self._lock:
            failures, _, until = self._current(key, now, policy.forget_s)
            failures += 1
            lock = policy.lock_s(failures, free)
            until = max(until, now + lock) if lock else until
            self._state[key] = (failures, now, until)
            if len(self._state) > 100_000:  # bound memory under a flood of made-up names
                for old in sorted(self._state, key=lambda k: self._state[k][1])[:10_000]:
                    del self._state[old]
            return failures, until

    def reset(self, key: str) -> None:
        with self._lock:
            self._state.pop(key, None)


_FAIL_SCRIPT = """
local now = tonumber(ARGV[1])
local free = tonumber(ARGV[2])
local base = tonumber(ARGV[3])
local max = tonumber(ARGV[4])
local forget = tonumber(ARGV[5])
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')
local last = tonumber(redis.call('HGET', KEYS[1], 'last') or '0')
local untl = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if failures > 0 and now - last > forget and now >= untl then
  failures = 0
  untl = 0
end
failures = failures + 1
local lock = 0
if failures >= free then
  lock = base * 2 ^ math.min(failures - free, 40)
  if lock > max then lock = max end
  if now + lock > untl then untl = now + lock end
end
redis.call('HSET', KEYS[1], 'failures', failures, 'last', ARGV[1], 'until', tostring(untl))
redis.call('EXPIRE', KEYS[1], math.ceil(forget + max) + 1)
return {failures, tostring(untl)}
"""


class RedisStore:
    """Failure counts in Redis hashes `<prefix><key>` shared by every worker."""

    def __init__(self, client: Any, *, prefix: str = "quarterdeck:signin:") -> None:
        self.client, self.prefix = client, prefix
        self._fail = client.register_script(_FAIL_SCRIPT)

    def locked_until(self, key: str, now: float, forget_s: float) -> float:
        values = self.client.hmget(self.prefix + key, "failures", "last", "until")
        failures, last, until = (float(v) if v is not None else 0.0 for v in values)
        if failures and now - last > forget_s and now >= until:
            return 0.0
        return until

    def fail(self, key: str, now: float, free: int, policy: Policy) -> tuple[int, float]:
        failures, until = self._fail(
            keys=[self.prefix + key],
            args=[repr(now), free, policy.base_s, policy.max_s, policy.forget_s],
        )
        return int(failures), float(until)

    def reset(self, key: str) -> None:
        self.client.delete(self.prefix + key)


@dataclass(frozen=True)
class Verdict:
    """A failure's outcome: the account's failure count and how long the caller must now wait."""

    failures: int
    retry_after_s: int


class SignInThrottle:
    """Per-account and per-address backoff over one store (memory or Redis)."""

    def __init__(
        self, policy: Policy | None = None, store: Store | None = None, clock: Clock = time.time
    ) -> None:
        self.policy = policy or Policy()
        self.store: Store = store or MemoryStore()
        self.clock = clock
        self._fallback = MemoryStore()

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self.store, method)(*args)
        except Exception as exc:  # redis.RedisError and connection errors alike
            if isinstance(self.store, MemoryStore):
                raise
            log.warning("sign-in throttle: store unavailable (%s); counting in memory", exc)
            return getattr(self._fallback, method)(*args)

    @staticmethod
    def _keys(account: str, address: str) -> tuple[str, str]:
        return f"acct:{account}", f"addr:{address}"

    def retry_after(self, account: str, address: str) -> int:
        """Seconds until ``account`` from ``address`` may try again (0: now)."""
        now = self.clock()
        forget = self.policy.forget_s
        keys = self._keys(account, address)
        until = max(self._call("locked_until", key, now, forget) for key in keys)
        return max(0, math.ceil(until - now)) if until > now else 0

    def failed(self, account: str, address: str) -> Verdict:
        """Count one wrong password (or unknown user) for both keys."""
        now = self.clock()
        acct, addr = self._keys(account, address)
        failures, acct_until = self._call("fail", acct, now, self.policy.account_free, self.policy)
        _, addr_until = self._call("fail", addr, now, self.policy.address_free, self.policy)
        until = max(acct_until, addr_until)
        return Verdict(failures, max(0, math.ceil(until - now)) if until > now else 0)

    def succeeded(self, account: str) -> None:
        """A correct password: the account starts again from zero."""
        self._call("reset", self._keys(account, "")[0])


def make_throttle(
    *,
    redis_url: str | None,
    policy: Policy | None = None,
    clock: Clock = time.time,
    prefix: str = "quarterdeck:signin:",
) -> SignInThrottle:
    """A Redis-backed throttle when ``redis_url`` is set, else one in this process's memory."""
    if not redis_url:
        return SignInThrottle(policy, MemoryStore(), clock)
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    return SignInThrottle(policy, RedisStore(client, prefix=prefix), clock)
