"""The shipped configuration, checked by a real terraform with the offline stand-in providers (tools/tfstandin).

init, validate, terraform test and plan for every environment; mutations that each make ``promoter infra
validate`` fail with the file, line and terraform's message; the scanners with zero findings; the rehearsal's
Terraform step planning and reviewing the real configuration.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from promoter.adapters.scanners import find_scanner
from promoter.plan import load_plan

REPO = Path(__file__).resolve().parents[2]
TF_DIR = REPO / "campaigns_lambda" / "terraform"
PLAN = load_plan()
ENVS = sorted(PLAN.environments)

pytestmark = pytest.mark.terraform


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("CHECKPOINT_DISABLE", "1")
    for name in ("TF_WORKSPACE", "TF_DATA_DIR", "TF_PLUGIN_CACHE_DIR", "TF_CLI_ARGS", "TF_CLI_ARGS_plan",
                 "PROMOTER_TERRAFORM"):
        monkeypatch.delenv(name, raising=False)


def _validate(cli, tmp_path: Path, env: str, *extra: str, directory: Path | None = None):
    args = ["infra", "validate", "--env", env, "--offline", "--repo", str(REPO), "--evidence-dir",
            str(tmp_path / f"evidence-{env}"), "--json", *extra]
    if directory is not None:
        args += ["--dir", str(directory)]
    result = cli(*args)
    return result, json.loads(result.stdout)


def _step(doc: dict, name: str) -> dict:
    return next(s for s in doc["steps"] if s["name"] == name)


# every environment creates these; PROD adds its WAF
COMMON_CREATES = {
    "aws_lambda_function.campaigns", "aws_lambda_alias.live", "aws_lambda_permission.api_gateway",
    "aws_iam_role.lambda", "aws_iam_role_policy.lambda", "aws_cloudwatch_log_group.lambda",
    "aws_cloudwatch_log_group.api_access", "aws_api_gateway_rest_api.campaigns",
    "aws_api_gateway_resource.campaigns", "aws_api_gateway_resource.health", "aws_api_gateway_resource.campaign",
    *(f'aws_api_gateway_method.route["{r}"]' for r in ("list", "create", "health", "get", "update", "delete")),
    *(f'aws_api_gateway_integration.route["{r}"]' for r in ("list", "create", "health", "get", "update", "delete")),
    "aws_api_gateway_authorizer.cognito", "aws_api_gateway_deployment.campaigns", "aws_api_gateway_stage.campaigns",
    "aws_api_gateway_method_settings.all", "aws_api_gateway_base_path_mapping.campaigns",
    'aws_api_gateway_model.campaign["CampaignCreate"]', 'aws_api_gateway_model.campaign["CampaignUpdate"]',
    "aws_api_gateway_request_validator.body_and_parameters", "aws_api_gateway_request_validator.parameters",
    "aws_sqs_queue.dlq", "aws_sns_topic.alerts", "aws_kms_key.campaigns", "aws_kms_alias.campaigns",
    "aws_cloudwatch_metric_alarm.high_error_rate", "aws_cloudwatch_metric_alarm.high_duration",
    "aws_cloudwatch_metric_alarm.throttling", "aws_cloudwatch_metric_alarm.dlq_messages",
    "aws_cloudwatch_dashboard.campaigns",
}
WAF = {"aws_wafv2_web_acl.api[0]", "aws_wafv2_web_acl_association.api[0]", "aws_cloudwatch_log_group.waf[0]",
       "aws_wafv2_web_acl_logging_configuration.api[0]"}


@pytest.mark.parametrize("env", ENVS)
def test_init_validate_test_and_plan_pass_on_the_real_configuration(cli, tmp_path, env):
    result, doc = _validate(cli, tmp_path, env, "--no-scan")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert doc["ok"] and doc["offline"] and doc["terraform_version"].startswith("1.")
    assert [s["name"] for s in doc["steps"]] == ["fmt", "init", "validate", "test", "plan", "scan"]
    assert _step(doc, "test")["detail"].endswith(": 6 passed, 0 failed")
    plan = json.loads((tmp_path / f"evidence-{env}" / f"plan-{env}.json").read_text())
    creates = {c["address"] for c in plan["resource_changes"] if c["change"]["actions"] == ["create"]}
    assert creates == COMMON_CREATES | (WAF if env == "prod" else set())
    assert doc["plan_counts"]["create"] == len(creates)
    assert doc["plan_counts"]["delete"] == 0 and doc["plan_counts"]["replace"] == 0
    function = next(c for c in plan["resource_changes"] if c["address"] == "aws_lambda_function.campaigns")
    assert function["change"]["after"]["function_name"] == PLAN.names(env).function
    assert function["change"]["after_unknown"]["arn"] is True  # computed: known after apply


# (file, text, replacement, the message terraform gives, the line it points at); each is one mistake a review
# could miss
MUTATIONS = {
    "misspelled argument": ("lambda.tf", "  memory_size      = var.memory_size",
                            "  memroy_size      = var.memory_size",
                            'Unsupported argument: An argument named "memroy_size" is not expected here. Did you '
                            'mean "memory_size"?', "memroy_size      = var.memory_size"),
    "missing attribute": ("outputs.tf", "aws_lambda_alias.live.arn", "aws_lambda_alias.live.alias_arn",
                          'Unsupported attribute: This object has no argument, nested block, or exported '
                          'attribute named "alias_arn".', "value = aws_lambda_alias.live.alias_arn"),
    "removed required argument": ("lambda.tf", "  role             = aws_iam_role.lambda.arn\n", "",
                                  'Missing required argument: The argument "role" is required, but no '
                                  "definition was found.", 'resource "aws_lambda_function" "campaigns" {'),
    "wrong type": ("lambda.tf", "  memory_size      = var.memory_size", '  memory_size      = "lots"',
                   'Incorrect attribute value type: Inappropriate value for attribute "memory_size": a number is '
                   "required.", 'memory_size      = "lots"'),
    "two of a single block": ("lambda.tf", '  tracing_config {\n    mode = "Active"\n  }\n',
                              '  tracing_config {\n    mode = "Active"\n  }\n\n  tracing_config {\n'
                              '    mode = "PassThrough"\n  }\n',
                              'Too many tracing_config blocks: No more than 1 "tracing_config" blocks are allowed',
                              "tracing_config {", ),
    "computed-only argument": ("lambda.tf", "  function_name    = local.function_name",
                               '  function_name    = local.function_name\n  arn = "arn:aws:lambda:x"',
                               'Value for unconfigurable attribute: Can\'t configure a value for "arn": its value '
                               "will be decided automatically based on the result of applying this configuration.",
                               'arn = "arn:aws:lambda:x"'),
}


def _lines_of(path: Path, needle: str) -> list[int]:
    return [i for i, line in enumerate(path.read_text().splitlines(), 1) if line.strip() == needle]


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_each_mutation_fails_validate_with_the_file_line_and_terraforms_message(cli, tmp_path, mutation):
    file, text, replacement, message, pointed = MUTATIONS[mutation]
    work = tmp_path / "terraform"
    shutil.copytree(TF_DIR, work, ignore=shutil.ignore_patterns(".terraform*", "*.tfplan"))
    source = (work / file).read_text()
    assert text in source
    (work / file).write_text(source.replace(text, replacement, 1))
    result, doc = _validate(cli, tmp_path, "dev", "--no-scan", "--no-plan", directory=work)
    assert result.exit_code == 1
    assert doc["ok"] is False and doc["exit_code"] == 1 and "validate" in doc["failed"]
    diagnostics = _step(doc, "validate")["diagnostics"]
    assert any(message in f"{d['summary']}: {d['detail']}" for d in diagnostics), diagnostics
    located = next(d for d in diagnostics if message.startswith(d["summary"]))
    assert located["file"] == str(work / file)
    # the line terraform points at: the mutated one (the second block of two; the block missing an argument)
    assert located["line"] == _lines_of(work / file, pointed)[-1]


def test_plain_output_names_the_file_line_and_message(cli, tmp_path):
    work = tmp_path / "terraform"
    shutil.copytree(TF_DIR, work, ignore=shutil.ignore_patterns(".terraform*", "*.tfplan"))
    file, text, replacement, message, pointed = MUTATIONS["misspelled argument"]
    (work / file).write_text((work / file).read_text().replace(text, replacement, 1))
    result = cli("infra", "validate", "--env", "dev", "--offline", "--no-scan", "--no-plan", "--repo", str(REPO),
                 "--dir", str(work), "--evidence-dir", str(tmp_path / "ev"))
    assert result.exit_code == 1
    (line,) = _lines_of(work / file, pointed)
    assert f"{work / file}:{line}: error: {message}" in result.stdout
    assert "terraform checks failed for dev: validate" in result.stderr


def test_a_failing_terraform_test_is_reported_with_its_assertion(cli, tmp_path):
    work = tmp_path / "terraform"
    shutil.copytree(TF_DIR, work, ignore=shutil.ignore_patterns(".terraform*", "*.tfplan"))
    tfvars = work / "env" / "sit.tfvars"
    tfvars.write_text(re.sub(r"log_retention_days(\s+)= 30", r"log_retention_days\1= 7", tfvars.read_text()))
    result, doc = _validate(cli, tmp_path, "sit", "--no-scan", "--no-plan", directory=work)
    assert result.exit_code == 1 and doc["failed"] == ["test"]
    test = _step(doc, "test")
    assert test["detail"].endswith("4 passed, 1 failed") or "1 failed" in test["detail"]
    assert any(d["summary"] == "Test assertion failed" and "sit keeps the function's logs 30 days" in d["detail"]
               and d["file"] == str(work / "tests" / "sit.tftest.hcl") for d in test["diagnostics"])


def test_unformatted_files_fail_fmt(cli, tmp_path):
    work = tmp_path / "terraform"
    shutil.copytree(TF_DIR, work, ignore=shutil.ignore_patterns(".terraform*", "*.tfplan"))
    (work / "outputs.tf").write_text((work / "outputs.tf").read_text().replace("value = ", "value    =  ", 1))
    result, doc = _validate(cli, tmp_path, "dev", "--no-scan", "--no-plan", directory=work)
    assert result.exit_code == 1 and doc["failed"] == ["fmt"]
    assert _step(doc, "fmt")["diagnostics"][0]["file"] == str(work / "outputs.tf")


def _scanners_installed() -> bool:
    return all(find_scanner(name, REPO) for name in ("checkov", "trivy"))


@pytest.mark.skipif(not _scanners_installed(), reason="checkov and trivy are installed by .ci/run into "
                    ".promoter/tools/scanners")
@pytest.mark.parametrize("env", ENVS)
def test_checkov_and_trivy_find_nothing_unexplained_in_the_configuration_and_its_plan(cli, tmp_path, env):
    result, doc = _validate(cli, tmp_path, env)
    assert result.exit_code == 0, json.dumps(doc.get("steps"), indent=1)[-3000:]
    for name in ("checkov", "trivy"):
        step = _step(doc, name)
        assert step["detail"] == "configuration and plan: 0 finding(s)"
        assert len(step["reports"]) == 2 and all(os.path.getsize(r) > 0 for r in step["reports"])
    # the reports are the scanners' own: checkov counted passes and the suppressions with their reasons
    report = json.loads((tmp_path / f"evidence-{env}" / "checkov-configuration.json").read_text())
    summary = (report[0] if isinstance(report, list) else report)["summary"]
    assert summary["failed"] == 0 and summary["passed"] > 20 and summary["skipped"] > 0


@pytest.mark.skipif(not _scanners_installed(), reason="checkov and trivy are installed by .ci/run")
def test_a_scanner_finding_fails_validate_with_its_location(cli, tmp_path):
    work = tmp_path / "terraform"
    shutil.copytree(TF_DIR, work, ignore=shutil.ignore_patterns(".terraform*", "*.tfplan"))
    lambda_tf = work / "lambda.tf"
    lambda_tf.write_text(lambda_tf.read_text().replace('  tracing_config {\n    mode = "Active"\n  }\n', "", 1))
    result, doc = _validate(cli, tmp_path, "dev", "--no-plan", directory=work)
    assert result.exit_code == 1 and set(doc["failed"]) >= {"checkov", "trivy"}
    findings = _step(doc, "checkov")["findings"] + _step(doc, "trivy")["findings"]
    ids = {(f["scanner"], f["check_id"]) for f in findings}
    assert ("checkov", "CKV_AWS_50") in ids and ("trivy", "AWS-0066") in ids
    assert all(f["file"] == str(lambda_tf) for f in findings)


def test_the_rehearsal_plans_and_reviews_the_real_configuration(tmp_path):
    """The rehearsal's Terraform step: a local-backend copy, no -backend-config, plan and review for real."""
    from promoter.engine.ledger import Ledger
    from promoter.engine.rehearse import RehearsalSettings, _infra

    settings = RehearsalSettings(plan=PLAN, plan_path=REPO / "plans" / "PROM-CAMP-001.yaml", env="sit", repo=REPO)
    ledger = Ledger(tmp_path / "ledger")
    detail, data = _infra(settings, PLAN, ledger, tmp_path)
    assert "_skipped" not in data
    assert data["review"]["counts"]["create"] == len(COMMON_CREATES)
    assert data["review"]["blocked"] is False
    assert f"{len(COMMON_CREATES)} to create" in detail and "offline stand-in providers" in detail
    (record,) = ledger.records("sit", kind="infra-plan")
    assert record["sha256"] == data["sha256"] and record["workspace"] == "sit"
    # the copy's state stayed in the copy; the shipped directory got no .terraform or lock file
    assert (tmp_path / "terraform" / "terraform.tfstate.d" / "sit").is_dir()
    assert not (TF_DIR / ".terraform").exists() and not (TF_DIR / ".terraform.lock.hcl").exists()


