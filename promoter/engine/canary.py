"""Canary judgement: pure decisions on plain numbers.

Nothing here calls AWS or sleeps. :func:`judge` turns one :class:`Observation` (the canary's and the stable
version's metrics over the same window, DLQ depth, alarms) into a :class:`Verdict`; :func:`next_action` turns a
verdict and the bake's elapsed time into what the release does next; :func:`bake_clock` lays out a bake's
analysis times; :func:`query_window` computes the CloudWatch window for a step. Every verdict carries every
number and threshold it used, and one line that says why (:attr:`Verdict.line`).

Rules (fail fast, pass slow):

- hard signals are judged on any sample size: an alarm that enters ALARM during the run, DLQ depth above the
  threshold, throttles per minute above the threshold;
- error rate = (Lambda Errors + the service's 5xx count) / Invocations. **Failing** needs evidence, not a
  full sample: with ``compare_to_stable`` and traffic on stable, the canary fails when its rate is above the
  threshold, above stable's by more than ``relative_tolerance_pct`` points, and a sequential test says it is
  worse than stable: of the K errors of both versions, x were the canary's, while under "same error rate"
  each error is the canary's with probability q (the alias weight: Lambda routes each invocation at random
  with it; the observed share instead when the traffic shows at 99 % that the canary gets more). The evidence
  E is the likelihood ratio of a uniform alternative over shares above q against q; it is a test
  supermartingale under every share up to q, so ``P(E ever >= 1/alpha) <= alpha`` under the null however
  often it is looked at (Ville's inequality), and ``p = min(1, 1/E)`` is a p-value valid at every analysis.
  Without stable traffic (or with ``compare_to_stable: false``) the same test runs on the canary's own x errors
  in n invocations against the threshold (q = threshold). alpha is the plan's ``false_alarm_rate`` divided
  by the number of judged steps, so a good release is failed on errors with a probability of at most
  ``false_alarm_rate`` over the whole release;
- **passing** needs enough evidence: the exact (Clopper-Pearson) upper bound of the canary's error rate at
  ``pass_confidence`` must be under the threshold (with ``compare_to_stable``: under the larger of the
  threshold and stable's rate plus the tolerance, so an incident already on stable does not block its fix),
  on at least ``min_invocations`` invocations. For zero errors the bound is 1 - (1 - c)^(1/n), about 3/n at
  95 % (the rule of three). Anything else is *inconclusive*, never a silent pass, and says how many
  invocations and how long a pass would need at the observed rate;
- p95 latency is judged against the threshold and, with ``compare_to_stable``, against stable's p95 (the
  canary fails only when over both), and only on at least ``min_invocations`` Duration samples: a p95 from
  fewer is not a verdict. Failing fast on latency has its own evidence: a p95 under the threshold allows at
  most 5 % of samples over it, and the Duration percentiles CloudWatch reports (nearest rank) bound how many
  were over it from below; the same sequential test (q = 5 %, level alpha) fails a canary on any sample when
  that many slow samples cannot come from a p95 under the threshold.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from promoter.plan.models import Plan

Outcome = Literal["pass", "fail", "inconclusive"]
Action = Literal["wait", "advance", "rollback"]


# -- exact statistics, in plain Python ---------------------------------------------------------------------
def binom_logpmf(k: int, n: int, p: float) -> float:
    """log P(Bin(n, p) = k)."""
    if k < 0 or k > n:
        return -math.inf
    if p <= 0.0:
        return 0.0 if k == 0 else -math.inf
    if p >= 1.0:
        return 0.0 if k == n else -math.inf
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
            + k * math.log(p) + (n - k) * math.log1p(-p))


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(Bin(n, p) <= k), as the regularized incomplete beta I_{1-p}(n - k, k + 1)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    return _betainc(n - k, k + 1, 1.0 - p)


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction (modified Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x > (a + 1.0) / (a + b + 2.0):  # the fraction converges fast only below the mean; use the symmetry
        return 1.0 - _betainc(b, a, 1.0 - x)
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return min(1.0, max(0.0, math.exp(log_front) * h / a))


def upper_bound(errors: int, n: int, confidence: float) -> float:
    """The exact one-sided (Clopper-Pearson) upper confidence bound of a rate from ``errors`` in ``n``.

    The u with P(Bin(n, u) <= errors) = 1 - confidence; for zero errors 1 - (1 - confidence)^(1/n), which is
    about 3/n at 95 % (the rule of three). Found by bisection, as the binomial CDF falls as u rises.
    """
    if n <= 0 or errors >= n:
        return 1.0
    tail = 1.0 - confidence
    if errors <= 0:
        return 1.0 - tail ** (1.0 / n)
    low, high = errors / n, 1.0
    for _ in range(45):
        mid = (low + high) / 2
        if binom_cdf(errors, n, mid) > tail:
            low = mid
        else:
            high = mid
    return high


def under(errors: int, n: int, limit: float, confidence: float) -> bool:
    """Whether the exact upper bound of ``errors`` in ``n`` at ``confidence`` is under ``limit``: the same as
    P(Bin(n, limit) <= errors) < 1 - confidence, one evaluation instead of a search."""
    if n <= 0 or errors >= n:
        return False
    if limit >= 1.0:
        return True
    return binom_cdf(errors, n, limit) < 1.0 - confidence


def sequential_p(x: int, k: int, q: float) -> float:
    """Always-valid p-value that more than a share q of k events fell on one side, x having done so.

    1/E, with E the Bayes factor of a uniform prior on the share over [q, 1] against q:

        E = ∫_q^1 s^x (1-s)^(k-x) ds / ((1 - q) q^x (1-q)^(k-x))
          = P(Bin(k + 1, q) <= x) / ((1 - q) (k + 1) Binom(x; k, q))

    (the integral is B(x+1, k-x+1) times P(Beta(x+1, k-x+1) > q), which is that binomial tail). For every share
    s0 <= q, E is a nonnegative supermartingale (each alternative s > q is), so the chance that this p ever
    falls below alpha, at any number of looks, is at most alpha (Ville's inequality). A prior over [0, 1] would
    spend part of its weight on shares below q, which are no alternative to "no worse".
    """
    if k <= 0 or x * 1.0 <= q * k:
        return 1.0
    if q <= 0.0:
        return 0.0  # an event on a side that takes none under the null
    tail = binom_cdf(x, k + 1, q)
    if tail <= 0.0:
        return 1.0
    log_e = math.log(tail) - math.log1p(-q) - math.log(k + 1) - binom_logpmf(x, k, q)
    return 1.0 if log_e <= 0 else math.exp(-log_e)


ROUTING_CONFIDENCE = 0.99  # how sure the canary's observed share must be before it replaces the alias weight


def canary_share(canary_invocations: int, stable_invocations: int, weight: float | None) -> float:
    """q: the canary's share of the traffic, its expected share of the errors when it is no worse than stable.

    Lambda routes each invocation of a weighted alias at random with the weight's probability, so under "no
    worse" each error is the canary's with probability ``weight``, however the counts of one window happen to
    fall: the weight is exact, and the observed share's scatter around it (about 3 points either way on 70
    requests at 10 %) is already what the test allows for. The observed share takes over only when the traffic
    shows, at 99 %, that the canary gets more than its weight (its exact lower bound is above it: requests that
    reach the version directly, say), so such traffic can never make the canary look worse. Without a weight,
    the observed share.
    """
    total = canary_invocations + stable_invocations
    observed = canary_invocations / total if total else 0.0
    if weight is None or not 0.0 < weight < 1.0:
        return observed
    if observed <= weight or 1.0 - binom_cdf(canary_invocations - 1, total, weight) >= 1.0 - ROUTING_CONFIDENCE:
        return weight  # the lower bound is not above the weight: one evaluation instead of a search
    return max(weight, 1.0 - upper_bound(total - canary_invocations, total, ROUTING_CONFIDENCE))


def needed_invocations(rate: float, limit: float, confidence: float, at_least: int = 1) -> int | None:
    """About how many invocations at the observed ``rate`` bring the upper bound under ``limit``; None: never."""
    if rate >= limit or limit <= 0:
        return None

    def enough(n: int) -> bool:
        return n >= at_least and under(round(rate * n), n, limit, confidence)

    # start near the normal approximation, then bracket and bisect on the exact bound
    z = 1.645 if confidence <= 0.95 else 2.33
    guess = max(at_least, int(z * z * rate * (1 - rate) / (limit - rate) ** 2 + 3 / limit))
    low, high = max(0, guess // 2), max(1, guess)
    while not enough(high):
        low, high = high, high * 2
        if high > 1_000_000_000:
            return None
    while low > at_least and enough(low):
        high, low = low, low // 2
    while high - low > 1:
        mid = (low + high) // 2
        if enough(mid):
            high = mid
        else:
            low = mid
    return high


def _pct(value: float) -> str:
    return f"{100 * value:.3g}%"


def _p(value: float) -> str:
    return f"{value:.2g}" if value < 0.001 else f"{value:.4f}".rstrip("0").rstrip(".")


# -- data --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VersionMetrics:
    version: str
    invocations: float = 0
    errors: float = 0  # Lambda function errors
    server_errors: float = 0  # the service's own 5xx answers
    throttles: float = 0
    p95_ms: float | None = None
    duration_samples: float | None = None  # Duration's SampleCount: how many values the p95 was taken over
    # (percent, value in ms) pairs CloudWatch reported for Duration, p95 among them: a lower bound on how many
    # samples were slower than a threshold, for the latency test (nearest-rank percentiles)
    duration_percentiles: tuple[tuple[float, float], ...] = ()

    @property
    def error_rate_pct(self) -> float | None:
        if self.invocations <= 0:
            return None
        return 100.0 * (self.errors + self.server_errors) / self.invocations

    @property
    def counts(self) -> tuple[int, int]:
        """(errors, invocations) as whole numbers, errors never more than invocations."""
        n = max(0, round(self.invocations))
        return min(n, max(0, round(self.errors + self.server_errors))), n

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
    # when the reader reports it: the start of the newest datapoint's period, and when the reading was made
    # (epoch seconds), so a verdict can say how fresh its data is and a bake never passes on unseen time
    newest_datapoint: float | None = None
    read_at: float | None = None

    @property
    def data_age_seconds(self) -> float | None:
        if self.newest_datapoint is None or self.read_at is None:
            return None
        return max(0.0, self.read_at - self.newest_datapoint)

    def to_dict(self) -> dict[str, Any]:
        age = self.data_age_seconds
        return {
            "canary": self.canary.to_dict(),
            "stable": self.stable.to_dict() if self.stable else None,
            "window_seconds": round(self.window_seconds, 1),
            "dlq_messages": self.dlq_messages,
            "alarms_in_alarm": list(self.alarms_in_alarm),
            "newest_datapoint": self.newest_datapoint,
            "data_age_seconds": None if age is None else round(age, 1),
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
    alpha: float = 0.01  # the error test's level for one step: the plan's false_alarm_rate / judged steps
    pass_confidence: float = 0.95

    @classmethod
    def from_plan(cls, plan: Plan) -> Thresholds:
        t, c = plan.rollback_thresholds, plan.canary
        judged = sum(1 for s in c.steps if s.weight < 100 or s.bake_seconds > 0)
        return cls(
            error_rate_pct=t.error_rate_pct,
            p95_duration_ms=t.p95_duration_ms,
            throttles_per_minute=t.throttles_per_minute,
            dlq_messages=t.dlq_messages,
            min_invocations=c.min_invocations,
            compare_to_stable=c.compare_to_stable,
            relative_tolerance_pct=c.relative_tolerance_pct,
            alpha=c.false_alarm_rate / max(1, judged),
            pass_confidence=c.pass_confidence,
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
class ErrorTest:
    """The error-rate decision and every number it used."""

    test: str  # sequential-vs-stable | sequential-vs-threshold
    canary: tuple[int, int]  # (errors, invocations)
    stable: tuple[int, int] | None
    share: float  # q: the canary's expected share of the errors (vs stable) or the threshold (vs threshold)
    p_value: float
    alpha: float
    confidence: float  # of the upper bound that must be under ``limit`` to pass
    threshold: float  # the plan's error rate threshold, as a fraction
    limit: float  # what the bound must be under to pass
    decision: Outcome
    min_invocations: int = 1
    window_seconds: float = 0.0

    @property
    def bound(self) -> float:
        """Upper confidence bound of the canary's rate (exact, Clopper-Pearson)."""
        return upper_bound(self.canary[0], self.canary[1], self.confidence)

    @property
    def needed_invocations(self) -> int | None:
        """About how many canary invocations a pass needs at the observed rate; None: never, or not waiting."""
        if self.decision != "inconclusive":
            return None
        x, n = self.canary
        return needed_invocations(x / n if n else 0.0, self.limit, self.confidence, at_least=self.min_invocations)

    @property
    def needed_seconds(self) -> float | None:
        """From the step's start, at the observed canary rate."""
        needed, n = self.needed_invocations, self.canary[1]
        if needed is None or n <= 0 or self.window_seconds <= 0:
            return None
        return needed / (n / self.window_seconds)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["bound"] = self.bound
        data["needed_invocations"] = needed = self.needed_invocations
        data["needed_seconds"] = None if needed is None else round(self.needed_seconds or 0, 1) or None
        data["canary"] = list(self.canary)
        data["stable"] = list(self.stable) if self.stable else None
        for key in ("share", "bound", "limit", "threshold"):
            data[key] = round(data[key], 6)
        data["p_value"] = float(f"{self.p_value:.4g}")
        return data

    def line(self) -> str:
        x, n = self.canary
        head = f"canary {x}/{n} errors"
        if self.stable is not None:
            head += f" vs stable {self.stable[0]}/{self.stable[1]}"
        else:
            head += f" vs threshold {_pct(self.threshold)}"
        if self.decision == "fail":
            return f"{head}, p={_p(self.p_value)} < {_p(self.alpha)}: fail"
        bound = f"upper bound {_pct(self.bound)} at {self.confidence:.0%}"
        if self.decision == "pass":
            return f"{head}, p={_p(self.p_value)}; {bound} < {_pct(self.limit)}: pass"
        text = f"{head}, p={_p(self.p_value)}; {bound} >= {_pct(self.limit)}"
        needed = self.needed_invocations
        if needed is None:
            return text + ", and at the observed rate no amount of traffic brings it under: inconclusive"
        seconds = self.needed_seconds
        if seconds is not None:
            return f"{text}: inconclusive, a pass needs about {needed} invocations, {seconds:.0f}s at the observed rate"
        return f"{text}: inconclusive, a pass needs about {needed} invocations"


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reasons: tuple[str, ...]
    checks: tuple[Check, ...]
    observation: Observation
    thresholds: Thresholds
    extra: dict[str, Any] = field(default_factory=dict)
    test: ErrorTest | None = None

    @property
    def line(self) -> str:
        """One line: the error test's numbers and decision, then any other check that decided."""
        parts = [self.test.line()] if self.test else []
        others = [r for r in self.reasons if not r.startswith("error_rate_pct:")]
        if self.outcome == "fail" and others:
            parts.append("; ".join(others) + ": fail")
        elif self.outcome == "inconclusive" and others and (self.test is None or self.test.decision == "pass"):
            parts.append("; ".join(others) + ": inconclusive")
        return "; ".join(parts) or "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "reasons": list(self.reasons),
            "line": self.line,
            "test": self.test.to_dict() if self.test else None,
            "checks": [c.to_dict() for c in self.checks],
            "observation": self.observation.to_dict(),
            "thresholds": self.thresholds.to_dict(),
            **self.extra,
        }


