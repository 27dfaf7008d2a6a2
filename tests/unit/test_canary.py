"""Canary judgement on plain data: every threshold, sample size, relative-to-stable, the exact tests, the bake's
clock, next action, windows, and the false-alarm rate of the error test on simulated good releases."""

from __future__ import annotations

import math
import random

import pytest

from promoter.engine.canary import (
    Observation,
    Thresholds,
    VersionMetrics,
    bake_clock,
    binom_cdf,
    canary_share,
    canary_window,
    data_covers,
    error_test,
    judge,
    needed_invocations,
    next_action,
    query_window,
    sequential_p,
    slow_at_least,
    still_preexisting,
    upper_bound,
)
from promoter.plan import load_plan

T = Thresholds(error_rate_pct=5.0, p95_duration_ms=2000, throttles_per_minute=10, dlq_messages=0,
               min_invocations=50, compare_to_stable=True, relative_tolerance_pct=1.0)
ABSOLUTE = Thresholds(**{**T.to_dict(), "compare_to_stable": False})


def obs(canary=None, stable=None, window=120.0, dlq=0, alarms=()):
    return Observation(
        canary=canary or VersionMetrics("2", invocations=100, p95_ms=120),
        stable=stable if stable is not None else VersionMetrics("1", invocations=900, p95_ms=110),
        window_seconds=window,
        dlq_messages=dlq,
        alarms_in_alarm=tuple(alarms),
    )


def check(verdict, name):
    return next(c for c in verdict.checks if c.name == name)


def test_thresholds_come_from_the_plan():
    plan = load_plan()
    t = Thresholds.from_plan(plan)
    assert t.error_rate_pct == plan.rollback_thresholds.error_rate_pct
    assert t.p95_duration_ms == plan.rollback_thresholds.p95_duration_ms
    assert t.min_invocations == plan.canary.min_invocations
    assert t.compare_to_stable is plan.canary.compare_to_stable


def test_healthy_canary_passes_with_numbers_and_thresholds_recorded():
    verdict = judge(obs(), T)
    assert verdict.outcome == "pass"
    data = verdict.to_dict()
    assert data["thresholds"]["error_rate_pct"] == 5.0
    assert data["observation"]["canary"]["invocations"] == 100
    assert {c["name"] for c in data["checks"]} >= {"alarms", "dlq_messages", "throttles_per_minute",
                                                    "min_invocations", "error_rate_pct", "p95_duration_ms"}


def test_error_rate_counts_lambda_errors_and_service_5xx():
    canary = VersionMetrics("2", invocations=100, errors=3, server_errors=4, p95_ms=100)
    verdict = judge(obs(canary=canary), T)
    assert canary.error_rate_pct == pytest.approx(7.0)
    assert verdict.outcome == "fail"
    assert check(verdict, "error_rate_pct").value == 7.0
    assert "error_rate_pct" in verdict.reasons[0]


def test_against_the_threshold_clearly_under_passes_at_it_waits_clearly_over_fails():
    under = VersionMetrics("2", invocations=1000, server_errors=20, p95_ms=100)  # 2 %: bound 2.9 %
    at = VersionMetrics("2", invocations=1000, server_errors=50, p95_ms=100)  # 5 %: neither shown
    over = VersionMetrics("2", invocations=1000, server_errors=100, p95_ms=100)  # 10 %
    assert judge(obs(canary=under), ABSOLUTE).outcome == "pass"
    assert judge(obs(canary=at), ABSOLUTE).outcome == "inconclusive"
    assert judge(obs(canary=over), ABSOLUTE).outcome == "fail"


def test_p95_over_threshold_fails():
    slow = VersionMetrics("2", invocations=100, p95_ms=2500)
    verdict = judge(obs(canary=slow), T)
    assert verdict.outcome == "fail"
    assert check(verdict, "p95_duration_ms").ok is False


def test_throttles_per_minute_judged_over_the_window():
    # 25 throttles over 2 minutes = 12.5/min > 10
    throttled = VersionMetrics("2", invocations=100, throttles=25, p95_ms=100)
    assert judge(obs(canary=throttled, window=120), T).outcome == "fail"
    # 25 over 3 minutes = 8.3/min
    assert judge(obs(canary=throttled, window=180), T).outcome == "pass"


def test_dlq_messages_fail_and_unknown_depth_does_not():
    assert judge(obs(dlq=1), T).outcome == "fail"
    verdict = judge(obs(dlq=None), T)
    assert verdict.outcome == "pass"
    assert check(verdict, "dlq_messages").ok is None


