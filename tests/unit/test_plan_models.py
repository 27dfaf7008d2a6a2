"""The plan models and loader on plain text: the real plan loads, and each kind of mistake is named precisely."""

from __future__ import annotations

from pathlib import Path

import pytest

from promoter.errors import PlanError, UnknownEnvironment
from promoter.plan import load_plan
from promoter.plan.loader import parse_plan

PLAN_PATH = Path(__file__).resolve().parents[2] / "plans" / "PROM-CAMP-001.yaml"
TEXT = PLAN_PATH.read_text()


def broken(old: str, new: str) -> str:
    assert old in TEXT, old
    return TEXT.replace(old, new, 1)


def problems_of(text: str) -> list[str]:
    with pytest.raises(PlanError) as err:
        parse_plan(text, "plan.yaml")
    assert err.value.path == "plan.yaml"
    return err.value.problems


def test_the_real_plan_loads_with_the_runbook_facts():
    plan = load_plan(PLAN_PATH)
    assert sorted(plan.environments) == ["dev", "prod", "sit"]
    prod = plan.environment("prod")
    assert (prod.account_id, prod.region, prod.require_pitr) == ("093646564004", "af-south-1", True)
    assert prod.dr is not None and prod.dr.failover_region == "eu-west-1"
    assert [s.weight for s in plan.canary.steps] == [10, 50, 100]


def test_names_fill_in_the_environment():
    names = load_plan(PLAN_PATH).names("sit")
    assert names.function == "campaigns-handler-sit"
    assert names.log_group == "/aws/lambda/campaigns-handler-sit"
    assert names.base_path_mapping == "v1.0"
    assert names.alarms == {
        "high-error-rate": "campaigns-sit-high-error-rate",
        "high-duration": "campaigns-sit-high-duration",
        "throttling": "campaigns-sit-throttling",
        "dlq-messages": "campaigns-sit-dlq-messages",
    }


def test_unknown_environment_lists_the_known():
    with pytest.raises(UnknownEnvironment) as err:
        load_plan(PLAN_PATH).names("qa")
    assert err.value.known == ["dev", "prod", "sit"]
    assert err.value.exit_code == 2


def line_of(text: str, marker: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if marker in line)


def test_unknown_key_is_named_with_its_line():
    text = broken("  min_invocations: 50 ", "  min_invocationz: 50 ")
    assert problems_of(text) == [f"line {line_of(text, 'min_invocationz')}: canary.min_invocationz: unknown key "
                                 "(check the spelling; unknown keys are not allowed)"]


def test_bad_type_names_the_field():
    text = broken("timeout_seconds: 10", "timeout_seconds: ten")
    [problem] = problems_of(text)
    assert problem.startswith(f"line {line_of(text, 'timeout_seconds: ten')}: service.timeout_seconds: ")


def test_missing_field_points_at_the_enclosing_key():
    text = broken("  base_path: /v1.0/campaigns\n", "")
    assert problems_of(text) == [f"line {line_of(text, 'service:')}: service.base_path: required field is missing"]


def test_weights_must_increase_and_end_at_100():
    assert "strictly increase, got [10, 5, 100]" in problems_of(broken("- weight: 50", "- weight: 5"))[0]
    text = broken("    - weight: 100\n      bake_seconds: 0\n", "")
    assert "the last canary step must be 100, got 50" in problems_of(text)[0]


def test_dr_regions_must_differ_and_start_at_the_env_region():
    assert "failover_region must differ" in problems_of(broken("failover_region: eu-west-1",
                                                               "failover_region: af-south-1"))[0]
    assert "differs from region" in problems_of(broken("primary_region: af-south-1", "primary_region: eu-west-2"))[0]


def test_references_to_unknown_environments_point_at_each_reference():
    text = broken("    before_env: prod\n", "    before_env: production\n").replace("envs: [sit]", "envs: [qa]", 1)
    assert problems_of(text) == [
        f"line {line_of(text, 'before_env: production')}: gates.0.before_env: unknown environment 'production'",
        f"line {line_of(text, 'envs: [qa]')}: manual_checks.0.envs: unknown environment 'qa'",
    ]


def test_account_id_must_be_twelve_digits_and_a_string():
    [problem] = problems_of(broken('account_id: "815856636111"', 'account_id: "81585663611"'))
    assert "environments.sit.account_id" in problem


def test_canary_required_needs_canary_mode():
    text = broken("      mode: canary\n      canary_required: true",
                  "      mode: all-at-once\n      canary_required: true")
    assert "canary_required is true but mode is not 'canary'" in problems_of(text)[0]


def test_invalid_tag_pattern_is_refused():
    assert "not a valid regular expression" in problems_of(broken("tag_pattern: '^v", "tag_pattern: '(^v"))[0]


def test_not_yaml_and_not_a_mapping():
    [problem] = problems_of("id: [unclosed\nnext: 1\n")
    assert problem.startswith("line 2: not valid YAML")
    assert problems_of("- a\n- b\n") == ["the plan must be a YAML mapping at the top level"]


def test_missing_file_names_it(tmp_path):
    with pytest.raises(PlanError) as err:
        load_plan(tmp_path / "absent.yaml")
    assert err.value.path == str(tmp_path / "absent.yaml")
    assert "file not found" in err.value.problems[0]
