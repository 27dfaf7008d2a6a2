"""Canary judgement: pure decisions on plain numbers.

Nothing here calls AWS or sleeps. :func:`judge` turns one :class:`Observation` (the canary's and the stable
version's metrics over the same window, DLQ depth, alarms) into a :class:`Verdict`; :func:`next_action` turns a
verdict and the bake's elapsed time into what the release does next; :func:`query_window` computes the
CloudWatch window for a step. Every verdict carries every number and threshold it used, so the ledger can
show why a release went on or was rolled back.

Rules:

- hard signals are judged on any sample size: an alarm in ALARM (that was not already in ALARM before the
  run started), DLQ depth above the threshold, throttles per minute above the threshold;
- error rate and p95 need ``min_invocations`` canary invocations in the window; fewer is *inconclusive*,
  never a silent pass;
- error rate = (Lambda Errors + the service's 5xx count) / Invocations, in percent;
- with ``compare_to_stable``, the canary fails on error rate only when it exceeds the threshold AND exceeds
  stable's rate by more than ``relative_tolerance_pct`` points, so an incident already present on stable
  does not block its fix. p95 is judged the same way against stable's p95 (tolerance in percent of it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from promoter.plan.models import Plan

Outcome = Literal["pass", "fail", "inconclusive"]
Action = Literal["wait", "advance", "rollback"]


@dataclass(frozen=True)
class VersionMetrics:
    version: str
    invocations: float = 0
    errors: float = 0  # Lambda function errors
    server_errors: float = 0  # the service's own 5xx answers
    throttles: float = 0
    p95_ms: float | None = None

    @property
    def error_rate_pct(self) -> float | None:
        if self.invocations <= 0:
            return None
        return 100.0 * (self.errors + self.server_errors) / self.invocations

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        rate = self.error_rate_pct
        data["error_rate_pct"] = None if rate is None else round(rate, 3)
        return data


@dataclass(frozen=True)
class Observation:
    canary: VersionMetrics
    stable: VersionMetrics | None
    window_seconds: float
    dlq_messages: int | None = None
    alarms_in_alarm: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "canary": self.canary.to_dict(),
            "stable": self.stable.to_dict() if self.stable else None,
            "window_seconds": round(self.window_seconds, 1),
            "dlq_messages": self.dlq_messages,
            "alarms_in_alarm": list(self.alarms_in_alarm),
        }


@dataclass(frozen=True)
class Thresholds:
    error_rate_pct: float
    p95_duration_ms: float
    throttles_per_minute: float
    dlq_messages: int
    min_invocations: int
    compare_to_stable: bool = True
    relative_tolerance_pct: float = 1.0

    @classmethod
    def from_plan(cls, plan: Plan) -> Thresholds:
        t, c = plan.rollback_thresholds, plan.canary
        return cls(
            error_rate_pct=t.error_rate_pct,
            p95_duration_ms=t.p95_duration_ms,
            throttles_per_minute=t.throttles_per_minute,
            dlq_messages=t.dlq_messages,
            min_invocations=c.min_invocations,
            compare_to_stable=c.compare_to_stable,
            relative_tolerance_pct=c.relative_tolerance_pct,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: could not be judged (no data)
    value: Any
    threshold: Any
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reasons: tuple[str, ...]
    checks: tuple[Check, ...]
    observation: Observation
    thresholds: Thresholds
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "reasons": list(self.reasons),
            "checks": [c.to_dict() for c in self.checks],
            "observation": self.observation.to_dict(),
            "thresholds": self.thresholds.to_dict(),
            **self.extra,
        }


def judge(obs: Observation, t: Thresholds, *, preexisting_alarms: tuple[str, ...] = ()) -> Verdict:
    """The verdict on one observation of a canary step."""
    checks: list[Check] = []
    minutes = max(obs.window_seconds, 1.0) / 60.0

    new_alarms = tuple(a for a in obs.alarms_in_alarm if a not in preexisting_alarms)
    checks.append(
        Check("alarms", not new_alarms, list(obs.alarms_in_alarm), "none in ALARM",
              f"already in ALARM before the run: {', '.join(preexisting_alarms)}" if preexisting_alarms else "")
    )
    if obs.dlq_messages is None:
        checks.append(Check("dlq_messages", None, None, t.dlq_messages, "DLQ depth unavailable"))
    else:
        checks.append(Check("dlq_messages", obs.dlq_messages <= t.dlq_messages, obs.dlq_messages, t.dlq_messages))
    throttles_per_min = obs.canary.throttles / minutes
    checks.append(
        Check("throttles_per_minute", throttles_per_min <= t.throttles_per_minute, round(throttles_per_min, 3),
              t.throttles_per_minute)
    )

    enough = obs.canary.invocations >= t.min_invocations
    checks.append(Check("min_invocations", enough, obs.canary.invocations, t.min_invocations))
    if enough:
        checks.append(_error_rate_check(obs, t))
        checks.append(_p95_check(obs, t))

    failed = [c for c in checks if c.ok is False and c.name != "min_invocations"]
    if failed:
        return Verdict("fail", tuple(_reason(c) for c in failed), tuple(checks), obs, t)
    if not enough:
        reason = (f"too little traffic: {obs.canary.invocations:g} canary invocations in "
                  f"{obs.window_seconds:.0f}s, {t.min_invocations} needed for a verdict")
        return Verdict("inconclusive", (reason,), tuple(checks), obs, t)
    return Verdict("pass", ("all checks within thresholds",), tuple(checks), obs, t)


def _error_rate_check(obs: Observation, t: Thresholds) -> Check:
    canary_rate = obs.canary.error_rate_pct or 0.0
    stable_rate = obs.stable.error_rate_pct if obs.stable else None
    over = canary_rate > t.error_rate_pct
    if t.compare_to_stable and stable_rate is not None:
        limit = stable_rate + t.relative_tolerance_pct
        worse = canary_rate > limit
        detail = f"stable {stable_rate:.2f}%, canary may exceed it by {t.relative_tolerance_pct:g} points"
        return Check("error_rate_pct", not (over and worse), round(canary_rate, 3), t.error_rate_pct, detail)
    detail = "stable has no traffic in the window" if t.compare_to_stable else ""
    return Check("error_rate_pct", not over, round(canary_rate, 3), t.error_rate_pct, detail)


def _p95_check(obs: Observation, t: Thresholds) -> Check:
    p95 = obs.canary.p95_ms
    if p95 is None or (isinstance(p95, float) and math.isnan(p95)):
        return Check("p95_duration_ms", None, None, t.p95_duration_ms, "no p95 datapoint in the window")
    over = p95 > t.p95_duration_ms
    stable_p95 = obs.stable.p95_ms if obs.stable else None
    if t.compare_to_stable and stable_p95 is not None:
        limit = stable_p95 * (1 + t.relative_tolerance_pct / 100.0)
        detail = f"stable p95 {stable_p95:.1f} ms"
        return Check("p95_duration_ms", not (over and p95 > limit), round(p95, 2), t.p95_duration_ms, detail)
    return Check("p95_duration_ms", not over, round(p95, 2), t.p95_duration_ms)


def _reason(check: Check) -> str:
    if check.name == "alarms":
        return f"alarms in ALARM: {', '.join(check.value)}"
    text = f"{check.name} {check.value} > {check.threshold}"
    return f"{text} ({check.detail})" if check.detail else text


def next_action(
    verdict: Verdict,
    *,
    elapsed: float,
    bake_seconds: float,
    max_extension_seconds: float,
    on_inconclusive: Literal["fail", "pass"],
) -> tuple[Action, str]:
    """What to do after a verdict ``elapsed`` seconds into a bake of ``bake_seconds``."""
    if verdict.outcome == "fail":
        return "rollback", "; ".join(verdict.reasons)
    if elapsed < bake_seconds:
        return "wait", "baking"
    if verdict.outcome == "pass":
        return "advance", "bake complete, all checks within thresholds"
    if elapsed < bake_seconds + max_extension_seconds:
        return "wait", "bake extended: waiting for enough traffic for a verdict"
    if on_inconclusive == "pass":
        return "advance", "inconclusive after the extension; the plan says on_inconclusive: pass"
    return "rollback", "inconclusive after the extension: " + "; ".join(verdict.reasons)


@dataclass(frozen=True)
class Window:
    start: float  # epoch seconds
    end: float
    period: int
    elapsed: float  # seconds of the window that have passed: step start..now

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def query_window(step_started: float, now: float) -> Window:
    """The CloudWatch window for a step: one datapoint covering step start..now.

    Standard-resolution metrics need a period that is a multiple of 60 s, so the period is the elapsed time
    rounded up to the next minute, the window starts at the step start (so nothing from an earlier step is
    counted) and ends one period later (CloudWatch answers up to now for an end in the future).
    """
    elapsed = max(now - step_started, 1.0)
    period = 60 * math.ceil(elapsed / 60.0)
    return Window(start=step_started, end=step_started + period, period=period, elapsed=elapsed)
