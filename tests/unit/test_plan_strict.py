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
