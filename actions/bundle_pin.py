"""PinOpaBundle (`opa.pin-bundle`): pin an environment's OPA bundle to a registry revision.

Two providers: Quarterdeck's own registry (a `BundlePin` row that `GET /bundles/<name>` serves)
and Kubernetes (patch the OPA ConfigMap's bundle `resource` with a `resourceVersion`
precondition; server-side `dryRun=All` while rehearsing). Before anything moves, the last recorded
decisions of the bundle are replayed against the candidate revision's Rego (rego-cpp, see
actions/rego.py) to show how many would flip and how many could not be evaluated. Verification
waits for OPA's status reports to show the revision everywhere.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import re
import tarfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from actions import rego
from actions.base import (
    SYSTEM_CLOCK,
    ApplyOutcome,
    Clock,
    GuardedAction,
    InvalidParams,
    PlanView,
    Proposal,
    RuleResult,
    state_token,
)
from store.ingest import utcnow
from store.models import BundlePin, BundleRevision, OpaDecision, OpaStatusReport
from store.queries.policy import StaleRule, drift_frame

log = logging.getLogger(__name__)

BundleLoader = Callable[[BundleRevision], bytes | None]
MAX_EXAMPLES = 5


def bundle_files(data: bytes) -> dict[str, bytes]:
    """Unpack a gzipped bundle tarball into path → bytes (paths without a leading slash)."""
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data)), mode="r:") as tar:
        for member in tar.getmembers():
            if member.isfile():
                handle = tar.extractfile(member)
                if handle is not None:
                    files[member.name.lstrip("/")] = handle.read()
    return files


@dataclass
class ImpactReport:
    """Recorded decisions replayed on a candidate: flips, changed results, and what was not
    evaluated (with why), so a preview never passes on decisions it could not judge."""

    replayed: int = 0
    allow_to_deny: int = 0
    deny_to_allow: int = 0
    changed: int = 0
    not_evaluated: int = 0
    not_evaluated_reasons: dict[str, int] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def flipped(self) -> int:
        return self.allow_to_deny + self.deny_to_allow

    @property
    def considered(self) -> int:
        return self.replayed + self.not_evaluated

    def skip(self, reason: str) -> None:
        self.not_evaluated += 1
        self.not_evaluated_reasons[reason] = self.not_evaluated_reasons.get(reason, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "engine": rego.ENGINE,
            "replayed": self.replayed,
            "allow_to_deny": self.allow_to_deny,
            "deny_to_allow": self.deny_to_allow,
            "changed": self.changed,
            "not_evaluated": self.not_evaluated,
            "not_evaluated_reasons": dict(self.not_evaluated_reasons),
            "errors": self.not_evaluated,  # the Actions page's name for the same count
            "examples": self.examples,
        }


def verdict(result: Any, field_name: str = "allow") -> bool:
    """Allow iff the document is `true` or an object whose ``field_name`` is `true`."""
    if isinstance(result, dict):
        return result.get(field_name) is True
    return result is True


def same_document(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value (`1e3` = 1000, `-0.0` = 0), booleans never numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_document(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_document(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


MASKED = "input masked by system.log.mask before logging: OPA decided on another input"


def _policy_text(files: dict[str, bytes]) -> str:
    """The candidate's decision policies as text (`system/` — the log mask itself — left out)."""
    return "\n".join(
        content.decode("utf-8", "replace")
        for name, content in files.items()
        if name.endswith(".rego") and not name.lstrip("/").startswith("system/")
    )


def _mask_may_matter(decision: OpaDecision, policy_text: str) -> bool:
    """Whether a masked/erased part of the logged input could change the candidate's answer.

    Conservative: it may matter unless no field name of any masked or erased path appears in
    the candidate's policies at all (e.g. an erased `/input/user/token` under a policy that
    never reads a `token`). Then the logged input decides exactly as the original did.
    """
    paths = [*(decision.erased or []), *(decision.masked or [])]
    for path in paths:
        names = [part for part in str(path).split("/") if part and part != "input"]
        if not names:
            return True  # the whole input was masked
        if re.search(rf"\b{re.escape(names[-1])}\b", policy_text):
            return True
    return False


