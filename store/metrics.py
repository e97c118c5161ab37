"""The metric registry: every goal and gate check names a metric registered here, and only here.

A metric computes one number for a window from raw store rows, with its sample count and a
short explanation. Its definition text is part of the product (the console shows it). The
functions live with their queries in ``store.queries``; those modules return frames and values
and know nothing of this registry. Each metric also has a ``daily`` function: the same value for
many windows in a bounded number of statements (one per query it needs, never one per day),
which the goal trend uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from store.measures import DailyFn, MetricFn, MetricValue, Window
from store.queries import audit, ci, egress, failover, policy, reliability, traffic

__all__ = ["BASE_UNITS", "Metric", "MetricValue", "Window", "get_metric", "known_metrics"]

BASE_UNITS = ("s", "ratio", "count", "h")


@dataclass(frozen=True)
class Metric:
    """A registered metric: its id, base unit, allowed aggregations and its definition."""

    id: str
    unit: str
    aggregations: tuple[str, ...]
    definition: str
    page: str
    fn: MetricFn
    daily: DailyFn
    state: bool = False  # a state "as of the window's end" rather than a sum over samples


def _metric(
    metric_id: str,
    *,
    unit: str,
    page: str,
    definition: str,
    fn: MetricFn,
    daily: DailyFn,
    aggregations: tuple[str, ...] = ("value",),
    state: bool = False,
) -> Metric:
    if unit not in BASE_UNITS:
        raise ValueError(f"unit {unit!r} is not a base unit {BASE_UNITS}")
    text = " ".join(definition.split())
    return Metric(metric_id, unit, aggregations, text, page, fn, daily, state)


METRICS: tuple[Metric, ...] = (
    _metric(
        "actions.approvals",
        unit="count",
        page="/audit",
        definition="""Approvals recorded in the action audit for the environment in the window
        (two-person rule: the approver is never the requester).""",
        fn=audit._approvals,
        daily=audit._approvals_daily,
    ),
    _metric(
        "ci.pr_preview_lead_time",
        unit="s",
        page="/ci",
        aggregations=("p50", "p95"),
        definition="""Per (PR, head SHA): from the first CI run triggered for that SHA by the PR
        to the first `success` deployment status of that SHA in a preview environment.
        Percentiles (linear interpolation) over SHAs whose preview became ready in the window;
        SHAs still waiting are counted apart, never dropped.""",
        fn=ci._lead_time,
        daily=ci._lead_time_daily,
    ),
    _metric(
        "ci.pr_preview_lead_time_change",
        unit="ratio",
        page="/ci",
        aggregations=("p50", "p95"),
        definition="""Relative change of the PR→preview lead-time percentile in the window
        against the baseline window of the same length just before it (negative = faster).""",
        fn=ci._lead_time_change,
        daily=ci._lead_time_change_daily,
    ),
    _metric(
        "ci.cache_hit_ratio",
        unit="ratio",
        page="/ci",
        definition="""Exact-key cache hits / cache lookups, from job metrics posted by CI
        (the GitHub API exposes no hit ratio).""",
        fn=ci._cache_hit_ratio,
        daily=ci._cache_hit_ratio_daily,
    ),
    _metric(
        "exports.token_watermark_coverage",
        unit="ratio",
        page="/egress",
        definition="""Share of export events in the window that carried a valid token and the
        watermark headers. Missing, invalid and expired tokens count against it.""",
        fn=egress._coverage,
        daily=egress._coverage_daily,
    ),
    _metric(
        "exports.download_5xx",
        unit="count",
        page="/egress",
        definition="""Export downloads answered with a 5xx in the window (rate limiting must
        answer 429, never 5xx). A limiter answering 503 is counted here and flagged.""",
        fn=egress._download_5xx,
        daily=egress._download_5xx_daily,
    ),
    _metric(
        "failover.rto",
        unit="s",
        page="/failover",
        aggregations=("latest",),
        definition="""Promotion start (first "Started … failover"/promote event, or the drill's
        start mark) → first successful write on the new primary; the latest measured run in
        the window.""",
        fn=failover._rto,
        daily=failover._rto_daily,
    ),
    _metric(
        "failover.rpo",
        unit="s",
        page="/failover",
        aggregations=("latest",),
        definition="""Replication lag (seconds) at the moment promotion started; 0 for a
        verified switchover. The latest measured run in the window.""",
        fn=failover._rpo,
        daily=failover._rpo_daily,
    ),
    _metric(
        "failover.replica_lag",
        unit="s",
        page="/failover",
        state=True,
        definition="""Replication lag of the most lagging replica as of the end of the window
        (latest sample no older than 15 minutes; older means no data).""",
        fn=failover._replica_lag,
        daily=failover._replica_lag_daily,
    ),
    _metric(
        "policy.decision_log_latency",
        unit="s",
        page="/policy",
        aggregations=("p50", "p99"),
        definition="""`received_at − timestamp` per decision-log event (how long until a
        decision is searchable here); percentile over decisions made in the window. OPA's
        default upload delay (300–600 s) makes a 60 s target impossible: such instances are
        flagged.""",
        fn=policy._decision_latency,
        daily=policy._decision_latency_daily,
    ),
    _metric(
        "policy.drift",
        unit="count",
        page="/policy",
        state=True,
        definition="""OPA instances (by `labels.id`, latest status) whose active revision of a
        bundle differs from the revision pinned for their environment, or that report a bundle
        error. Counted as of the end of the window.""",
        fn=policy._drift,
        daily=policy._drift_daily,
    ),
    _metric(
        "policy.signed_active_share",
        unit="ratio",
        page="/policy",
        state=True,
        definition="""Share of (instance, bundle) pairs whose active revision is in the bundle
        registry with a verified signature, as of the end of the window. Unknown, unsigned and
        invalid revisions count against it.""",
        fn=policy._signed_share,
        daily=policy._signed_share_daily,
    ),
    _metric(
        "policy.dry_run_share",
        unit="ratio",
        page="/policy",
        definition="""Share of decisions in the window made in dry-run (instance label
        `mode: dry-run` or a result with `dry_run: true`), optionally for one environment.""",
        fn=policy._dry_run_share,
        daily=policy._dry_run_share_daily,
    ),
    _metric(
        "policy.stage_soak",
        unit="h",
        page="/policy",
        state=True,
        definition="""Hours the revision pinned for the soak environment (default `stage`) has
        been the active revision on every instance of that environment, as of the end of the
        window; 0 while any instance still runs another revision.""",
        fn=policy._stage_soak,
        daily=policy._stage_soak_daily,
    ),
    _metric(
        "slo.error_budget_policy_coverage",
        unit="ratio",
        page="/reliability",
        definition="""Share of services reporting SLO samples in the window that are covered by
        the documented error-budget policy (`policy_services`); a policy nobody's data reaches
        is not "in use".""",
        fn=reliability._policy_coverage,
        daily=reliability._policy_coverage_daily,
    ),
    _metric(
        "incidents.postmortems_generated",
        unit="count",
        page="/reliability",
        definition="""Postmortems generated (by the postmortem bot or the console) in the
        window.""",
        fn=reliability._postmortems,
        daily=reliability._postmortems_daily,
    ),
    _metric(
        "traffic.dns_weight_split_deviation",
        unit="ratio",
        page="/traffic",
        state=True,
        definition="""For the configured record, the largest gap between a weighted set's share
        of the total weight and an equal split (50/50 for two regions), as of the end of the
        window.""",
        fn=traffic._weight_split,
        daily=traffic._weight_split_daily,
    ),
)

REGISTRY: dict[str, Metric] = {m.id: m for m in METRICS}
if len(REGISTRY) != len(METRICS):
    raise RuntimeError("a metric id is registered twice")


def get_metric(metric_id: str) -> Metric:
    """Return the registered metric (KeyError when there is none)."""
    return REGISTRY[metric_id]


def known_metrics() -> dict[str, Metric]:
    """Return every registered metric by id."""
    return dict(REGISTRY)