# -- the decision ------------------------------------------------------------------------------------------
def judge(obs: Observation, t: Thresholds, *, preexisting_alarms: tuple[str, ...] = (),
          canary_weight: float | None = None) -> Verdict:
    """The verdict on one observation of a canary step.

    ``canary_weight`` (0..1) is the share of traffic the alias gives the canary; the error test expects that share
    of the errors from a canary no worse than stable, or the observed share when the traffic shows it is larger
    (:func:`canary_share`), so routing that favours the canary cannot make it look worse.
    """
    checks: list[Check] = []
    reasons: list[str] = []
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
    reasons.extend(_reason(c) for c in checks if c.ok is False)

    test = error_test(obs, t, canary_weight=canary_weight)
    enough = obs.canary.invocations >= t.min_invocations
    checks.append(Check("min_invocations", enough, obs.canary.invocations, t.min_invocations,
                        "" if enough else "fewer invocations than the plan's minimum for a pass"))
    rate_ok = {"fail": False, "pass": True, "inconclusive": None}[test.decision]
    checks.append(Check("error_rate_pct", rate_ok, round(100 * test.canary[0] / max(1, test.canary[1]), 3),
                        t.error_rate_pct, test.line()))
    if test.decision == "fail":
        reasons.append("error_rate_pct: " + test.line())
    p95 = _p95_check(obs, t)
    checks.append(p95)
    if p95.ok is False:
        reasons.append(_reason(p95))

    if reasons:
        return Verdict("fail", tuple(reasons), tuple(checks), obs, t, test=test)
    waiting = []
    if test.decision != "pass":  # too little traffic included: a pass needs min_invocations
        waiting.append("error_rate_pct: " + test.line())
    if p95.ok is None and p95.value is not None:  # a p95 over too few samples is not a verdict
        waiting.append(f"p95 not judged: {p95.detail}")
    if waiting:
        return Verdict("inconclusive", tuple(waiting), tuple(checks), obs, t, test=test)
    return Verdict("pass", ("all checks within thresholds",), tuple(checks), obs, t, test=test)