def test_new_alarm_fails_but_an_alarm_already_firing_before_the_run_does_not():
    assert judge(obs(alarms=["campaigns-sit-high-duration"]), T).outcome == "fail"
    verdict = judge(obs(alarms=["campaigns-sit-high-duration"]), T,
                    preexisting_alarms=("campaigns-sit-high-duration",))
    assert verdict.outcome == "pass"


def test_zero_errors_on_too_small_a_sample_is_inconclusive_and_says_how_long_a_pass_needs():
    # 0 of 20 in 10 s: the bound is 1 - 0.05^(1/20) = 13.9 % > 5 %; a pass needs 59 (rule of three: 3/0.05 = 60)
    few = VersionMetrics("2", invocations=20, p95_ms=100)
    verdict = judge(obs(canary=few, window=10), T)
    assert verdict.outcome == "inconclusive"
    test = verdict.test
    assert test.decision == "inconclusive" and test.bound == pytest.approx(1 - 0.05 ** (1 / 20))
    assert test.needed_invocations == 59
    assert test.needed_seconds == pytest.approx(59 / 2.0)  # 2 canary invocations a second observed
    assert "a pass needs about 59 invocations, 30s at the observed rate" in verdict.line


def test_zero_errors_on_enough_traffic_passes_on_the_rule_of_three():
    assert upper_bound(0, 60, 0.95) < 3 / 60 < upper_bound(0, 59, 0.95) + 0.001
    verdict = judge(obs(canary=VersionMetrics("2", invocations=60, p95_ms=100)), T)
    assert verdict.outcome == "pass"
    assert verdict.line.startswith("canary 0/60 errors vs stable 0/900") and verdict.line.endswith(": pass")


def test_a_pass_needs_min_invocations_even_when_the_bound_is_under():
    strict = Thresholds(**{**T.to_dict(), "min_invocations": 200})
    verdict = judge(obs(canary=VersionMetrics("2", invocations=150, p95_ms=100)), strict)
    assert verdict.test.bound < 0.05
    assert verdict.outcome == "inconclusive"


def test_hard_signals_fail_even_on_a_small_sample():
    few = VersionMetrics("2", invocations=3, p95_ms=100)
    assert judge(obs(canary=few, dlq=4), T).outcome == "fail"


def test_gross_failure_on_a_small_sample_fails_at_once_and_says_why_in_one_line():
    # GIVEN the plan's settings and 5 of 17 canary requests failing while stable served 143 without error
    t = Thresholds.from_plan(load_plan())
    assert t.alpha == pytest.approx(0.01 / 2)  # the plan's false-alarm rate over its two judged steps
    canary = VersionMetrics("2", invocations=17, server_errors=5, p95_ms=100)
    stable = VersionMetrics("1", invocations=143, p95_ms=100)
    verdict = judge(obs(canary=canary, stable=stable, window=10), t, canary_weight=0.1)
    # THEN it fails now, far below min_invocations, with the test's numbers recorded and printed
    assert verdict.outcome == "fail"
    assert canary.invocations < t.min_invocations
    assert verdict.line == "canary 5/17 errors vs stable 0/143, p=5.4e-05 < 0.005: fail"
    data = verdict.to_dict()["test"]
    assert data["test"] == "sequential-vs-stable"
    assert data["canary"] == [5, 17] and data["stable"] == [0, 143]
    # q is the alias weight: the observed 17/160 is within its scatter; E = P(Bin(6, q) <= 5) / (0.9 * 6 * q^5)
    assert data["share"] == 0.1
    assert data["p_value"] == pytest.approx(0.9 * 6 * 0.1 ** 5 / (1 - 0.1 ** 6), rel=1e-3)
    assert data["threshold"] == 0.05 and data["decision"] == "fail"


def test_a_few_errors_on_a_small_sample_are_not_yet_evidence():
    # 1 of 17 is 5.9 % > 5 %, but one error is no evidence that the canary is worse: wait
    canary = VersionMetrics("2", invocations=17, server_errors=1, p95_ms=100)
    verdict = judge(obs(canary=canary, stable=VersionMetrics("1", invocations=143)), T, canary_weight=0.1)
    assert verdict.outcome == "inconclusive"
    assert verdict.test.p_value > T.alpha


