"""Canary judgement on plain data: every threshold, sample size, relative-to-stable, next action, windows."""

from __future__ import annotations

import pytest

from promoter.engine.canary import Observation, Thresholds, VersionMetrics, judge, next_action, query_window
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


def test_error_rate_at_threshold_passes_just_above_fails():
    at = VersionMetrics("2", invocations=100, server_errors=5, p95_ms=100)
    above = VersionMetrics("2", invocations=100, server_errors=6, p95_ms=100)
    assert judge(obs(canary=at), ABSOLUTE).outcome == "pass"
    assert judge(obs(canary=above), ABSOLUTE).outcome == "fail"


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


def test_too_little_traffic_is_inconclusive_never_a_pass():
    few = VersionMetrics("2", invocations=10, p95_ms=100)
    verdict = judge(obs(canary=few), T)
    assert verdict.outcome == "inconclusive"
    assert "too little traffic" in verdict.reasons[0]


def test_hard_signals_fail_even_on_a_small_sample():
    few = VersionMetrics("2", invocations=3, p95_ms=100)
    assert judge(obs(canary=few, dlq=4), T).outcome == "fail"


def test_small_sample_with_all_errors_is_not_judged_on_rate():
    # 3 of 3 failing is not enough to judge a rate: inconclusive, the bake goes on
    few = VersionMetrics("2", invocations=3, errors=3)
    assert judge(obs(canary=few), T).outcome == "inconclusive"


def test_relative_to_stable_an_incident_already_on_stable_does_not_block_the_fix():
    # GIVEN stable is failing at 20 % and the canary (the fix) at 6 %
    stable = VersionMetrics("1", invocations=900, errors=180, p95_ms=100)
    canary = VersionMetrics("2", invocations=100, errors=6, p95_ms=100)
    # THEN relative judgement passes it, absolute judgement would fail it
    assert judge(obs(canary=canary, stable=stable), T).outcome == "pass"
    assert judge(obs(canary=canary, stable=stable), ABSOLUTE).outcome == "fail"


def test_relative_to_stable_canary_worse_than_stable_beyond_tolerance_fails():
    stable = VersionMetrics("1", invocations=900, errors=45, p95_ms=100)  # 5 %
    worse = VersionMetrics("2", invocations=100, errors=7, p95_ms=100)  # 7 % > 5 + 1
    within = VersionMetrics("2", invocations=100, errors=6, p95_ms=100)  # 6 % is not > 5 + 1
    assert judge(obs(canary=worse, stable=stable), T).outcome == "fail"
    assert judge(obs(canary=within, stable=stable), T).outcome == "pass"


def test_relative_without_stable_traffic_falls_back_to_absolute():
    idle = VersionMetrics("1", invocations=0)
    bad = VersionMetrics("2", invocations=100, errors=30, p95_ms=100)
    verdict = judge(obs(canary=bad, stable=idle), T)
    assert verdict.outcome == "fail"
    assert "no traffic" in check(verdict, "error_rate_pct").detail


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