def test_local_backend_copy_drops_the_s3_backend_config(tmp_path):
    from promoter.engine.infra import LOCAL_BACKEND_OVERRIDE, InfraSettings

    settings = InfraSettings.from_plan(PLAN, "prod", repo=REPO)
    assert settings.backend_config == TF_DIR / "env" / "prod.backend.hcl"
    copy = settings.with_local_backend(tmp_path / "copy")
    assert copy.backend_config is None
    assert copy.var_file == tmp_path / "copy" / "env" / "prod.tfvars"
    assert copy.plan_file == tmp_path / "copy" / "prod.tfplan"
    assert 'backend "local"' in (tmp_path / "copy" / LOCAL_BACKEND_OVERRIDE).read_text()
    assert (tmp_path / "copy" / "lambda.tf").read_text() == (TF_DIR / "lambda.tf").read_text()


def test_infra_plan_offline_records_a_reviewed_plan_that_the_stand_in_refuses_to_apply(cli, tmp_path):
    from promoter.adapters.terraform import TerraformCli, standin_toolchain
    from promoter.errors import TerraformError

    ledger = tmp_path / "ledger"
    result = cli("infra", "plan", "--env", "prod", "--offline", "--repo", str(REPO), "--ledger-dir", str(ledger),
                 "--json")
    assert result.exit_code == 0, result.stderr[-2000:]
    doc = json.loads(result.stdout)
    assert doc["offline"] is True and doc["workspace"] == "prod"
    assert doc["review"]["counts"]["create"] == len(COMMON_CREATES | WAF) and not doc["review"]["blocked"]
    plan_file = Path(doc["plan_file"])
    assert plan_file.is_file() and plan_file.parent != TF_DIR
    toolchain = standin_toolchain(REPO, REPO / ".promoter" / "tfstandin")
    runner = TerraformCli(plan_file.parent, binary=toolchain["terraform"], echo=lambda _line: None,
                          env={"TF_CLI_CONFIG_FILE": toolchain["cli_config"]})
    with pytest.raises(TerraformError) as refused:
        runner.apply(str(plan_file))
    assert "The offline stand-in for the aws provider cannot apply" in refused.value.message