def error_test(obs: Observation, t: Thresholds, *, canary_weight: float | None = None) -> ErrorTest:
    """The error-rate decision: sequential test for failing, exact upper bound for passing."""
    x, n = obs.canary.counts
    threshold = t.error_rate_pct / 100.0
    tolerance = t.relative_tolerance_pct / 100.0
    rate = x / n if n else 0.0
    stable = obs.stable.counts if obs.stable is not None else None
    if t.compare_to_stable and stable is not None and stable[1] > 0:
        xs, ns = stable
        stable_rate = xs / ns
        share = canary_share(n, ns, canary_weight)
        p = sequential_p(x, x + xs, share)
        worse = rate > threshold and rate > stable_rate + tolerance
        limit = max(threshold, stable_rate + tolerance)
        kind: str = "sequential-vs-stable"
    else:
        stable, share = None, threshold
        p = sequential_p(x, n, threshold)
        worse = rate > threshold
        limit = threshold
        kind = "sequential-vs-threshold"
    if worse and p < t.alpha:
        decision: Outcome = "fail"
    elif n >= t.min_invocations and under(x, n, limit, t.pass_confidence):
        decision = "pass"
    else:
        decision = "inconclusive"
    return ErrorTest(kind, (x, n), stable, share, p, t.alpha, t.pass_confidence, threshold, limit, decision,
                     t.min_invocations, obs.window_seconds)