def test_relative_to_stable_an_incident_already_on_stable_does_not_block_the_fix():
    # GIVEN stable is failing at 20 % and the canary (the fix) at 6 %
    stable = VersionMetrics("1", invocations=900, errors=180, p95_ms=100)
    canary = VersionMetrics("2", invocations=100, errors=6, p95_ms=100)
    # THEN relative judgement passes it (its bound is under stable's rate), absolute judgement cannot pass it
    verdict = judge(obs(canary=canary, stable=stable), T)
    assert verdict.outcome == "pass"
    assert verdict.test.limit == pytest.approx(0.21)
    assert judge(obs(canary=canary, stable=stable), ABSOLUTE).outcome != "pass"


def test_stable_errors_do_not_block_a_canary_no_worse_than_stable():
    stable = VersionMetrics("1", invocations=9000, errors=720, p95_ms=100)  # 8 %: an incident on stable
    canary = VersionMetrics("2", invocations=1000, errors=85, p95_ms=100)  # 8.5 %: the same incident
    verdict = judge(obs(canary=canary, stable=stable), T, canary_weight=0.1)
    assert verdict.outcome != "fail"


def test_slight_excess_within_tolerance_passes():
    stable = VersionMetrics("1", invocations=9000, errors=90, p95_ms=100)  # 1 %
    canary = VersionMetrics("2", invocations=1000, errors=15, p95_ms=100)  # 1.5 %
    assert judge(obs(canary=canary, stable=stable), T, canary_weight=0.1).outcome == "pass"


def test_relative_to_stable_canary_worse_than_stable_beyond_tolerance_fails():
    stable = VersionMetrics("1", invocations=9000, errors=450, p95_ms=100)  # 5 %
    worse = VersionMetrics("2", invocations=1000, errors=100, p95_ms=100)  # 10 % > 5 + 1, and significant
    within = VersionMetrics("2", invocations=1000, errors=58, p95_ms=100)  # 5.8 % is not > 5 + 1
    assert judge(obs(canary=worse, stable=stable), T, canary_weight=0.1).outcome == "fail"
    assert judge(obs(canary=within, stable=stable), T, canary_weight=0.1).outcome != "fail"


def test_relative_without_stable_traffic_falls_back_to_absolute():
    idle = VersionMetrics("1", invocations=0)
    bad = VersionMetrics("2", invocations=100, errors=30, p95_ms=100)
    verdict = judge(obs(canary=bad, stable=idle), T)
    assert verdict.outcome == "fail"
    assert verdict.test.test == "sequential-vs-threshold"
    assert "vs threshold 5%" in check(verdict, "error_rate_pct").detail


def test_p95_from_fewer_samples_than_the_minimum_is_not_a_verdict():
    slow_few = VersionMetrics("2", invocations=60, p95_ms=2500, duration_samples=10)
    verdict = judge(obs(canary=slow_few), T)
    assert verdict.outcome == "inconclusive"
    assert check(verdict, "p95_duration_ms").ok is None
    slow_many = VersionMetrics("2", invocations=60, p95_ms=2500, duration_samples=60)
    assert judge(obs(canary=slow_many), T).outcome == "fail"


def test_latency_fails_fast_when_so_many_samples_are_slow_that_p95_cannot_be_under():
    # GIVEN 4 samples, all slower than 2 s (p10 is over it): at least 4 of 4 over, where p95 allows 5 %
    pct = ((10.0, 2300.0), (50.0, 2310.0), (95.0, 2330.0))
    few_slow = VersionMetrics("2", invocations=4, p95_ms=2330, duration_samples=4, duration_percentiles=pct)
    verdict = judge(obs(canary=few_slow), T)
    # THEN it fails now, far below min_invocations, with the count and the p-value recorded
    assert verdict.outcome == "fail"
    p95 = check(verdict, "p95_duration_ms")
    assert p95.ok is False and "at least 4/4 samples over 2000 ms" in p95.detail
    # one slow sample in four is no such evidence: not a verdict yet
    one = VersionMetrics("2", invocations=4, p95_ms=2330, duration_samples=4,
                         duration_percentiles=((10.0, 20.0), (50.0, 30.0), (95.0, 2330.0)))
    assert check(judge(obs(canary=one), T), "p95_duration_ms").ok is None
    # nor is a canary as slow as stable (an incident on both)
    slow_stable = VersionMetrics("1", invocations=900, p95_ms=2400)
    assert judge(obs(canary=few_slow, stable=slow_stable), T).outcome != "fail"