def replay_decisions(
    files: dict[str, bytes],
    decisions: list[OpaDecision],
    *,
    result_field: str = "allow",
    timeout_s: float = 60.0,
) -> ImpactReport:
    """Evaluate every decision at its path on the candidate and compare with what OPA logged.

    The full document is compared (objects included); the verdict is ``result_field`` of an
    object result or the boolean itself, and undefined counts as deny. Decisions whose logged
    input is not what OPA saw (masked/erased), ad-hoc queries, and anything the engine cannot
    evaluate are counted as not evaluated, with the reason.
    """
    report = ImpactReport()
    try:
        policy = rego.policy_from_bundle(files)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        for _ in decisions:
            report.skip(f"the candidate's data cannot be read: {exc}")
        return report
    queued: list[tuple[OpaDecision, rego.Query]] = []
    policy_text = _policy_text(files)
    for decision in decisions:
        if _mask_may_matter(decision, policy_text):
            report.skip(MASKED)
            continue
        nd_cache = decision.nd_builtin_cache  # NULL for rows stored before OPA sent it
        queued.append(
            (
                decision,
                rego.Query(
                    path=decision.path,
                    input=decision.input,
                    has_input=decision.input is not None,
                    nd_builtin_cache=nd_cache if isinstance(nd_cache, dict) else None,
                ),
            )
        )
    outcomes = rego.evaluate(policy, [q for _, q in queued], timeout_s=timeout_s)
    for (decision, _), outcome in zip(queued, outcomes, strict=True):
        if outcome.status == "not_evaluated":
            report.skip(outcome.reason)
            log.debug("replay of %s not evaluated: %s", decision.decision_id, outcome.reason)
            continue
        report.replayed += 1
        new = outcome.value if outcome.status == "defined" else None
        was, now = verdict(decision.result, result_field), verdict(new, result_field)
        if was == now:
            if not same_document(new, decision.result):
                report.changed += 1
            continue
        if was:
            report.allow_to_deny += 1
        else:
            report.deny_to_allow += 1
        if len(report.examples) < MAX_EXAMPLES:
            report.examples.append(
                {
                    "decision_id": decision.decision_id,
                    "path": decision.path,
                    "was": "allow" if was else "deny",
                    "now": "allow" if now else "deny",
                    "input": decision.input,
                    "result": new,
                }
            )
    return report


class PinProvider(ABC):
    """Where a pin takes effect: read the pinned revision, change it (or rehearse)."""

    name: str

    @abstractmethod
    def read(self, session: Session, bundle: str, environment: str) -> tuple[str | None, Any]:
        """Return the revision in effect and the raw state fingerprinted for drift checks."""

    @abstractmethod
    def pin(
        self, session: Session, plan: PlanView, *, live: bool, expected_state: Any
    ) -> ApplyOutcome:
        """Point ``plan``'s environment at ``plan.after['revision']``."""


class RegistryPins(PinProvider):
    """Quarterdeck's own bundle endpoint: the latest `BundlePin` row is what `/bundles` serves."""

    name = "registry"

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock

    def read(self, session: Session, bundle: str, environment: str) -> tuple[str | None, Any]:
        pin = session.scalar(
            select(BundlePin)
            .where(BundlePin.bundle == bundle, BundlePin.environment == environment)
            .order_by(BundlePin.pinned_at.desc(), BundlePin.id.desc())
            .limit(1)
        )
        if pin is None:
            return None, None
        return pin.revision, {"revision": pin.revision, "pinned_at": pin.pinned_at.isoformat()}

    def pin(
        self, session: Session, plan: PlanView, *, live: bool, expected_state: Any
    ) -> ApplyOutcome:
        bundle, revision = plan.after["bundle"], plan.after["revision"]
        if not live:
            return ApplyOutcome(
                True,
                f"dry run: {plan.environment} would be served {bundle} {revision}",
                detail={"provider": self.name},
            )
        session.add(
            BundlePin(
                bundle=bundle,
                environment=plan.environment,
                revision=revision,
                pinned_at=self.clock(),
                pinned_by=plan.actor,
                reason=plan.reason,
            )
        )
        session.flush()
        return ApplyOutcome(
            True,
            f"{plan.environment} now served {bundle} {revision}; waiting for OPA status",
            detail={"provider": self.name},
        )


