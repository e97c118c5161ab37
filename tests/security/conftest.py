"""A served console for the security suite: the real app (`console.app.create_app`) over a
migrated store, Flask's test client, users of every role, and Dash callback bodies built from
the app's own `callback_map` (the ids and outputs the browser would send)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dash import Dash
from flask.testing import FlaskClient
from sqlalchemy import func, select

from console.app import create_app
from console.auth.identity import ROLES
from console.auth.permissions import callback_name
from console.auth.users import add_user
from console.context import AppContext
from store.migrate import upgrade
from store.models import ActionAudit
from store.models.actions import ActionPlan
from store.models.egress import EvidencePack
from store.models.failover import FailoverRun
from store.models.reliability import Incident, Postmortem
from store.models.runbooks import RunbookRun
from tests.conftest import make_settings

PASSWORD = "correct horse battery"
HOST = "http://localhost"
ORIGIN = {"Origin": HOST}
PROXY_GROUPS = {
    "viewer": "quarterdeck-viewers",
    "sre": "quarterdeck-sre",
    "captain": "quarterdeck-captains",
    "auditor": "quarterdeck-auditors",
    "admin": "quarterdeck-admins",
}
STATE_TABLES = (ActionPlan, EvidencePack, FailoverRun, Incident, Postmortem, RunbookRun)


@dataclass
class Console:
    """One served console: its context, Dash app and a way to get clients."""

    ctx: AppContext
    app: Dash

    def client(self) -> FlaskClient:
        return self.app.server.test_client()

    def state(self) -> dict[str, int]:
        """Row counts of every table a gated path writes (besides the audit)."""
        with self.ctx.session() as session:
            return {
                t.__tablename__: int(session.scalar(select(func.count()).select_from(t)) or 0)
                for t in STATE_TABLES
            }

    def last_audit(self) -> ActionAudit | None:
        with self.ctx.session() as session:
            row = session.scalars(select(ActionAudit).order_by(ActionAudit.seq.desc())).first()
            if row is not None:
                session.expunge(row)
            return row


def build_console(tmp_path: Path, *, users: bool = True, **overrides: Any) -> Console:
    """A console over a fresh SQLite store, with one local user per role (`<role>-user`)."""
    ctx = AppContext.from_settings(make_settings(tmp_path, **overrides))
    upgrade(ctx.engine)
    if users:
        with ctx.session() as session:
            for role in ROLES:
                add_user(session, f"{role}-user", PASSWORD, [role])
    app = create_app(ctx)
    app.server.test_client().get("/healthz")  # Dash takes over its callbacks on a first request
    return Console(ctx, app)


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    served = build_console(tmp_path, auth={"allow_anonymous_read": True})
    yield served
    served.ctx.engine.dispose()


def sign_in(client: FlaskClient, user: str, password: str = PASSWORD, **kw: Any) -> Any:
    return client.post(
        "/sign-in",
        data={"username": user, "password": password, "next": "/"},
        headers=kw.pop("headers", ORIGIN),
        **kw,
    )


def _split_output(key: str) -> list[tuple[str, str]]:
    names = key[2:-2].split("...") if key.startswith("..") and key.endswith("..") else [key]
    pairs = []
    for name in names:
        component, _, prop = name.partition("@")[0].rpartition(".")
        pairs.append((component, prop))
    return pairs


def _concrete(pattern_id: str) -> dict[str, Any]:
    pattern = json.loads(pattern_id)
    return {k: ("x-1" if v == ["ALL"] else v) for k, v in pattern.items()}


def prop_id(component: str | dict[str, Any], prop: str) -> str:
    if isinstance(component, dict):
        return json.dumps(component, sort_keys=True, separators=(",", ":")) + "." + prop
    return f"{component}.{prop}"


def callback_body(
    app: Dash, function: str, trigger: str | None, values: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The `/_dash-update-component` body the browser sends for ``function`` when the input
    ``trigger`` (a component id, or a pattern `type`) changes; other values from ``values``."""
    values = dict(values or {})
    matches = [
        (key, entry)
        for key, entry in app.callback_map.items()
        if callback_name(entry.get("callback")) == function
    ]
    assert len(matches) == 1, f"{function}: {len(matches)} callbacks"
    key, entry = matches[0]
    changed: list[str] = []

    def item(spec: dict[str, Any]) -> Any:
        raw = spec["id"]
        if raw.startswith("{"):
            component: str | dict[str, Any] = _concrete(raw)
            name = str(json.loads(raw)["type"])
        else:
            component = name = raw
        value = values.get(name)
        if name == trigger:
            value = 1 if value is None else value
            changed.append(prop_id(component, spec["property"]))
        one = {"id": component, "property": spec["property"], "value": value}
        return [one] if isinstance(component, dict) else one

    inputs = [item(i) for i in entry["inputs"]]
    state = [item(s) for s in entry["state"]]
    outputs = [{"id": c, "property": p} for c, p in _split_output(key)]
    return {
        "output": key,
        "outputs": outputs if key.startswith("..") else outputs[0],
        "inputs": inputs,
        "state": state,
        "changedPropIds": changed,
    }