def test_slow_at_least_reads_nearest_rank_percentiles():
    assert slow_at_least(((10.0, 2500.0),), 10, 2000) == 10  # rank 1 and up
    assert slow_at_least(((50.0, 2500.0), (10.0, 100.0)), 10, 2000) == 6  # rank 5 and up
    assert slow_at_least(((95.0, 2500.0),), 100, 2000) == 6  # rank 95 and up
    assert slow_at_least(((95.0, 1500.0),), 100, 2000) == 0
    assert slow_at_least((), 100, 2000) == 0


def test_p95_over_the_threshold_but_no_worse_than_stable_does_not_fail():
    slow = VersionMetrics("2", invocations=100, p95_ms=2500)
    stable = VersionMetrics("1", invocations=900, p95_ms=2600)
    assert judge(obs(canary=slow, stable=stable), T).outcome == "pass"
    assert judge(obs(canary=slow, stable=stable), ABSOLUTE).outcome == "fail"


def test_an_alarm_that_leaves_alarm_and_comes_back_during_the_bake_is_new():
    before = ("campaigns-sit-high-duration",)
    assert still_preexisting(before, ("campaigns-sit-high-duration",)) == before
    assert still_preexisting(before, ()) == ()
    # once it has left ALARM, its return fails the step
    assert judge(obs(alarms=before), T, preexisting_alarms=still_preexisting(before, ())).outcome == "fail"


# -- the exact statistics ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("k", "n", "p"), [(0, 10, 0.1), (3, 10, 0.3), (5, 17, 0.29), (50, 1000, 0.05),
                                            (0, 1, 0.5), (999, 1000, 0.999), (160, 2000, 0.08)])
def test_binomial_cdf_matches_the_sum_of_terms(k, n, p):
    exact = sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1))
    assert binom_cdf(k, n, p) == pytest.approx(exact, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("x", "n"), [(0, 60), (1, 20), (5, 100), (30, 100), (99, 100)])
def test_clopper_pearson_bound_leaves_exactly_the_tail_below_it(x, n):
    u = upper_bound(x, n, 0.95)
    assert binom_cdf(x, n, u) == pytest.approx(0.05, rel=1e-6)
    assert x / n < u <= 1


def test_sequential_p_value():
    # E = P(Bin(k + 1, q) <= x) / ((1 - q) (k + 1) Binom(x; k, q)): a uniform prior on the share over [q, 1]
    assert sequential_p(5, 5, 0.1) == pytest.approx(0.9 * 6 * 0.1 ** 5 / (1 - 0.1 ** 6))
    assert sequential_p(0, 10, 0.1) == 1.0  # no excess: no evidence
    assert sequential_p(1, 10, 0.1) == 1.0  # exactly the share expected
    assert sequential_p(3, 3, 0.5) == pytest.approx(1 / 3.75)  # E = (15/16) / (0.5 * 4 * 0.5 ** 3)
    assert sequential_p(1, 1, 0.5) == pytest.approx(2 / 3)  # E = (3/4) / (0.5 * 2 * 0.5)
    # the same integral by the midpoint rule, for a case with errors on both sides
    x, k, q, steps = 4, 9, 0.2, 200_000
    integral = sum(((i + 0.5) / steps * (1 - q) + q) ** x * (1 - ((i + 0.5) / steps * (1 - q) + q)) ** (k - x)
                   for i in range(steps)) / steps
    assert sequential_p(x, k, q) == pytest.approx(q ** x * (1 - q) ** (k - x) / integral, rel=1e-6)


def test_three_errors_all_on_a_ten_percent_canary_are_evidence_two_are_not():
    # at the plan's alpha (0.005 a step) no valid test can fail on two errors at 10 %: both falling on the
    # canary has probability 0.01 under "no worse"; three is the least evidence, and this test uses it
    alpha = Thresholds.from_plan(load_plan()).alpha
    assert sequential_p(2, 2, 0.1) > alpha
    assert sequential_p(3, 3, 0.1) < alpha
    assert sequential_p(3, 3, 0.11) < alpha  # up to an 11 % share