class KubernetesPins(PinProvider):
    """The OPA ConfigMap: `bundles.<name>.resource` carries `?revision=` of the pinned revision.

    The patch carries the `resourceVersion` read at plan time, so the API server answers 409 if
    anyone changed the ConfigMap since; rehearsals are sent with `dryRun=All`.
    """

    name = "kubernetes"

    def __init__(
        self,
        core_api: Any,
        *,
        namespace: str,
        config_map: str,
        key: str = "config.yaml",
        namespaces: dict[str, str] | None = None,
    ) -> None:
        self.api = core_api
        self.namespace = namespace
        self.namespaces = namespaces or {}
        self.config_map = config_map
        self.key = key

    def _namespace(self, environment: str) -> str:
        return self.namespaces.get(environment, self.namespace)

    def _load(self, environment: str) -> tuple[Any, dict[str, Any]]:
        import yaml
        from kubernetes.client.exceptions import ApiException

        try:
            cm = self.api.read_namespaced_config_map(self.config_map, self._namespace(environment))
        except ApiException as exc:
            raise InvalidParams(
                f"ConfigMap {self._namespace(environment)}/{self.config_map}: "
                f"HTTP {exc.status} {exc.reason}"
            ) from exc
        text = (cm.data or {}).get(self.key, "")
        config = yaml.safe_load(text) or {}
        if not isinstance(config, dict):
            raise InvalidParams(f"ConfigMap key {self.key} is not an OPA config mapping")
        return cm, config

    @staticmethod
    def revision_of(resource: str) -> str | None:
        values = parse_qs(urlsplit(resource).query).get("revision")
        return values[0] if values else None

    def read(self, session: Session, bundle: str, environment: str) -> tuple[str | None, Any]:
        cm, config = self._load(environment)
        resource = str((config.get("bundles") or {}).get(bundle, {}).get("resource") or "")
        if not resource:
            raise InvalidParams(f"OPA config has no bundles.{bundle}.resource")
        return self.revision_of(resource), {
            "resource_version": cm.metadata.resource_version,
            "resource": resource,
        }

    def pin(
        self, session: Session, plan: PlanView, *, live: bool, expected_state: Any
    ) -> ApplyOutcome:
        import yaml
        from kubernetes.client.exceptions import ApiException

        bundle, revision = plan.after["bundle"], plan.after["revision"]
        _, config = self._load(plan.environment)
        entry = config["bundles"][bundle]
        parts = urlsplit(str(entry["resource"]))
        query = {k: v[0] for k, v in parse_qs(parts.query).items()} | {"revision": revision}
        entry["resource"] = parts._replace(query=urlencode(query)).geturl()
        body = {
            "metadata": {"resourceVersion": expected_state["resource_version"]},
            "data": {self.key: yaml.safe_dump(config, sort_keys=False)},
        }
        try:
            result = self.api.patch_namespaced_config_map(
                self.config_map,
                self._namespace(plan.environment),
                body,
                dry_run=None if live else "All",
                field_manager="quarterdeck",
            )
        except ApiException as exc:
            if exc.status == 409:
                return ApplyOutcome(False, "ConfigMap changed since the plan (409): plan again")
            return ApplyOutcome(
                False, f"Kubernetes refused the patch: HTTP {exc.status} {exc.reason}"
            )
        what = "patched" if live else "dry run accepted by the API server for"
        return ApplyOutcome(
            True,
            f"{what} {self._namespace(plan.environment)}/{self.config_map}: resource "
            f"{entry['resource']}",
            detail={
                "provider": self.name,
                "resource": entry["resource"],
                "resource_version": result.metadata.resource_version,
            },
        )


@dataclass(frozen=True)
class PinConfig:
    """Rule thresholds for bundle pins."""

    stage_environment: str = "stage"
    production_environments: frozenset[str] = frozenset({"prod"})
    soak: timedelta = timedelta(hours=24)
    replay_last: int = 500
    max_flip_pct: float = 5.0
    max_not_evaluated_pct: float = 10.0
    result_field: str = "allow"
    replay_timeout_s: float = 60.0
    # Verify ignores an OPA silent for more than this many of its own reporting intervals (and
    # at least stale_min_s): a stopped or restarted process is gone, not drifted.
    stale_after_intervals: float = StaleRule.intervals
    stale_min_s: float = StaleRule.min_silence_s

    @property
    def stale_rule(self) -> StaleRule:
        return StaleRule(intervals=self.stale_after_intervals, min_silence_s=self.stale_min_s)


