"""A local GitHub REST replay server for collector tests and the benchmark.

It serves pull requests, workflow runs (with attempts and jobs), deployments and their statuses
in GitHub's JSON shapes from 127.0.0.1 on a free port, with GitHub's protocol behaviour: `link`
pagination (`page`/`per_page`, page size capped by `page_size`), strong ETags answered with 304
on `If-None-Match`, `x-ratelimit-*` headers, and scripted faults (primary and secondary rate
limits, 5xx) for chosen paths.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

REPO = "acme/web"
T0 = datetime(2025, 11, 12, 9, 0, tzinfo=UTC)


def ts(value: datetime) -> str:
    """GitHub's timestamp format: second precision, `Z`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Fault:
    """A scripted answer for requests whose path (and optional page) match, `times` times."""

    path: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)
    times: int = 1
    page: str | None = None
    not_before_reset: bool = False  # answer the fault again while now < x-ratelimit-reset
    stall_s: float = 0.0  # hold the request this long first (a client killed while waiting)


@dataclass
class Request:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int
    at: float


@dataclass
class Dataset:
    """What the fake GitHub knows, per repository."""

    pulls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    attempts: dict[tuple[str, int, int], dict[str, Any]] = field(default_factory=dict)
    jobs: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict)
    deployments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    statuses: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict)