def test_the_share_is_the_alias_weight_unless_the_traffic_shows_the_canary_gets_more():
    # 7 of 66 (10.6 %) and 28 of 222 (12.6 %) are within the scatter of a 10 % weight: q stays 0.1
    assert canary_share(7, 59, 0.1) == 0.1
    assert canary_share(28, 194, 0.1) == 0.1
    assert canary_share(5, 68, 0.1) == 0.1  # fewer than the weight: the weight
    # 80 of 400 (20 %) cannot come from 10 % routing: q is the observed share's exact 99 % lower bound
    q = canary_share(80, 320, 0.1)
    assert 0.1 < q < 0.2
    assert 1 - binom_cdf(79, 400, q) == pytest.approx(0.01, rel=1e-4)
    assert canary_share(3, 7, None) == pytest.approx(0.3)  # no weight known: the observed share
    assert canary_share(0, 0, 0.1) == 0.1


def test_the_test_keeps_its_level_for_a_canary_better_than_stable_too():
    # the null is composite: "no worse". Errors fall on the canary with probability s0 <= q; over 400 errors
    # each, looked at after every one, the share of runs ever judged worse stays under alpha
    rng, q, alpha, runs = random.Random(11), 0.1, 0.05, 2000
    for s0 in (0.1, 0.05):
        ever = 0
        for _ in range(runs):
            x = 0
            for k in range(1, 401):
                x += rng.random() < s0
                if sequential_p(x, k, q) < alpha:
                    ever += 1
                    break
        assert ever / runs <= alpha


def test_needed_invocations_is_the_least_n_whose_bound_is_under():
    n = needed_invocations(0.01, 0.05, 0.95)
    assert upper_bound(round(0.01 * n), n, 0.95) < 0.05 <= upper_bound(round(0.01 * (n - 1)), n - 1, 0.95)
    assert needed_invocations(0.06, 0.05, 0.95) is None  # over the limit: no amount of traffic passes it


def _binomial(rng: random.Random, n: int, p: float) -> int:
    """Bin(n, p) by geometric gaps between successes: cost grows with the successes, not with n."""
    if p <= 0 or n <= 0:
        return 0
    if p > 0.5:
        return n - _binomial(rng, n, 1 - p)
    count, position, log_q = 0, -1, math.log1p(-p)
    while True:
        position += 1 + int(math.log(1.0 - rng.random()) / log_q)
        if position >= n:
            return count
        count += 1


def _release_is_failed(rng, t, *, rate, canary_factor, requests_per_look, weights=(0.1, 0.5), looks=30):
    """One release through the plan's judged steps, analysed ``looks`` times each on cumulative counts."""
    for weight in weights:
        xc = nc = xs = ns = 0
        for look in range(1, looks + 1):
            c = _binomial(rng, requests_per_look, weight)
            s = requests_per_look - c
            nc, ns = nc + c, ns + s
            xc += _binomial(rng, c, min(1.0, rate * canary_factor))
            xs += _binomial(rng, s, rate)
            o = Observation(VersionMetrics("2", nc, xc), VersionMetrics("1", ns, xs), 60.0 * look)
            if error_test(o, t, canary_weight=weight).decision == "fail":
                return True
    return False


def test_false_alarm_rate_on_simulated_good_releases_stays_under_the_plans_bound():
    # GIVEN the plan's settings (false_alarm_rate 0.01 over two judged steps, each analysed 30 times: 900 s
    # bake + 900 s extension every 60 s) and 3000 good releases: the canary's error rate is stable's, from
    # healthy (0.5 %) to an incident on both above the threshold (8 %), where only the test protects
    plan = load_plan()
    t = Thresholds.from_plan(plan)
    assert (plan.canary.steps[0].bake_seconds + plan.canary.max_extension_seconds) \
        / plan.canary.analysis_interval_seconds == 30
    rng = random.Random(20260112)
    runs = 3000
    failed = sum(
        _release_is_failed(rng, t, rate=rng.choice([0.005, 0.03, 0.08]), canary_factor=1.0,
                           requests_per_look=rng.choice([30, 120, 600]))
        for _ in range(runs)
    )
    # THEN the share of good releases ever judged failed is under the plan's bound (60 000+ windows)
    assert failed / runs <= plan.canary.false_alarm_rate


def test_the_same_simulation_fails_bad_releases():
    # the check above is not vacuous: a canary at three times stable's error rate, above the threshold, fails
    t = Thresholds.from_plan(load_plan())
    rng = random.Random(7)
    failed = sum(_release_is_failed(rng, t, rate=0.03, canary_factor=3.0, requests_per_look=120)
                 for _ in range(200))
    assert failed / 200 >= 0.95


