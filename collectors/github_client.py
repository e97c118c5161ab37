"""A small GitHub REST client: `link` pagination, ETags, primary and secondary rate limits, retries.

GitHub's rules (docs "best practices" and "rate limits for the REST API"): follow the `link`
header instead of building page URLs; a `304 Not Modified` to an `If-None-Match` costs no rate
limit; `403`/`429` with `x-ratelimit-remaining: 0` means wait until `x-ratelimit-reset`; any other
limit answer is a secondary limit: honour `retry-after`, else wait at least a minute and back off
exponentially, giving up after a bounded number of tries. 5xx answers and timeouts are retried
with exponential backoff, then reported as :class:`GitHubUnavailable`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"


class GitHubError(RuntimeError):
    """GitHub refused a request in a way retrying will not fix (404, bad token, bad filter)."""


class GitHubUnavailable(GitHubError):
    """GitHub kept failing (5xx, timeouts, connection errors) after every retry."""


class RateLimited(GitHubError):
    """A rate limit lasted longer than the client may wait, or kept coming back."""


@dataclass
class Page:
    """One page of a list endpoint; ``not_modified`` when the ETag still matched (304)."""

    url: str
    items: list[dict[str, Any]] = field(default_factory=list)
    next_url: str | None = None
    etag: str | None = None
    not_modified: bool = False


@dataclass
class ClientStats:
    """What the client did, for the sync summary and the benchmark."""

    requests: int = 0
    not_modified: int = 0
    retries: int = 0
    waited_s: float = 0.0


class GitHubClient:
    """GET-only GitHub REST client bound to one API root (github.com or an Enterprise server).

    ``sleep`` and ``clock`` are parameters so a caller can bound or observe waiting; the
    defaults are :func:`time.sleep` and :func:`time.time`.
    """

    def __init__(
        self,
        api_url: str = DEFAULT_API_URL,
        token: str | None = None,
        *,
        http: requests.Session | None = None,
        timeout_s: float = 30.0,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        secondary_wait_s: float = 60.0,
        max_wait_s: float = 3600.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.http = http or requests.Session()
        self.http.headers.update(
            {
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": "quarterdeck-ci-collector",
            }
        )
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.secondary_wait_s = secondary_wait_s
        self.max_wait_s = max_wait_s
        self.sleep = sleep
        self.clock = clock
        self.stats = ClientStats()
        self._blocked_until = 0.0

    def url(self, path: str) -> str:
        """Absolute URL for an API path such as `/repos/o/r/pulls`."""
        return path if path.startswith(("http://", "https://")) else f"{self.api_url}{path}"

    def get_page(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        *,
        etag: str | None = None,
        key: str | None = None,
    ) -> Page:
        """GET one page; ``key`` unwraps object responses (`workflow_runs`, `jobs`)."""
        full = self.url(url)
        resp = self._get(full, params, etag=etag)
        if resp.status_code == 304:
            self.stats.not_modified += 1
            return Page(url=full, etag=etag, not_modified=True)
        body = resp.json()
        if key is not None:
            if not isinstance(body, dict) or not isinstance(body.get(key), list):
                raise GitHubError(f"GET {full}: expected an object with a `{key}` list")
            items = body[key]
        elif isinstance(body, list):
            items = body
        else:
            raise GitHubError(f"GET {full}: expected a JSON array")
        return Page(
            url=full,
            items=[i for i in items if isinstance(i, dict)],
            next_url=resp.links.get("next", {}).get("url"),
            etag=resp.headers.get("etag"),
        )

    def get_object(self, url: str) -> dict[str, Any]:
        """GET one object (not a list)."""
        full = self.url(url)
        body = self._get(full, None, etag=None).json()
        if not isinstance(body, dict):
            raise GitHubError(f"GET {full}: expected a JSON object")
        return body

    def get_all(
        self, url: str, params: Mapping[str, Any] | None = None, *, key: str | None = None
    ) -> list[dict[str, Any]]:
        """GET every page of a list endpoint by following `link: rel="next"`."""
        page = self.get_page(url, params, key=key)
        items = list(page.items)
        while page.next_url:
            page = self.get_page(page.next_url, key=key)
            items.extend(page.items)
        return items

    # ----------------------------------------------------------------------------------------

    def _get(
        self, url: str, params: Mapping[str, Any] | None, *, etag: str | None
    ) -> requests.Response:
        headers = {"If-None-Match": etag} if etag else {}
        failures = 0
        limited = 0
        secondary = self.secondary_wait_s
        while True:
            self._wait_if_exhausted()
            try:
                self.stats.requests += 1
                resp = self.http.get(url, params=params, headers=headers, timeout=self.timeout_s)
            except (requests.ConnectionError, requests.Timeout) as exc:
                failures += 1
                if failures > self.max_retries:
                    raise GitHubUnavailable(
                        f"GET {url}: {type(exc).__name__} after {failures} tries"
                    ) from exc
                self._pause(self._backoff(failures), f"{type(exc).__name__} on GET {url}")
                continue
            self._note_remaining(resp)
            if resp.status_code in (403, 429):
                wait, secondary = self._limit_wait(resp, secondary)
                if wait is None:
                    raise GitHubError(f"GET {url}: {resp.status_code} {_message(resp)}")
                limited += 1
                if limited > self.max_retries:
                    raise RateLimited(f"GET {url}: still rate limited after {limited} waits")
                if wait > self.max_wait_s:
                    raise RateLimited(
                        f"GET {url}: rate limit resets in {wait:.0f} s, "
                        f"more than the {self.max_wait_s:.0f} s allowed"
                    )
                self._pause(wait, f"rate limited ({resp.status_code}) on GET {url}")
                continue
            if resp.status_code >= 500:
                failures += 1
                if failures > self.max_retries:
                    raise GitHubUnavailable(
                        f"GET {url}: {resp.status_code} {_message(resp)} after {failures} tries"
                    )
                self._pause(self._backoff(failures), f"{resp.status_code} on GET {url}")
                continue
            if resp.status_code == 304 or resp.status_code < 300:
                return resp
            raise GitHubError(f"GET {url}: {resp.status_code} {_message(resp)}")

    def _limit_wait(self, resp: requests.Response, secondary: float) -> tuple[float | None, float]:
        """Seconds to wait for this limit answer (None: not a limit), and the next secondary."""
        retry_after = resp.headers.get("retry-after")
        if retry_after is not None:
            try:
                return max(0.0, float(retry_after)), secondary
            except ValueError:
                pass
        if resp.headers.get("x-ratelimit-remaining") == "0":
            reset = _float(resp.headers.get("x-ratelimit-reset"))
            if reset is not None:
                # +1 s: the reset second itself may still be counted against the old window.
                return max(0.0, reset - self.clock()) + 1.0, secondary
        message = _message(resp).lower()
        if resp.status_code == 429 or "rate limit" in message:
            return secondary, secondary * 2
        return None, secondary

    def _note_remaining(self, resp: requests.Response) -> None:
        # A success that used the last request of the window: wait for the reset before the next
        # call instead of collecting a 403 first.
        if resp.status_code < 300 and resp.headers.get("x-ratelimit-remaining") == "0":
            reset = _float(resp.headers.get("x-ratelimit-reset"))
            if reset is not None:
                self._blocked_until = reset + 1.0

    def _wait_if_exhausted(self) -> None:
        wait = self._blocked_until - self.clock()
        self._blocked_until = 0.0
        if wait > 0:
            if wait > self.max_wait_s:
                raise RateLimited(f"rate limit resets in {wait:.0f} s, too long to wait")
            self._pause(wait, "primary rate limit used up")

    def _backoff(self, failures: int) -> float:
        return float(min(self.backoff_s * 2 ** (failures - 1), 300.0))

    def _pause(self, seconds: float, why: str) -> None:
        log.warning("github: %s; waiting %.1f s", why, seconds)
        self.stats.retries += 1
        self.stats.waited_s += seconds
        self.sleep(seconds)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _message(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200]
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])[:200]
    return resp.text[:200]