class PinOpaBundle(GuardedAction):
    """Pin which bundle revision an environment's OPA instances run."""

    slug = "opa.pin-bundle"
    title = "Pin OPA bundle"

    def __init__(
        self,
        providers: list[PinProvider],
        loader: BundleLoader,
        config: PinConfig | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.providers = {p.name: p for p in providers}
        self.loader = loader
        self.config = config or PinConfig()
        self.clock = clock  # the soak rule compares with now

    def _provider(self, params: dict[str, Any]) -> PinProvider:
        name = str(params.get("provider") or "registry")
        if name not in self.providers:
            raise InvalidParams(f"unknown provider {name!r} (known: {', '.join(self.providers)})")
        return self.providers[name]

    def propose(self, session: Session, params: dict[str, Any], environment: str) -> Proposal:
        bundle = str(params.get("bundle") or "").strip()
        revision = str(params.get("revision") or "").strip()
        if not bundle or not revision:
            raise InvalidParams("give --bundle and --revision")
        provider = self._provider(params)
        current, state = provider.read(session, bundle, environment)
        if current == revision:
            raise InvalidParams(f"{environment} already runs {bundle} {revision}")
        known = session.scalar(
            select(BundleRevision).where(
                BundleRevision.bundle == bundle, BundleRevision.revision == revision
            )
        )
        rules: list[RuleResult] = []
        preview: dict[str, Any] = {}
        if known is None:
            rules.append(
                RuleResult(
                    "revision-exists",
                    False,
                    f"{bundle} {revision} is not in the registry",
                    overridable=False,
                )
            )
        else:
            rules.append(
                RuleResult("revision-exists", True, f"registered {known.added_at:%Y-%m-%d}")
            )
            data = self.loader(known)
            rules.append(self._signature(known, data))
            rules.append(self._staged(session, bundle, revision, environment))
            impact, preview = self._impact(session, bundle, environment, data)
            rules.append(impact)
        return Proposal(
            target=f"opa-bundle:{environment}/{bundle}",
            before={"bundle": bundle, "revision": current, "provider": provider.name},
            after={"bundle": bundle, "revision": revision, "provider": provider.name},
            rules=rules,
            state_token=state_token(state),
            preview=preview,
        )

    def _signature(self, known: BundleRevision, data: bytes | None) -> RuleResult:
        name = "bundle-signature-valid"
        if data is None:
            return RuleResult(name, False, "the bundle tarball cannot be read", overridable=False)
        digest = hashlib.sha256(data).hexdigest()
        if digest != known.sha256:
            return RuleResult(
                name,
                False,
                f"tampered: tarball sha256 {digest[:12]}… ≠ registered {known.sha256[:12]}…",
                overridable=False,
            )
        if known.signature_status == "verified":
            return RuleResult(name, True, f"signature verified (key {known.key_id})")
        if known.signature_status == "unsigned":
            return RuleResult(name, False, "bundle is unsigned")
        return RuleResult(
            name, False, f"signature invalid: {known.signature_detail}", overridable=False
        )

    def _staged(self, session: Session, bundle: str, revision: str, environment: str) -> RuleResult:
        name = "staged-rollout"
        if environment not in self.config.production_environments:
            return RuleResult(name, True, f"{environment} is not production: no soak required")
        stage = self.config.stage_environment
        first = session.scalar(
            select(func.min(OpaStatusReport.reported_at)).where(
                OpaStatusReport.environment == stage,
                OpaStatusReport.bundle == bundle,
                OpaStatusReport.active_revision == revision,
            )
        )
        source = "OPA status"
        if first is None:
            first = session.scalar(
                select(func.min(BundlePin.pinned_at)).where(
                    BundlePin.environment == stage,
                    BundlePin.bundle == bundle,
                    BundlePin.revision == revision,
                )
            )
            source = "pin"
        if first is None:
            return RuleResult(name, False, f"{revision} has never run in {stage}")
        soaked = self.clock() - first
        hours = self.config.soak.total_seconds() / 3600
        if soaked < self.config.soak:
            return RuleResult(
                name,
                False,
                f"in {stage} for {soaked.total_seconds() / 3600:.1f} h ({source}); "
                f"soak is {hours:g} h",
            )
        return RuleResult(name, True, f"ran in {stage} since {first:%Y-%m-%d %H:%M} ({source})")

    def _impact(
        self, session: Session, bundle: str, environment: str, data: bytes | None
    ) -> tuple[RuleResult, dict[str, Any]]:
        name = "impact-preview"
        if data is None:
            return RuleResult(name, False, "no bundle to replay against"), {}
        recent = session.scalars(
            select(OpaDecision)
            .where(OpaDecision.environment == environment)
            .order_by(OpaDecision.timestamp.desc())
            .limit(self.config.replay_last * 4)
        ).all()
        mine = [d for d in recent if bundle in (d.bundles or {})][: self.config.replay_last]
        report = replay_decisions(
            bundle_files(data),
            mine,
            result_field=self.config.result_field,
            timeout_s=self.config.replay_timeout_s,
        )
        preview = {"impact": report.as_dict()}
        if report.considered == 0:
            return RuleResult(name, True, "no recorded decisions to replay"), preview
        pct = 100.0 * report.flipped / report.replayed if report.replayed else 0.0
        skipped = 100.0 * report.not_evaluated / report.considered
        text = (
            f"{report.allow_to_deny} allow→deny, {report.deny_to_allow} deny→allow of "
            f"{report.replayed} replayed ({pct:.1f}%, limit {self.config.max_flip_pct:g}%); "
            f"{report.not_evaluated} not evaluated ({skipped:.1f}%, "
            f"limit {self.config.max_not_evaluated_pct:g}%)"
        )
        if report.not_evaluated_reasons:
            reason, count = max(report.not_evaluated_reasons.items(), key=lambda kv: kv[1])
            text += f", mostly: {reason} ({count})"
        if report.changed:
            text += f"; {report.changed} other results changed, same verdict"
        passed = (
            report.replayed > 0
            and pct <= self.config.max_flip_pct
            and skipped <= self.config.max_not_evaluated_pct
        )
        return RuleResult(name, passed, text), preview

    def current_token(self, session: Session, plan: PlanView) -> str:
        provider = self._provider(plan.params)
        _, state = provider.read(session, plan.after["bundle"], plan.environment)
        return state_token(state)

    def apply(self, session: Session, plan: PlanView, *, live: bool) -> ApplyOutcome:
        provider = self._provider(plan.params)
        _, state = provider.read(session, plan.after["bundle"], plan.environment)
        outcome = provider.pin(session, plan, live=live, expected_state=state)
        if live and outcome.ok:
            outcome.verified = self.verify(session, plan) or None
        return outcome

    def verify(self, session: Session, plan: PlanView) -> bool | None:
        """True once every live OPA instance of the environment reports the revision active.

        Instances are the status receiver's identity label (a restarted OPA stays one), and
        stale ones (see `PinConfig.stale_rule`) are left out, as the drift goal leaves them out.
        """
        drift = pin_drift(
            session,
            plan.after["bundle"],
            plan.environment,
            plan.after["revision"],
            as_of=self.clock(),
            stale=self.config.stale_rule,
        )
        if drift.instances and not drift.drifted:
            return True
        return None

    def rollback_params(self, plan: PlanView) -> dict[str, Any]:
        if not plan.before.get("revision"):
            raise InvalidParams("nothing was pinned before this change: no revision to return to")
        return {
            "bundle": plan.before["bundle"],
            "revision": plan.before["revision"],
            "provider": plan.before["provider"],
        }


@dataclass(frozen=True)
class PinDrift:
    """Where a revision stands in an environment: live instances, which of them do not run it
    (or report an error for the bundle), and the stale ones left out of both."""

    instances: int
    drifted: list[str]
    stale: list[str]


def pin_drift(
    session: Session,
    bundle: str,
    environment: str,
    revision: str,
    *,
    as_of: datetime | None = None,
    stale: StaleRule | None = None,
) -> PinDrift:
    """Latest status per OPA instance of the environment (store.queries.policy.drift_frame):
    which live instances do not run ``revision``; stale instances are listed apart.

    Compared with ``revision`` itself, not with the registry's pin, so a Kubernetes pin (no
    `BundlePin` row) verifies the same way.
    """
    df = drift_frame(
        session,
        as_of=as_of if as_of is not None else utcnow(),
        environment=environment,
        stale=stale,
    )
    df = df[df["bundle"] == bundle]
    gone = df["stale"].astype(bool)
    stale_ids = sorted({str(i) for i in df[gone]["instance_id"]})
    live = df[~gone]
    drifted = sorted(
        {
            str(r["instance_id"])
            for r in live.to_dict("records")
            if r["active_revision"] != revision or isinstance(r["code"], str)
        }
    )
    return PinDrift(instances=int(live["instance_id"].nunique()), drifted=drifted, stale=stale_ids)


def policy_drift(
    session: Session,
    bundle: str,
    environment: str,
    revision: str,
    *,
    as_of: datetime | None = None,
    stale: StaleRule | None = None,
) -> dict[str, Any]:
    """:func:`pin_drift` as `{"instances": live count, "drifted": [...]}` (stale left out)."""
    drift = pin_drift(session, bundle, environment, revision, as_of=as_of, stale=stale)
    return {"instances": drift.instances, "drifted": drift.drifted}