def test_a_pass_waits_for_metrics_that_reach_the_bakes_end():
    v = _verdict("pass")
    action, why = next_action(v, elapsed=900, bake_seconds=900, max_extension_seconds=900, on_inconclusive="fail",
                              data_seen=False)
    assert action == "wait" and "do not reach" in why
    action, _ = next_action(v, elapsed=1800, bake_seconds=900, max_extension_seconds=900, on_inconclusive="fail",
                            data_seen=False)
    assert action == "rollback"


def test_data_covers_the_bake_only_when_the_newest_datapoint_reaches_its_last_minute():
    def seen(newest):
        return Observation(VersionMetrics("2"), None, 900, newest_datapoint=newest, read_at=1900.0)

    assert data_covers(seen(1000 + 840), step_started=1000, bake_seconds=900)
    assert not data_covers(seen(1000 + 700), step_started=1000, bake_seconds=900)
    assert not data_covers(seen(None), step_started=1000, bake_seconds=900)  # a reader that saw nothing
    assert data_covers(obs(), step_started=1000, bake_seconds=900)  # a reader that does not say
    assert seen(1000 + 840).data_age_seconds == 60


def test_bake_clock_compresses_the_interval_with_the_bake():
    # the plan: 900 s bakes analysed every 60 s, extended up to 900 s
    plan = dict(plan_bake_seconds=900, plan_interval=60, extension_seconds=900)
    assert bake_clock(900, **plan).interval == 60
    assert bake_clock(90, **plan).interval == pytest.approx(6)  # ten times shorter, ten times more often
    assert bake_clock(8, **plan).interval == pytest.approx(60 * 8 / 900)  # in proportion down to 8 s bakes
    assert bake_clock(4, **plan).interval == 0.5  # and not shorter than half a second
    assert bake_clock(0.5, **plan).interval == 0.5  # nor longer than the bake it judges
    assert bake_clock(8, **plan, interval=30).interval == 8  # a given interval, capped at the bake
    assert bake_clock(8, **plan, interval=2).interval == 2
    clock = bake_clock(8, **plan, interval=3)
    assert clock.deadline == 908  # the plan's extension is the limit whatever the bake
    assert clock.first_analysis() == 3
    assert [clock.next_analysis(e) for e in (3, 6, 8, 11, 906)] == [6, 8, 11, 14, 908]


def _verdict(outcome):
    base = {"pass": obs(), "fail": obs(dlq=3), "inconclusive": obs(canary=VersionMetrics("2", invocations=1))}
    v = judge(base[outcome], T)
    assert v.outcome == outcome
    return v


@pytest.mark.parametrize(
    ("outcome", "elapsed", "on_inconclusive", "expected"),
    [
        ("fail", 10, "fail", "rollback"),
        ("pass", 10, "fail", "wait"),
        ("pass", 900, "fail", "advance"),
        ("inconclusive", 10, "fail", "wait"),
        ("inconclusive", 1000, "fail", "wait"),  # extended: 900 bake + up to 900 extension
        ("inconclusive", 1800, "fail", "rollback"),
        ("inconclusive", 1800, "pass", "advance"),
    ],
)
def test_next_action(outcome, elapsed, on_inconclusive, expected):
    action, why = next_action(_verdict(outcome), elapsed=elapsed, bake_seconds=900, max_extension_seconds=900,
                              on_inconclusive=on_inconclusive)
    assert action == expected
    assert why


def test_query_window_rounds_the_period_up_to_minutes_and_starts_at_the_step():
    w = query_window(1000.0, 1004.0)
    assert (w.start, w.period, w.end, w.elapsed) == (1000.0, 60, 1060.0, 4.0)
    w = query_window(1000.0, 1125.0)
    assert (w.period, w.end) == (180, 1180.0)
    assert w.period % 60 == 0
    assert query_window(1000.4, 1004.0).start == 1000.4


def test_a_canary_step_is_judged_from_the_second_it_started_in():
    # the canary's requests answered in the second of the shift are filed under that second: they count
    w = canary_window(1000.4, 1004.0)
    assert (w.start, w.end, w.elapsed, w.period) == (1000.0, 1060.0, 4.0, 60)
    assert canary_window(1000.0, 1004.0).start == 1000.0
    # the period covers the window from its whole-second start, up to now
    w = canary_window(1000.9, 1060.5)
    assert w.start == 1000.0 and w.end >= 1060.5 and w.period == 120
    assert canary_window(1000.4, 1000.5).elapsed == 1.0
