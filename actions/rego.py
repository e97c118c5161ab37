"""Evaluate recorded OPA decisions on a candidate bundle with rego-cpp (`regopy`, pinned).

The engine is Microsoft's rego-cpp through its PyPI binding `regopy` (see
docs/adr/0008-rego-engine.md). It is native code, so it never runs in the console's process: each
batch goes to a child Python (`python -I actions/rego.py`, an empty environment, no secrets), and
a crash or a hang costs only the decisions it was evaluating, which come back "not evaluated".

What "faithful" means here, and what cannot be evaluated (each comes back `not_evaluated` with a
reason, never as a guessed verdict):
- the query is OPA's `/v1/data/<path>`: the full document at the path (booleans, objects, sets as
  sorted arrays), or undefined; a missing `input` stays undefined, as in a GET;
- `nd_builtin_cache` (OPA's record of non-deterministic builtin results such as `time.now_ns`)
  is replayed with `with <builtin> as <recorded value>`; a builtin recorded with more than one
  argument list cannot be replayed that way;
- a candidate that calls a builtin rego-cpp does not implement (`http.send`, `net.*`, ...), that
  does not compile, or whose data rego-cpp refuses, evaluates nothing;
- builtin errors are soft (the expression is undefined), as in OPA's server by default.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Literal

log = logging.getLogger(__name__)

ENGINE = "rego-cpp (regopy)"
RESULT_VAR = "qd_replay_result"
MAX_CRASHES = 3

Status = Literal["defined", "undefined", "not_evaluated"]

# Namespaces of OPA's builtins: a dotted call in one of them that rego-cpp does not know is a
# builtin it does not implement (rather than a user function, which is called through `data.`).
BUILTIN_NAMESPACES = frozenset(
    {
        "array",
        "base64",
        "base64url",
        "bits",
        "crypto",
        "glob",
        "graphql",
        "hex",
        "http",
        "io",
        "json",
        "net",
        "numbers",
        "object",
        "opa",
        "providers",
        "rand",
        "regex",
        "rego",
        "semver",
        "strings",
        "time",
        "units",
        "urlquery",
        "uuid",
        "yaml",
    }
)
_BUILTIN_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_STRINGS = re.compile(r'"(?:[^"\\\n]|\\.)*"|`[^`]*`')
_COMMENTS = re.compile(r"#[^\n]*")
_CALLS = re.compile(r"(?<![\w.])([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+)\s*\(")


@dataclass(frozen=True)
class Query:
    """One recorded decision to evaluate: its path, its input (if it had one), its ND cache."""

    path: str
    input: Any = None
    has_input: bool = True
    nd_builtin_cache: dict[str, Any] | None = None


@dataclass(frozen=True)
class Outcome:
    """What the engine said: a document, undefined, or why it could not say."""

    status: Status
    value: Any = None
    reason: str = ""


@dataclass(frozen=True)
class Policy:
    """A bundle's Rego modules and merged data, ready for the engine."""

    modules: dict[str, str]
    data_json: str


# -- JSON for rego-cpp -------------------------------------------------------------------------


class _Literal(str):
    """A JSON number kept as its literal text (OPA keeps `1.50` and big integers as written)."""


def _number(text: str) -> _Literal:
    # rego-cpp 1.5.2 refuses an exponent without a fraction (`1e3`) in data documents.
    mantissa, _, exponent = text.lower().partition("e")
    if exponent and "." not in mantissa:
        text = f"{mantissa}.0e{exponent}"
    return _Literal(text)


def _dump(value: Any) -> str:
    if isinstance(value, _Literal):
        return str(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _number(repr(value)) if value == value and abs(value) != float("inf") else "null"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_dump(str(k))}:{_dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_dump(v) for v in value) + "]"
    raise TypeError(f"{type(value).__name__} is not JSON")


def to_rego_json(value: Any) -> str:
    """Serialise a decoded JSON value so that rego-cpp reads the same values OPA read."""
    return _dump(value)


