"""campaigns_lambda/terraform agrees with the promotion plan: names, alarms, dashboards, tfvars, lifecycle.

The AWS provider cannot be installed offline, so the configuration is checked by parsing its HCL; the plan
(plans/PROM-CAMP-001.yaml) and the Terraform can then never drift apart unnoticed.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import hcl2
import pytest
from hcl2 import SerializationOptions

from promoter.plan import load_plan

TF_DIR = Path(__file__).resolve().parents[2] / "campaigns_lambda" / "terraform"
PLAN = load_plan()
ENVS = sorted(PLAN.environments)
OPTIONS = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)


def _load(path: Path) -> dict:
    return hcl2.loads(path.read_text(), serialization_options=OPTIONS)


@pytest.fixture(scope="module")
def config() -> dict:
    """All blocks of the configuration, merged across files: {"resource": {type: {name: body}}, ...}."""
    merged: dict = {"resource": {}, "data": {}, "variable": {}, "locals": {}, "terraform": [], "provider": []}
    for path in sorted(TF_DIR.glob("*.tf")):
        doc = _load(path)
        for kind in ("resource", "data"):
            for block in doc.get(kind, []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        assert name not in merged[kind].setdefault(rtype, {}), f"duplicate {rtype}.{name}"
                        merged[kind][rtype][name] = body
        for block in doc.get("variable", []):
            merged["variable"].update(block)
        for block in doc.get("locals", []):
            merged["locals"].update(block)
        merged["terraform"] += doc.get("terraform", [])
        merged["provider"] += doc.get("provider", [])
    return merged


def resolve(value, env: str, locals_: dict) -> str:
    """Evaluate the string interpolations used for names: ${var.env} and ${local.NAME}."""
    text = str(value)
    for _ in range(5):
        text = text.replace("${var.env}", env)
        text = re.sub(r"\$\{local\.(\w+)\}", lambda m: str(locals_[m.group(1)]), text)
    assert "${" not in text, f"unresolved expression in {value!r}"
    return text


def one(config: dict, rtype: str, kind: str = "resource") -> dict:
    (body,) = config[kind][rtype].values()
    return body


def first_block(body: dict, key: str) -> dict:
    value = body[key]
    return value[0] if isinstance(value, list) else value


@pytest.mark.parametrize("env", ENVS)
def test_resource_names_equal_the_plans(config, env):
    names = PLAN.names(env)
    loc = config["locals"]
    res = config["resource"]
    data = config["data"]

    def name(body, attr):
        return resolve(body[attr], env, loc)

    assert name(one(config, "aws_lambda_function"), "function_name") == names.function
    assert name(one(config, "aws_lambda_alias"), "name") == names.alias
    assert name(res["aws_cloudwatch_log_group"]["lambda"], "name") == names.log_group
    assert name(one(config, "aws_iam_role"), "name") == names.execution_role
    assert name(one(config, "aws_sqs_queue"), "name") == names.dlq
    assert name(one(config, "aws_sns_topic"), "name") == names.sns_topic
    assert name(one(config, "aws_cloudwatch_dashboard"), "dashboard_name") == names.dashboard
    assert name(one(config, "aws_api_gateway_rest_api"), "name") == names.rest_api
    assert name(one(config, "aws_api_gateway_base_path_mapping"), "base_path") == names.base_path_mapping
    assert name(one(config, "aws_dynamodb_table", "data"), "name") == names.table
    assert name(one(config, "aws_s3_bucket", "data"), "bucket") == names.templates_bucket
    assert name(one(config, "aws_cognito_user_pools", "data"), "name") == names.user_pool
    # the dependency projects' resources are read, never managed here
    for rtype in ("aws_dynamodb_table", "aws_s3_bucket", "aws_cognito_user_pool"):
        assert rtype not in res, f"{rtype} belongs to another project; read it with a data source"
    assert "aws_dynamodb_table" in data and "aws_s3_bucket" in data


def _alarm_bodies(config: dict) -> dict[str, dict]:
    return {body["alarm_name"]: body for body in config["resource"]["aws_cloudwatch_metric_alarm"].values()}


def _metrics(body: dict) -> list[dict]:
    return [first_block(q, "metric") for q in body.get("metric_query", []) if "metric" in q]


@pytest.mark.parametrize("alarm", PLAN.alarms, ids=lambda a: a.id)
def test_alarms_equal_the_plans(config, alarm):
    bodies = _alarm_bodies(config)
    assert alarm.name.replace("{env}", "${var.env}") in bodies, f"no alarm named {alarm.name}"
    body = bodies[alarm.name.replace("{env}", "${var.env}")]

    assert float(body["threshold"]) == alarm.threshold
    assert body["comparison_operator"] == alarm.comparison
    assert int(body["evaluation_periods"]) == alarm.evaluation_periods
    if "metric_query" in body:  # metric math: the plan's metric is the expression's id
        (returned,) = [q for q in body["metric_query"] if q.get("return_data")]
        assert returned["id"] == alarm.metric
        assert {int(m["period"]) for m in _metrics(body)} == {alarm.period_seconds}
    else:
        assert body["metric_name"] == alarm.metric
        assert int(body["period"]) == alarm.period_seconds
        assert body.get("statistic", body.get("extended_statistic")) == alarm.statistic
    actions = body["alarm_actions"]
    actions_text = str(actions)
    if "sns" in alarm.actions:
        assert "aws_sns_topic.alerts.arn" in actions_text
    if "autoscale" in alarm.actions:
        assert "aws_appautoscaling_policy" in actions_text


def test_no_alarm_outside_the_plan(config):
    planned = {a.name.replace("{env}", "${var.env}") for a in PLAN.alarms}
    assert set(_alarm_bodies(config)) == planned


def test_alarm_thresholds_follow_the_rollback_triggers():
    by_id = {a.id: a for a in PLAN.alarms}
    thresholds = PLAN.rollback_thresholds
    assert by_id["high-error-rate"].threshold == thresholds.error_rate_pct
    assert by_id["high-duration"].threshold == thresholds.p95_duration_ms
    assert by_id["throttling"].threshold == thresholds.throttles_per_minute
    assert by_id["dlq-messages"].threshold == thresholds.dlq_messages


def test_dashboard_widgets_equal_the_plans(config):
    assert config["locals"]["dashboard_widgets"] == PLAN.dashboard_widgets
    assert set(config["locals"]["widget_stat"]) == set(PLAN.dashboard_widgets)
    body = one(config, "aws_cloudwatch_dashboard")
    assert "local.dashboard_widgets" in body["dashboard_body"]


def test_code_and_alias_routing_are_left_to_promoter(config):
    function = one(config, "aws_lambda_function")
    ignored = first_block(function, "lifecycle")["ignore_changes"]
    for attr in ("filename", "source_code_hash", "s3_key"):
        assert attr in ignored
    alias = one(config, "aws_lambda_alias")
    assert set(first_block(alias, "lifecycle")["ignore_changes"]) >= {"function_version", "routing_config"}


def test_function_settings_equal_the_plans(config):
    service = PLAN.service
    variables = config["variable"]
    assert variables["runtime"]["default"] == service.runtime
    assert variables["handler"]["default"] == service.handler
    assert variables["architecture"]["default"] == service.architecture
    assert int(variables["memory_size"]["default"]) == service.memory_mb
    assert int(variables["timeout"]["default"]) == service.timeout_seconds
    function = one(config, "aws_lambda_function")
    assert function["runtime"] == "${var.runtime}"
    assert function["handler"] == "${var.handler}"
    assert function["memory_size"] == "${var.memory_size}"
    assert function["timeout"] == "${var.timeout}"
    assert "aws_sqs_queue.dlq.arn" in first_block(function, "dead_letter_config")["target_arn"]
    env_vars = first_block(function, "environment")["variables"]
    assert {"CAMPAIGNS_TABLE", "TEMPLATES_BUCKET", "RELEASE_VERSION"} <= set(env_vars)
    log_group = config["resource"]["aws_cloudwatch_log_group"]["lambda"]
    assert log_group["retention_in_days"] == "${var.log_retention_days}"


def test_execution_role_is_least_privilege(config):
    (policy,) = [b for n, b in config["data"]["aws_iam_policy_document"].items() if n == "lambda"]
    statements = {s["sid"]: s for s in policy["statement"]}
    table = statements["CampaignsTable"]
    assert all(a.startswith("dynamodb:") and "*" not in a for a in table["actions"])
    assert table["resources"] == ["${data.aws_dynamodb_table.campaigns.arn}"]
    templates = statements["TemplatesRead"]
    assert templates["actions"] == ["s3:GetObject"]
    assert templates["resources"] == ["${data.aws_s3_bucket.templates.arn}/*"]
    xray = statements["XRayTraces"]  # X-Ray's write actions have no resource-level permissions
    assert xray["actions"] == ["xray:PutTraceSegments", "xray:PutTelemetryRecords"] and xray["resources"] == ["*"]
    for statement in policy["statement"]:
        if statement is xray:
            continue
        assert "*" not in statement["resources"]
        assert not any(a.endswith(":*") or a == "*" for a in statement["actions"])


def test_api_routes_are_lambda_proxy_to_the_alias_with_cognito(config):
    authorizer = one(config, "aws_api_gateway_authorizer")
    assert authorizer["type"] == "COGNITO_USER_POOLS"
    integration = one(config, "aws_api_gateway_integration")
    assert integration["type"] == "AWS_PROXY"
    assert integration["uri"] == "${aws_lambda_alias.live.invoke_arn}"
    routes = config["locals"]["routes"]
    served = {(r["resource"], r["method"]): r["auth"] for r in routes.values()}
    assert served == {
        ("campaigns", "GET"): True, ("campaigns", "POST"): True, ("health", "GET"): False,
        ("campaign", "GET"): True, ("campaign", "PUT"): True, ("campaign", "DELETE"): True,
    }
    paths = {n: b["path_part"] for n, b in config["resource"]["aws_api_gateway_resource"].items()}
    assert paths == {"campaigns": "campaigns", "health": "health", "campaign": "{id}"}
    # served at /<base path>/campaigns, i.e. the plan's service base path
    base = PLAN.names("sit").base_path_mapping
    assert f"/{base}/{paths['campaigns']}" == PLAN.service.base_path
    assert f"/{base}/{paths['campaigns']}/{paths['health']}" == PLAN.service.health_path


@pytest.mark.parametrize("env", ENVS)
def test_tfvars_and_backend_per_environment(env):
    spec = PLAN.environment(env)
    tfvars = _load(TF_DIR / "env" / f"{env}.tfvars")
    # the plan's facts, and the per-environment ceilings that are Terraform's alone
    assert {k: v for k, v in tfvars.items() if k not in {"reserved_concurrency", "waf_enabled"}} == {
        "env": env,
        "account_id": spec.account_id,
        "region": spec.region,
        "domain_name": spec.domain,
        "log_retention_days": spec.log_retention_days,
    }
    assert tfvars["reserved_concurrency"] >= 1
    # a WAF web ACL in front of PROD only
    assert tfvars.get("waf_enabled", False) is (env == "prod")
    backend = _load(TF_DIR / "env" / f"{env}.backend.hcl")
    assert {"bucket", "key", "region", "dynamodb_table"} <= set(backend)
    assert backend["region"] == spec.region
    assert spec.account_id in backend["bucket"]
    assert spec.terraform_workspace == env


def test_backend_is_s3_with_partial_configuration_and_provider_pinned_to_the_account(config):
    (terraform,) = config["terraform"]
    backend = first_block(terraform, "backend")
    assert "s3" in backend
    assert "hashicorp/aws" in str(terraform["required_providers"])
    (provider,) = config["provider"]
    aws = provider["aws"]
    assert aws["allowed_account_ids"] == ["${var.account_id}"]
    assert aws["region"] == "${var.region}"


@pytest.mark.terraform
def test_terraform_fmt_is_clean(terraform_bin):
    result = subprocess.run(
        [terraform_bin, "fmt", "-check", "-recursive", "-no-color"], cwd=TF_DIR, capture_output=True, text=True,
        check=False,
    )
    assert result.returncode == 0, f"not formatted: {result.stdout}{result.stderr}"
