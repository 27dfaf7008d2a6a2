"""Plans that would silently switch a check off are refused: duplicate keys, thresholds that cannot fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from promoter.errors import PlanError
from promoter.plan.loader import parse_plan

PLAN_PATH = Path(__file__).resolve().parents[2] / "plans" / "PROM-CAMP-001.yaml"
TEXT = PLAN_PATH.read_text()


def _line(text: str, needle: str, nth: int = 1) -> int:
    seen = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            seen += 1
            if seen == nth:
                return number
    raise AssertionError(needle)


def problems_of(text: str) -> list[str]:
    with pytest.raises(PlanError) as err:
        parse_plan(text, "plan.yaml")
    return err.value.problems


def test_a_duplicate_key_is_an_error_naming_both_lines():
    # GIVEN error_rate_pct twice, the second 100 (which, winning silently, would let any failure rate through)
    text = TEXT.replace("  error_rate_pct: 5.0 ", "  error_rate_pct: 5.0\n  error_rate_pct: 100 ", 1)
    first, second = _line(text, "  error_rate_pct: 5.0"), _line(text, "  error_rate_pct: 100")
    problems = problems_of(text)
    assert problems == [f"line {second}: rollback_thresholds.error_rate_pct: duplicate key (first at line {first}); "
                        "each key may appear once"]


def test_duplicate_keys_are_found_at_any_depth_and_in_lists():
    text = TEXT.replace("    - weight: 50\n", "    - weight: 50\n      weight: 60\n", 1)
    text = text.replace("plan_version: 1\n", "plan_version: 1\nplan_version: 1\n", 1)
    problems = problems_of(text)
    assert any(p.startswith(f"line {_line(text, 'plan_version', 2)}: plan_version: duplicate key (first at line "
                            f"{_line(text, 'plan_version')})") for p in problems), problems
    assert any(f"canary.steps.1.weight: duplicate key (first at line {_line(text, '- weight: 50')})" in p
               for p in problems), problems


@pytest.mark.parametrize(("old", "new", "field"), [
    ("relative_tolerance_pct: 1.0 ", "relative_tolerance_pct: 1000 ", "canary.relative_tolerance_pct"),
    ("  error_rate_pct: 5.0 ", "  error_rate_pct: 100 ", "rollback_thresholds.error_rate_pct"),
    ("throttles_per_minute: 10 ", "throttles_per_minute: 1000000 ", "rollback_thresholds.throttles_per_minute"),
    ("dlq_messages: 0 ", "dlq_messages: 1000000 ", "rollback_thresholds.dlq_messages"),
    ("min_invocations: 50 ", "min_invocations: 100000000 ", "canary.min_invocations"),
    ("max_extension_seconds: 900 ", "max_extension_seconds: 86400 ", "canary.max_extension_seconds"),
])
def test_a_threshold_out_of_its_sane_range_is_refused(old, new, field):
    text = TEXT.replace(old, new, 1)
    assert text != TEXT
    problems = problems_of(text)
    assert len(problems) == 1 and f": {field}: " in problems[0], problems
    assert problems[0].startswith(f"line {_line(text, new.strip())}: ")


def test_a_p95_threshold_the_function_timeout_never_lets_it_reach_is_refused():
    # the service times out at 10 s, so no invocation lasts longer: a p95 trigger at 10 s or more can never fire
    text = TEXT.replace("p95_duration_ms: 2000 ", "p95_duration_ms: 10000 ", 1)
    problems = problems_of(text)
    assert problems == [f"line {_line(text, 'p95_duration_ms: 10000')}: rollback_thresholds.p95_duration_ms: "
                        "10000 ms can never be exceeded: service.timeout_seconds stops every invocation at 10000 ms, "
                        "set it below the timeout"]



@pytest.mark.parametrize(("old", "new", "field"), [
    ("    threshold: 5.0\n", "    threshold: 100\n", "alarms.0.threshold"),
    ("    threshold: 2000\n", "    threshold: 10000\n", "alarms.1.threshold"),
])
def test_an_alarm_that_can_never_fire_is_refused(old, new, field):
    # a percentage above 100 % of errors, or a duration at the function's timeout, is never exceeded
    text = TEXT.replace(old, new, 1)
    problems = problems_of(text)
    assert len(problems) == 1 and f": {field}: " in problems[0] and "can never" in problems[0], problems
    assert problems[0].startswith(f"line {_line(text, new.strip())}: ")


@pytest.mark.parametrize(("old", "new", "field"), [
    ("analysis_interval_seconds: 60", "analysis_interval_seconds: 86400", "canary.analysis_interval_seconds"),
    ("      bake_seconds: 900           #", "      bake_seconds: 9000000           #", "canary.steps.0.bake_seconds"),
])
def test_canary_timings_out_of_range_are_refused(old, new, field):
    problems = problems_of(TEXT.replace(old, new, 1))
    assert len(problems) == 1 and f": {field}: " in problems[0], problems