def parse_keeping_numbers(text: str | bytes) -> Any:
    """Parse JSON keeping every number's literal text (for data files)."""
    return json.loads(text, parse_float=_number, parse_int=_number)


# -- bundles -----------------------------------------------------------------------------------


def _nest(directory: str, value: Any) -> Any:
    for part in reversed([p for p in directory.split("/") if p]):
        value = {part: value}
    return value


def _merge(into: dict[str, Any], more: dict[str, Any]) -> None:
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def policy_from_bundle(files: dict[str, bytes]) -> Policy:
    """Modules and data of an unpacked bundle, merged as OPA does (`dir/data.json` → data.dir).

    Raises ValueError when a data file does not parse.
    """
    modules: dict[str, str] = {}
    data: dict[str, Any] = {}
    for name, content in sorted(files.items()):
        path = name.lstrip("/")
        directory, _, base = path.rpartition("/")
        if path.endswith(".rego"):
            modules[path] = content.decode()
        elif base == "data.json":
            value = parse_keeping_numbers(content)
        elif base in ("data.yaml", "data.yml"):
            import yaml

            value = yaml.safe_load(content)
        else:
            continue
        if not path.endswith(".rego"):
            nested = _nest(directory, value)
            if not isinstance(nested, dict):
                raise ValueError(f"{path}: the root data document must be an object")
            _merge(data, nested)
    return Policy(modules=modules, data_json=to_rego_json(data))


# -- queries -----------------------------------------------------------------------------------


def _query_text(query: Query) -> tuple[str | None, str]:
    parts = [p for p in query.path.split("/") if p]
    if not parts or query.path == "query":
        return None, "an ad-hoc query, not a path: nothing to replay"
    ref = "data" + "".join(f"[{json.dumps(p)}]" for p in parts)
    mocks: list[str] = []
    for builtin, calls in sorted((query.nd_builtin_cache or {}).items()):
        if not isinstance(builtin, str) or not _BUILTIN_NAME.match(builtin):
            return None, f"nd_builtin_cache names {builtin!r}, not a builtin"
        if not isinstance(calls, dict) or len(calls) != 1:
            return None, f"nd_builtin_cache holds several calls of {builtin}: cannot be replayed"
        (recorded,) = calls.values()
        mocks.append(f" with {builtin} as {to_rego_json(recorded)}")
    return f"{RESULT_VAR} := {ref}{''.join(mocks)}", ""


def _unsupported(source: str, is_builtin: Any) -> set[str]:
    code = _COMMENTS.sub("", _STRINGS.sub('""', source))
    names = {m.group(1) for m in _CALLS.finditer(code)}
    return {n for n in names if n.split(".")[0] in BUILTIN_NAMESPACES and not is_builtin(n)}


def evaluate(policy: Policy, queries: list[Query], *, timeout_s: float = 60.0) -> list[Outcome]:
    """Evaluate ``queries`` on ``policy`` in child processes; one Outcome per query, in order."""
    outcomes: list[Outcome | None] = [None] * len(queries)
    jobs: list[dict[str, Any]] = []
    for index, query in enumerate(queries):
        text, reason = _query_text(query)
        if text is None:
            outcomes[index] = Outcome("not_evaluated", reason=reason)
            continue
        job: dict[str, Any] = {"i": index, "q": text}
        if query.has_input:
            job["input"] = to_rego_json(query.input)
        jobs.append(job)
    deadline = time.monotonic() + timeout_s
    crashes = 0
    while jobs:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or crashes >= MAX_CRASHES:
            why = "time budget spent" if remaining <= 0 else f"{ENGINE} crashed {crashes} times"
            for job in jobs:
                outcomes[job["i"]] = Outcome("not_evaluated", reason=why)
            break
        lines, failure = _run_worker(policy, jobs, remaining)
        done = set()
        for line in lines:
            answer = json.loads(line)
            if "policy" in answer:  # the whole candidate cannot be evaluated
                for job in jobs:
                    outcomes[job["i"]] = Outcome("not_evaluated", reason=answer["policy"])
                jobs = []
                break
            outcomes[answer["i"]] = Outcome(
                answer["status"], answer.get("value"), answer.get("reason", "")
            )
            done.add(answer["i"])
        jobs = [job for job in jobs if job["i"] not in done]
        if failure and jobs:
            crashes += 1
            culprit = jobs.pop(0)  # evaluated in order: the first unanswered one was running
            outcomes[culprit["i"]] = Outcome("not_evaluated", reason=failure)
    return [o or Outcome("not_evaluated", reason="not answered") for o in outcomes]


