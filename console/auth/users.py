"""Identity: local users (scrypt hashes, server-side sessions) and auth-proxy headers.

Passwords are hashed with scrypt and a per-user salt; comparisons are constant-time, and an
unknown user costs the same scrypt as a known one so timing does not reveal who exists. Session
cookies carry a random token; only its SHA-256 is stored, so a database read does not yield a
usable cookie. User names are stored and compared as canonical keys (`identity.user_key`), so
`Ada` and `ada` are one account, in the form and behind the auth proxy alike.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.datastructures import Headers

from actions.base import Actor
from console.auth.identity import ROLES, Identity, user_key
from console.settings.actions import AuthSettings
from store.models.actions import User, UserSession
from store.passwords import DUMMY_HASH, check_password, hash_password

MIN_PASSWORD_LENGTH = 12


class AuthError(ValueError):
    """A user could not be created or signed in; the message is safe to show."""


def add_user(session: Session, username: str, password: str, roles: list[str]) -> User:
    """Create a local user; refuse unknown roles, short passwords and taken names.

    The name is stored as its canonical key; a name whose key is taken (`Ada` when `ada`
    exists) is refused.
    """
    username = user_key(username)
    if not username or len(username) > 200:
        raise AuthError("username: 1–200 characters")
    unknown = sorted(set(roles) - set(ROLES))
    if unknown or not roles:
        raise AuthError(
            f"roles: choose from {', '.join(ROLES)} (got {', '.join(unknown) or 'none'})"
        )
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"password: at least {MIN_PASSWORD_LENGTH} characters")
    user = User(
        username=username,
        password_hash=hash_password(password),
        roles=sorted(set(roles)),
        disabled=False,
        created_at=datetime.now(UTC),
    )
    if find_user(session, username) is not None:
        raise AuthError(f"user {username!r} already exists")
    try:
        with session.begin_nested():
            session.add(user)
    except IntegrityError:
        raise AuthError(f"user {username!r} already exists") from None
    return user


def find_user(session: Session, name: str) -> User | None:
    """The user whose canonical key is ``name``'s (rows written before keys were canonical too).

    Two legacy rows with one key (`Ada` and `ada`) are ambiguous: neither is returned.
    """
    key = user_key(name)
    if not key:
        return None
    rows = session.scalars(
        select(User).where(or_(User.username == key, func.lower(User.username) == key.lower()))
    ).all()
    matches = [row for row in rows if user_key(row.username) == key]
    return matches[0] if len(matches) == 1 else None


def authenticate(session: Session, username: str, password: str) -> Identity | None:
    """Return the identity for a correct username and password, else None."""
    user = find_user(session, username[:200])
    if user is None or user.disabled:
        check_password(password, DUMMY_HASH)  # same cost as a real check
        return None
    if not check_password(password, user.password_hash):
        return None
    return Identity(user.username, frozenset(user.roles), "local")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(session: Session, identity: Identity, *, hours: float) -> str:
    """Store a new session for ``identity`` and return the cookie token."""
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    session.execute(delete(UserSession).where(UserSession.expires_at <= now))
    session.add(
        UserSession(
            token_hash=_token_hash(token),
            username=identity.user,
            created_at=now,
            expires_at=now + timedelta(hours=hours),
        )
    )
    return token


def end_session(session: Session, token: str) -> None:
    """Forget the session of ``token`` (sign-out)."""
    session.execute(delete(UserSession).where(UserSession.token_hash == _token_hash(token)))


def session_identity(session: Session, token: str) -> Identity | None:
    """Return the identity of an unexpired session token whose user is still enabled."""
    row = session.scalar(select(UserSession).where(UserSession.token_hash == _token_hash(token)))
    if row is None or row.expires_at <= datetime.now(UTC):
        return None
    user = find_user(session, row.username)
    if user is None or user.disabled:
        return None
    return Identity(user.username, frozenset(user.roles), "local")


def is_trusted_proxy(remote_addr: str | None, trusted: list[str]) -> bool:
    """Whether the TCP peer is one of the configured auth proxies (addresses or CIDRs)."""
    if not remote_addr:
        return False
    try:
        addr = ipaddress.ip_address(remote_addr)
    except ValueError:
        return False
    for entry in trusted:
        try:
            if addr in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def client_address(remote_addr: str | None, forwarded_for: str | None, trusted: list[str]) -> str:
    """The client's address: the TCP peer, or through trusted proxies the `X-Forwarded-For` hop.

    Walks `X-Forwarded-For` from the right (the hop our proxy appended) past every trusted proxy;
    the first untrusted address is the client. A peer that is not a trusted proxy is the client,
    whatever it claims.
    """
    peer = remote_addr or "unknown"
    if not forwarded_for or not is_trusted_proxy(remote_addr, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted_proxy(hop, trusted):
            return hop
    return hops[0] if hops else peer


def header_identity(
    headers: Mapping[str, str] | Headers, remote_addr: str | None, settings: AuthSettings
) -> Identity | None:
    """Read the proxy's user and groups, only when the request came from a trusted proxy."""
    if not is_trusted_proxy(remote_addr, settings.trusted_proxies):
        return None
    user = user_key(headers.get(settings.user_header) or "")
    if not user:
        return None
    groups = [g.strip() for g in (headers.get(settings.groups_header) or "").split(",")]
    roles = {settings.group_roles[g] for g in groups if g in settings.group_roles}
    if not roles and settings.default_role:
        roles = {settings.default_role}
    if not roles:
        return None
    return Identity(user, frozenset(roles & set(ROLES)), "header")


def actor_of(identity: Identity) -> Actor:
    """The guarded-action actor for a console identity."""
    return Actor(identity.user, identity.roles)
