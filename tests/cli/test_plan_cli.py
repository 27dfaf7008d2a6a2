"""``promoter plan validate | show | schema`` through the CLI, on the real plan and on broken copies of it."""

from __future__ import annotations

import json

import pytest


def test_validate_the_real_plan(runner, cli):
    result = runner.invoke(cli, ["plan", "validate"])
    assert result.exit_code == 0, result.output
    assert "PROM-CAMP-001 is valid" in result.stdout


@pytest.mark.parametrize(
    ("old", "new", "marker", "expected"),
    [
        ("  min_invocations: 50 ", "  min_invocationz: 50 ", "min_invocationz", "canary.min_invocationz: unknown key"),
        ("memory_mb: 256", "memory_mb: lots", "memory_mb", "service.memory_mb: Input should be a valid integer"),
        ("  handler: campaigns_lambda.handler.lambda_handler\n", "", "service:", "service.handler: required field"),
        ("- weight: 50", "- weight: 5", "canary:", "canary: canary weights must strictly increase"),
        ("    - weight: 10\n", "    - weight: 101\n", "weight: 101", "canary.steps.0.weight: Input should be less"),
        ('region: af-south-1', 'region: af-south-one', "af-south-one", "environments.prod.region: String should match"),
    ],
)
def test_broken_plan_names_file_line_and_field(runner, cli, broken_plan, find_line, old, new, marker, expected):
    # GIVEN a copy of the real plan with one mistake
    path = broken_plan(old, new)
    # WHEN it is validated
    result = runner.invoke(cli, ["plan", "validate", str(path)])
    # THEN exit 1 and one line naming the file, the line of the mistake and the field path
    assert result.exit_code == 1
    lines = [line.removeprefix("error: ") for line in result.stderr.strip().splitlines()]
    assert f"{path}: line {find_line(path, marker)}: {expected}" in "\n".join(lines), result.stderr
    assert all(line.startswith(f"{path}: ") for line in lines), lines


def test_several_problems_one_line_each(runner, cli, tmp_path, broken_plan):
    path = broken_plan("memory_mb: 256", "memory_mb: lots")
    path.write_text(path.read_text().replace("  min_invocations: 50 ", "  min_invocationz: 50 "))
    result = runner.invoke(cli, ["plan", "validate", str(path), "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["valid"] is False and data["file"] == str(path)
    assert len(data["problems"]) == 2
    assert any("service.memory_mb" in p for p in data["problems"])
    assert any("canary.min_invocationz" in p for p in data["problems"])


def test_bad_yaml_names_file_and_line(runner, cli, tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text("plan_version: 1\nid: [PROM\ntitle: x\n")
    result = runner.invoke(cli, ["plan", "validate", str(path)])
    assert result.exit_code == 1
    assert f"{path}: line 3: not valid YAML" in result.stderr
    json_result = runner.invoke(cli, ["plan", "validate", str(path), "--json"])
    assert json.loads(json_result.stdout)["file"] == str(path)


def test_missing_file(runner, cli, tmp_path):
    path = tmp_path / "nope.yaml"
    result = runner.invoke(cli, ["plan", "validate", str(path)])
    assert result.exit_code == 1
    assert f"{path}: file not found" in result.stderr


def test_plan_option_and_envvar_reach_every_plan_command(runner, cli, tmp_path, monkeypatch):
    path = tmp_path / "nope.yaml"
    assert runner.invoke(cli, ["plan", "show", "--plan", str(path)]).exit_code == 1
    monkeypatch.setenv("PROMOTER_PLAN", str(path))
    result = runner.invoke(cli, ["plan", "validate"], env={"PROMOTER_PLAN": str(path)})
    assert result.exit_code == 1 and "file not found" in result.stderr


def test_show_prod_renders_its_names_gates_and_alarms(runner, cli):
    result = runner.invoke(cli, ["plan", "show", "--env", "prod"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in ("093646564004", "af-south-1", "campaigns-handler-prod", "campaigns-prod", "bbws-templates-prod",
                 "SIT sign-off (Gate 4)", "campaigns-prod-high-error-rate", "Canary steps"):
        assert text in out, text
    assert "815856636111" not in out  # only the chosen environment
    assert "Phase 1: SIT promotion" not in out


def test_show_json_has_resolved_names(runner, cli):
    result = runner.invoke(cli, ["plan", "show", "--env", "sit", "--json"])
    data = json.loads(result.stdout)
    assert data["resolved_names"]["function"] == "campaigns-handler-sit"
    assert data["resolved_names"]["alarms"]["dlq-messages"] == "campaigns-sit-dlq-messages"


def test_show_refuses_an_unknown_env_listing_the_environments(runner, cli):
    result = runner.invoke(cli, ["plan", "show", "--env", "qa"])
    assert result.exit_code == 2
    assert "unknown environment 'qa'; the plan defines: dev, prod, sit" in result.stderr


def test_schema_is_a_json_schema_the_real_plan_satisfies(runner, cli):
    import jsonschema
    import yaml

    from promoter.plan import default_plan_path

    plan_text = default_plan_path().read_text()
    result = runner.invoke(cli, ["plan", "schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load(plan_text), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**yaml.safe_load(plan_text), "surprise": 1}, schema)