SLOW_SHARE = 0.05  # p95 under the threshold means at most 5 % of the samples slower than it


def slow_at_least(percentiles: tuple[tuple[float, float], ...], samples: int, threshold: float) -> int:
    """How many of ``samples`` values were at least slower than ``threshold``, from nearest-rank percentiles.

    The k-th percentile is the value of rank ceil(k/100 * n), so when it is over the threshold every value from
    that rank up is too: n - ceil(k/100 * n) + 1 of them.
    """
    best = 0
    for pct, value in percentiles:
        if value > threshold and samples > 0:
            best = max(best, samples - math.ceil(pct / 100.0 * samples - 1e-9) + 1)
    return min(best, samples)


def _p95_check(obs: Observation, t: Thresholds) -> Check:
    p95 = obs.canary.p95_ms
    if p95 is None or (isinstance(p95, float) and math.isnan(p95)):
        return Check("p95_duration_ms", None, None, t.p95_duration_ms, "no p95 datapoint in the window")
    samples = obs.canary.duration_samples
    samples = obs.canary.invocations if samples is None else samples
    stable_p95 = obs.stable.p95_ms if obs.stable else None
    worse = t.compare_to_stable is False or stable_p95 is None or \
        p95 > stable_p95 * (1 + t.relative_tolerance_pct / 100.0)
    n = max(0, round(samples))
    slow = slow_at_least(obs.canary.duration_percentiles, n, t.p95_duration_ms)
    p = sequential_p(slow, n, SLOW_SHARE)
    if p95 > t.p95_duration_ms and worse and p < t.alpha:
        # fail fast: so many samples over the threshold that its p95 cannot be under it
        stable_text = f", stable p95 {stable_p95:.1f} ms" if stable_p95 is not None else ""
        return Check("p95_duration_ms", False, round(p95, 2), t.p95_duration_ms,
                     f"at least {slow}/{n} samples over {t.p95_duration_ms:g} ms, p={_p(p)} < {_p(t.alpha)}"
                     f"{stable_text}")
    if samples < t.min_invocations:
        return Check("p95_duration_ms", None, round(p95, 2), t.p95_duration_ms,
                     f"p95 over {samples:g} samples, {t.min_invocations} needed")
    over = p95 > t.p95_duration_ms
    if t.compare_to_stable and stable_p95 is not None:
        limit = stable_p95 * (1 + t.relative_tolerance_pct / 100.0)
        detail = f"stable p95 {stable_p95:.1f} ms, {samples:g} samples"
        return Check("p95_duration_ms", not (over and p95 > limit), round(p95, 2), t.p95_duration_ms, detail)
    return Check("p95_duration_ms", not over, round(p95, 2), t.p95_duration_ms, f"{samples:g} samples")