def _run_worker(
    policy: Policy, jobs: list[dict[str, Any]], timeout_s: float
) -> tuple[list[bytes], str]:
    request = json.dumps(
        {"modules": policy.modules, "data": policy.data_json, "jobs": jobs}, ensure_ascii=False
    ).encode()
    command = [sys.executable, "-I", os.path.abspath(__file__), "--worker"]
    env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8"}
    try:
        done = subprocess.run(  # noqa: S603 (our own interpreter and file, no shell)
            command, input=request, capture_output=True, timeout=timeout_s, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, bytes) else b""
        return _complete_lines(out), f"{ENGINE} took longer than {timeout_s:.1f} s"
    if done.stderr:
        log.debug("rego worker stderr: %s", done.stderr.decode(errors="replace")[:2000])
    if done.returncode != 0:
        return _complete_lines(done.stdout), f"{ENGINE} crashed (exit {done.returncode})"
    return _complete_lines(done.stdout), ""


def _complete_lines(out: bytes) -> list[bytes]:
    """The answers the worker finished writing (a crash can cut the last one)."""
    lines = out.splitlines()
    return lines if out.endswith(b"\n") else lines[:-1]


# -- the child process -------------------------------------------------------------------------


def _worker() -> int:  # pragma: no cover - runs in the child; covered through evaluate()
    protocol = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # rego-cpp prints its errors on stdout: keep them off the protocol
    request = json.loads(sys.stdin.buffer.read())
    import regopy

    def send(message: dict[str, Any]) -> None:
        protocol.write(json.dumps(message).encode() + b"\n")

    def interpreter() -> Any:
        rego = regopy.Interpreter()
        rego.log_level = regopy.LogLevel.NONE
        for name, source in request["modules"].items():
            rego.add_module(name, source)
        rego.add_data_json(request["data"])
        return rego

    try:
        probe = regopy.Interpreter()
        missing = sorted(
            set().union(*(_unsupported(s, probe.is_builtin) for s in request["modules"].values()))
        )
        if missing:
            send({"policy": f"calls {', '.join(missing)}, which {ENGINE} does not implement"})
            return 0
        with_input, without_input = interpreter(), interpreter()
        check = without_input.query("x := 1")
        if not check.ok():
            send({"policy": f"{ENGINE} refused the bundle's data"})
            return 0
    except regopy.RegoError as exc:
        first = str(exc).split("errormsg", 1)[-1].split(")", 1)[0].split(":", 1)[-1]
        send({"policy": f"does not compile in {ENGINE}: {first.strip()}"})
        return 0
    for job in request["jobs"]:
        rego = without_input
        try:
            if "input" in job:
                rego = with_input
                rego.set_input_term(job["input"])
            output = rego.query(job["q"])
        except regopy.RegoError:
            send({"i": job["i"], "status": "not_evaluated", "reason": f"{ENGINE} error"})
            continue
        if not output.ok():
            send({"i": job["i"], "status": "not_evaluated", "reason": f"{ENGINE} error"})
            continue
        bindings = output.results[0].bindings if output.results else {}
        if RESULT_VAR in bindings:
            send({"i": job["i"], "status": "defined", "value": bindings[RESULT_VAR]})
        else:
            send({"i": job["i"], "status": "undefined"})
    return 0


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:  # pragma: no cover
    sys.exit(_worker())