class ReplayServer:
    """The server; `url` is the API root to give the client."""

    def __init__(self, data: Dataset, *, page_size: int = 100) -> None:
        self.data = data
        self.page_size = page_size
        self.faults: list[Fault] = []
        self.requests: list[Request] = []
        self.remaining = 5000
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ReplayServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def calls(self, path_suffix: str) -> list[Request]:
        return [r for r in self.requests if r.path.endswith(path_suffix)]

    # ----------------------------------------------------------------------------------------

    def _answer(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if len(parts) < 4 or parts[0] != "repos":
            return 404, {"message": "Not Found"}
        repo = f"{parts[1]}/{parts[2]}"
        rest = parts[3:]
        d = self.data
        if rest == ["pulls"]:
            items = sorted(d.pulls.get(repo, []), key=lambda p: p["updated_at"], reverse=True)
            return 200, items
        if rest == ["actions", "runs"]:
            runs = sorted(d.runs.get(repo, []), key=lambda r: (r["created_at"], r["id"]))
            runs.reverse()
            created = query.get("created", "")
            if created.startswith(">="):
                runs = [r for r in runs if r["created_at"] >= created[2:]]
            return 200, ("workflow_runs", runs)
        if len(rest) == 4 and rest[:2] == ["actions", "runs"] and rest[3] == "jobs":
            return 200, ("jobs", d.jobs.get((repo, int(rest[2])), []))
        if len(rest) == 5 and rest[:2] == ["actions", "runs"] and rest[3] == "attempts":
            found = d.attempts.get((repo, int(rest[2]), int(rest[4])))
            return (200, found) if found else (404, {"message": "Not Found"})
        if rest == ["deployments"]:
            return 200, sorted(d.deployments.get(repo, []), key=lambda x: x["id"], reverse=True)
        if len(rest) == 3 and rest[0] == "deployments" and rest[2] == "statuses":
            items = d.statuses.get((repo, int(rest[1])), [])
            return 200, sorted(items, key=lambda s: s["id"], reverse=True)
        return 404, {"message": "Not Found"}

    def _fault_for(self, path: str, query: dict[str, str]) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and path.endswith(fault.path):
                    if fault.page is not None and query.get("page", "1") != fault.page:
                        continue
                    reset = float(fault.headers.get("x-ratelimit-reset", "0"))
                    if fault.not_before_reset and time.time() >= reset:
                        continue
                    if not fault.not_before_reset:
                        fault.times -= 1
                    return fault
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as api.github.com does
            # Headers and body go out in two writes: without this, Nagle's algorithm and the
            # client's delayed ACK stall every keep-alive response by ~40 ms.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parsed = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
                headers = {k.lower(): v for k, v in self.headers.items()}
                fault = server._fault_for(parsed.path, query)
                if fault is not None and fault.stall_s:
                    server._log(parsed.path, query, headers, 0)
                    time.sleep(fault.stall_s)
                    fault = None
                if fault is not None:
                    self._send(fault.status, fault.body, fault.headers)
                    server._log(parsed.path, query, headers, fault.status)
                    return
                status, answer = server._answer(parsed.path, query)
                if status != 200:
                    self._send(status, answer, {})
                    server._log(parsed.path, query, headers, status)
                    return
                key, items = answer if isinstance(answer, tuple) else (None, answer)
                extra: dict[str, str] = {}
                if isinstance(items, list):
                    per_page = min(int(query.get("per_page", "30")), server.page_size)
                    page = int(query.get("page", "1"))
                    last = max(1, -(-len(items) // per_page))
                    chunk = items[(page - 1) * per_page : page * per_page]
                    links = []
                    base = f"{server.url}{parsed.path}"
                    for rel, number in (("next", page + 1), ("last", last)):
                        if rel == "next" and page >= last:
                            continue
                        q = {**query, "page": str(number)}
                        links.append(f'<{base}?{urlencode(q)}>; rel="{rel}"')
                    if page > 1:
                        q = {**query, "page": str(page - 1)}
                        links.append(f'<{base}?{urlencode(q)}>; rel="prev"')
                    if links:
                        extra["link"] = ", ".join(links)
                    body: Any = {"total_count": len(items), key: chunk} if key else chunk
                else:
                    body = items
                raw = json.dumps(body).encode()
                etag = '"' + hashlib.sha256(raw).hexdigest()[:40] + '"'
                if headers.get("if-none-match") == etag:
                    # A 304 does not count against the primary rate limit.
                    self._send(304, None, {"etag": etag})
                    server._log(parsed.path, query, headers, 304)
                    return
                with server._lock:
                    server.remaining = max(0, server.remaining - 1)
                extra["etag"] = etag
                self._send(200, raw, extra)
                server._log(parsed.path, query, headers, 200)

            def _send(self, status: int, body: Any, headers: dict[str, str]) -> None:
                raw = (
                    body
                    if isinstance(body, bytes)
                    else b""
                    if body is None
                    else json.dumps(body).encode()
                )
                self.send_response(status)
                base = {
                    "x-ratelimit-limit": "5000",
                    "x-ratelimit-remaining": str(server.remaining),
                    "x-ratelimit-reset": str(int(time.time()) + 3600),
                    "x-ratelimit-resource": "core",
                }
                for k, v in {**base, **headers}.items():
                    self.send_header(k, v)
                if status != 304:
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                if status != 304:
                    self.wfile.write(raw)

        return Handler

    def _log(self, path: str, query: dict[str, str], headers: dict[str, str], status: int) -> None:
        with self._lock:
            self.requests.append(Request(path, query, headers, status, time.time()))


@contextmanager
def replay(data: Dataset, *, page_size: int = 100) -> Iterator[ReplayServer]:
    """Run a replay server for the duration of the block."""
    server = ReplayServer(data, page_size=page_size).start()
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------------------------
# Payloads in GitHub's shapes
# --------------------------------------------------------------------------------------------


def _user(login: str) -> dict[str, Any]:
    return {"login": login, "id": abs(hash(login)) % 10**6, "type": "User"}


def pull(
    repo: str,
    number: int,
    sha: str,
    created: datetime,
    *,
    updated: datetime | None = None,
    fork: bool = False,
    state: str = "open",
) -> dict[str, Any]:
    """A pull request object (`GET /repos/{o}/{r}/pulls`)."""
    head_repo = f"contrib/{repo.split('/')[1]}" if fork else repo
    return {
        "url": f"https://api.github.com/repos/{repo}/pulls/{number}",
        "id": 10_000 + number,
        "number": number,
        "state": state,
        "title": f"Change {number}",
        "user": _user("contrib" if fork else "ana"),
        "body": None,
        "created_at": ts(created),
        "updated_at": ts(updated or created),
        "closed_at": None,
        "merged_at": None,
        "draft": False,
        "head": {
            "label": f"{head_repo.split('/')[0]}:feature-{number}",
            "ref": f"feature-{number}",
            "sha": sha,
            "repo": {"full_name": head_repo, "fork": fork},
        },
        "base": {"label": "acme:main", "ref": "main", "sha": "0" * 40, "repo": {"full_name": repo}},
        "html_url": f"https://github.com/{repo}/pull/{number}",
    }


def run(
    repo: str,
    run_id: int,
    sha: str,
    created: datetime,
    *,
    prs: list[int],
    attempt: int = 1,
    conclusion: str | None = "success",
    event: str = "pull_request",
) -> dict[str, Any]:
    """A workflow run object (`GET /repos/{o}/{r}/actions/runs`); fork PRs pass `prs=[]`."""
    return {
        "id": run_id,
        "name": "ci",
        "node_id": f"WFR_{run_id}",
        "head_branch": f"feature-{prs[0]}" if prs else "main",
        "head_sha": sha,
        "path": ".github/workflows/ci.yml",
        "display_title": "ci",
        "run_number": run_id % 1000,
        "event": event,
        "status": "completed" if conclusion else "in_progress",
        "conclusion": conclusion,
        "workflow_id": 77,
        "check_suite_id": run_id * 3,
        "url": f"https://api.github.com/repos/{repo}/actions/runs/{run_id}",
        "html_url": f"https://github.com/{repo}/actions/runs/{run_id}",
        "pull_requests": [
            {"url": f"https://api.github.com/repos/{repo}/pulls/{n}", "id": 10_000 + n, "number": n}
            for n in prs
        ],
        "created_at": ts(created),
        "updated_at": ts(created + timedelta(minutes=6 * attempt)),
        "actor": _user("ana"),
        "run_attempt": attempt,
        "run_started_at": ts(created + timedelta(seconds=30 + 300 * (attempt - 1))),
        "triggering_actor": _user("ana"),
        "jobs_url": f"https://api.github.com/repos/{repo}/actions/runs/{run_id}/jobs",
        "previous_attempt_url": (
            f"https://api.github.com/repos/{repo}/actions/runs/{run_id}/attempts/{attempt - 1}"
            if attempt > 1
            else None
        ),
    }


def job(run_obj: dict[str, Any], job_id: int, name: str, attempt: int) -> dict[str, Any]:
    """A workflow job object (`GET …/actions/runs/{id}/jobs?filter=all`)."""
    started = datetime.fromisoformat(run_obj["run_started_at"].replace("Z", "+00:00"))
    return {
        "id": job_id,
        "run_id": run_obj["id"],
        "run_attempt": attempt,
        "head_sha": run_obj["head_sha"],
        "name": name,
        "status": "completed",
        "conclusion": "success",
        "created_at": ts(started - timedelta(seconds=5)),
        "started_at": ts(started),
        "completed_at": ts(started + timedelta(minutes=4)),
        "labels": ["ubuntu-latest"],
        "runner_name": "GitHub Actions 12",
        "workflow_name": run_obj["name"],
        "steps": [],
    }


def deployment(
    repo: str, deployment_id: int, sha: str, environment: str, created: datetime
) -> dict[str, Any]:
    """A deployment object (`GET /repos/{o}/{r}/deployments`)."""
    return {
        "url": f"https://api.github.com/repos/{repo}/deployments/{deployment_id}",
        "id": deployment_id,
        "sha": sha,
        "ref": sha[:7],
        "task": "deploy",
        "environment": environment,
        "creator": _user("deploy-bot"),
        "created_at": ts(created),
        "updated_at": ts(created),
        "transient_environment": environment != "production",
        "production_environment": environment == "production",
    }


def status(
    deployment_obj: dict[str, Any], status_id: int, state: str, at: datetime
) -> dict[str, Any]:
    """A deployment status object (`GET …/deployments/{id}/statuses`)."""
    env = deployment_obj["environment"]
    return {
        "id": status_id,
        "state": state,
        "creator": _user("deploy-bot"),
        "description": "",
        "environment": env,
        "environment_url": f"https://{env}.preview.acme.dev" if state == "success" else "",
        "log_url": "",
        "created_at": ts(at),
        "updated_at": ts(at),
        "deployment_url": deployment_obj["url"],
    }


# The hand-computed story used by the collector and API tests:
#   PR 101 (same repo) → run created T0+10s → preview pr-101 ready T0+12m10s: 720 s
#   PR 102 (fork, run.pull_requests == []) → run T0+1h+20s → `preview` ready T0+1h+20m20s: 1200 s
#   PR 103 re-run (attempt 1 failed, attempt 2 ok) → run T0+2h+5s → ready T0+2h+30m5s: 1800 s
#   PR 104: its preview failed and never succeeded → waiting
#   PR 105: closed without CI; sha A also deployed to production (never a preview)
EXPECTED_SECONDS = {101: 720.0, 102: 1200.0, 103: 1800.0}
EXPECTED_P50 = 1200.0
EXPECTED_P95 = 1740.0  # numpy linear: 1200 + 0.9 × (1800 − 1200)
SHA = {n: f"{n:03d}" + "a" * 37 for n in (101, 102, 103, 104, 105)}


def story(repo: str = REPO) -> Dataset:
    """The five-PR story above, in GitHub's shapes."""
    d = Dataset()
    d.pulls[repo] = [
        pull(repo, 101, SHA[101], T0, updated=T0 + timedelta(minutes=1)),
        pull(repo, 102, SHA[102], T0 + timedelta(hours=1), fork=True),
        pull(repo, 103, SHA[103], T0 + timedelta(hours=2)),
        pull(repo, 104, SHA[104], T0 + timedelta(hours=3)),
        pull(repo, 105, SHA[105], T0 - timedelta(days=1), state="closed"),
    ]
    r101 = run(repo, 9001, SHA[101], T0 + timedelta(seconds=10), prs=[101])
    r102 = run(repo, 9002, SHA[102], T0 + timedelta(hours=1, seconds=20), prs=[])
    r103 = run(repo, 9003, SHA[103], T0 + timedelta(hours=2, seconds=5), prs=[103], attempt=2)
    r103_1 = run(
        repo,
        9003,
        SHA[103],
        T0 + timedelta(hours=2, seconds=5),
        prs=[103],
        attempt=1,
        conclusion="failure",
    )
    r104 = run(repo, 9004, SHA[104], T0 + timedelta(hours=3), prs=[104])
    d.runs[repo] = [r101, r102, r103, r104]
    d.attempts[(repo, 9003, 1)] = r103_1
    for r in (r101, r102, r104):
        d.jobs[(repo, r["id"])] = [job(r, r["id"] * 10 + 1, "test (1/2)", 1)]
    d.jobs[(repo, 9003)] = [
        job(r103_1, 90031, "test (1/2)", 1),
        job(r103, 90032, "test (1/2)", 2),
    ]
    deps = {
        501: deployment(repo, 501, SHA[101], "pr-101", T0 + timedelta(minutes=5)),
        502: deployment(repo, 502, SHA[102], "preview", T0 + timedelta(hours=1, minutes=10)),
        503: deployment(repo, 503, SHA[103], "pr-103", T0 + timedelta(hours=2, minutes=5)),
        504: deployment(repo, 504, SHA[104], "pr-104", T0 + timedelta(hours=3, minutes=8)),
        505: deployment(repo, 505, SHA[101], "production", T0 + timedelta(minutes=4)),
    }
    d.deployments[repo] = list(deps.values())
    d.statuses[(repo, 501)] = [
        status(deps[501], 5011, "in_progress", T0 + timedelta(minutes=5, seconds=10)),
        status(deps[501], 5012, "success", T0 + timedelta(minutes=12, seconds=10)),
    ]
    d.statuses[(repo, 502)] = [
        status(deps[502], 5021, "success", T0 + timedelta(hours=1, minutes=20, seconds=20)),
    ]
    d.statuses[(repo, 503)] = [
        status(deps[503], 5031, "failure", T0 + timedelta(hours=2, minutes=10)),
        status(deps[503], 5032, "success", T0 + timedelta(hours=2, minutes=30, seconds=5)),
    ]
    d.statuses[(repo, 504)] = [
        status(deps[504], 5041, "failure", T0 + timedelta(hours=3, minutes=15)),
        status(deps[504], 5042, "error", T0 + timedelta(hours=3, minutes=25)),
    ]
    d.statuses[(repo, 505)] = [
        status(deps[505], 5051, "success", T0 + timedelta(minutes=6)),
    ]
    return d


def story_webhooks(repo: str = REPO) -> list[tuple[str, dict[str, Any]]]:
    """The same story as webhook deliveries: (event, payload) in time order."""
    d = story(repo)
    repository = {"full_name": repo, "html_url": f"https://github.com/{repo}"}
    events: list[tuple[str, dict[str, Any]]] = []
    for pr in d.pulls[repo]:
        events.append(
            (
                "pull_request",
                {
                    "action": "opened",
                    "number": pr["number"],
                    "pull_request": pr,
                    "repository": repository,
                },
            )
        )
    for r in [*d.runs[repo], d.attempts[(repo, 9003, 1)]]:
        events.append(
            ("workflow_run", {"action": "completed", "workflow_run": r, "repository": repository})
        )
    for dep in d.deployments[repo]:
        for st in d.statuses[(repo, dep["id"])]:
            events.append(
                (
                    "deployment_status",
                    {
                        "action": "created",
                        "deployment_status": st,
                        "deployment": dep,
                        "repository": repository,
                    },
                )
            )
    return events