def _reason(check: Check) -> str:
    if check.name == "alarms":
        return f"alarms in ALARM: {', '.join(check.value)}"
    text = f"{check.name} {check.value} > {check.threshold}"
    return f"{text} ({check.detail})" if check.detail else text


def still_preexisting(preexisting: tuple[str, ...], in_alarm: tuple[str, ...]) -> tuple[str, ...]:
    """Alarms that have stayed in ALARM since before the run: one that left ALARM and comes back is new."""
    return tuple(a for a in preexisting if a in in_alarm)


# -- the bake's clock --------------------------------------------------------------------------------------
MIN_COMPRESSED_INTERVAL = 0.5  # seconds: a compressed interval is not shorter than this (nor than the bake)
SAME_MOMENT = 1e-3  # seconds: analyses closer than this are one


@dataclass(frozen=True)
class BakeClock:
    """When a bake is analysed: every ``interval`` from its start, until ``bake_seconds`` (the earliest a step
    may pass), extended up to ``deadline`` while the evidence is not enough either way."""

    bake_seconds: float
    interval: float
    extension_seconds: float

    @property
    def deadline(self) -> float:
        return self.bake_seconds + self.extension_seconds

    def first_analysis(self) -> float:
        return min(self.interval, self.bake_seconds)

    def next_analysis(self, elapsed: float) -> float:
        """Seconds from the step's start of the analysis after one at ``elapsed``."""
        following = elapsed + self.interval
        if elapsed < self.bake_seconds - SAME_MOMENT:  # an analysis a hair before the bake's end is at its end
            return min(following, self.bake_seconds)
        return min(following, max(self.deadline, elapsed))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "deadline": self.deadline}