def test_validate_diagnostics_point_at_the_shipped_file_not_the_copy(tmp_path):
    from promoter.engine.infra import diagnostics_from

    copy, source = tmp_path / "copy", tmp_path / "src"
    copy.mkdir()
    doc = {"valid": False, "diagnostics": [
        {"severity": "error", "summary": "Unsupported argument", "detail": "An argument named\n\"x\" is not expected",
         "range": {"filename": "lambda.tf", "start": {"line": 7, "column": 3}}},
        {"severity": "warning", "summary": "Deprecated", "detail": ""},
    ]}
    error, warning = diagnostics_from(doc, copy, source)
    assert (error.file, error.line, error.column) == (str(source / "lambda.tf"), 7, 3)
    assert error.detail == 'An argument named "x" is not expected'
    assert error.location() == f"{source / 'lambda.tf'}:7"
    assert (warning.severity, warning.file) == ("warning", None)


def test_test_diagnostics_keep_the_assertion_message_and_its_values(tmp_path):
    from promoter.engine.infra import test_diagnostics

    output = (
        'tests/dev.tftest.hcl... in progress\n  run "names"... fail\n\n'
        "Error: Test assertion failed\n\n"
        '  on tests/dev.tftest.hcl line 35, in run "names":\n'
        "  35:     condition     = aws_cloudwatch_log_group.lambda.retention_in_days == 14\n"
        "    ├────────────────\n    │ Diff:\n    │ --- actual\n    │ +++ expected\n    │ - 15\n    │ + 14\n\n\n"
        "dev keeps the function's logs 14 days\n\n"
        "tests/dev.tftest.hcl... tearing down\ntests/dev.tftest.hcl... fail\n\nFailure! 0 passed, 1 failed.\n"
    )
    (diag,) = test_diagnostics(output, tmp_path / "copy", tmp_path / "src")
    assert diag.summary == "Test assertion failed"
    assert (diag.file, diag.line) == (str(tmp_path / "src" / "tests" / "dev.tftest.hcl"), 35)
    assert diag.detail == "- 15 + 14 dev keeps the function's logs 14 days"


@pytest.mark.skipif(find_scanner("trivy", REPO) is None, reason="trivy is installed by .ci/run")
def test_a_scanner_that_cannot_run_fails_its_step_with_the_reason(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PROMOTER_CHECKOV", str(tmp_path / "no-such-checkov"))
    result, doc = _validate(cli, tmp_path, "dev", "--no-plan")
    assert result.exit_code == 1 and "checkov" in doc["failed"]
    step = _step(doc, "checkov")
    assert step["ok"] is False and "cannot run" in step["detail"] and "scanners" in step["detail"]