def bake_clock(bake_seconds: float, *, plan_bake_seconds: float, plan_interval: float, extension_seconds: float,
               interval: float | None = None) -> BakeClock:
    """Analysis on the bake's own clock: a bake shortened from the plan's (``--bake``) shortens the interval
    in proportion unless one is given; an interval is never longer than the bake it judges."""
    if interval is None:
        scale = bake_seconds / plan_bake_seconds if 0 < bake_seconds < plan_bake_seconds else 1.0
        interval = max(plan_interval * scale, min(MIN_COMPRESSED_INTERVAL, plan_interval))
    if bake_seconds > 0:
        interval = min(interval, bake_seconds)
    return BakeClock(bake_seconds=bake_seconds, interval=interval, extension_seconds=extension_seconds)


def data_covers(obs: Observation, *, step_started: float, bake_seconds: float, resolution: float = 60.0) -> bool:
    """Whether the metrics read reach the bake's last period, so a pass is not judged on time not yet seen.

    A reader that does not report its newest datapoint is taken at its word.
    """
    if obs.newest_datapoint is None:
        return obs.read_at is None
    return obs.newest_datapoint >= step_started + bake_seconds - resolution


def next_action(
    verdict: Verdict,
    *,
    elapsed: float,
    bake_seconds: float,
    max_extension_seconds: float,
    on_inconclusive: Literal["fail", "pass"],
    data_seen: bool = True,
) -> tuple[Action, str]:
    """What to do after a verdict ``elapsed`` seconds into a bake of ``bake_seconds``."""
    if verdict.outcome == "fail":
        return "rollback", "; ".join(verdict.reasons)
    if elapsed < bake_seconds:
        return "wait", "baking"
    if verdict.outcome == "pass" and data_seen:
        return "advance", "bake complete, all checks within thresholds"
    deadline = bake_seconds + max_extension_seconds
    if elapsed < deadline:
        if verdict.outcome == "pass":
            return "wait", "bake extended: the metrics read do not reach the bake's end yet"
        return "wait", f"bake extended up to {deadline:g}s: waiting for enough traffic for a verdict"
    why = "; ".join(verdict.reasons) if verdict.outcome != "pass" else "the metrics never reached the bake's end"
    if on_inconclusive == "pass":
        return "advance", f"inconclusive after the extension ({why}); the plan says on_inconclusive: pass"
    return "rollback", "inconclusive after the extension: " + why


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


def canary_window(step_started: float, now: float) -> Window:
    """The window a canary step is judged on: from the whole second the step started in, up to now.

    Metrics are filed under the second they were recorded in (CloudWatch keeps a datapoint's own timestamp), so
    a window from the step's fractional start would drop the canary's first requests, those answered in the
    second of the shift: up to a second of the evidence a fail needs. That second's earlier part is stable's
    traffic from before the shift, which only adds to stable's counts. The pre-traffic gate's requests are not
    in it: the gate invokes the version by number, and the reader's Lambda metrics are the alias's
    (Resource ``<function>:<alias>``, ExecutedVersion). On AWS CloudWatch rounds a standard-resolution start
    down to its minute anyway.
    """
    start = float(math.floor(step_started))
    return query_window(start, max(now, start + 1.0))
