"""The stand-in's answers on plain values: what it plans, refuses and reads."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile

import pytest
from tfstandin.provider import UNKNOWN, StandinProvider, load_schema


@pytest.fixture(scope="module")
def aws():
    return StandinProvider("aws", load_schema("aws"))


@pytest.fixture(scope="module")
def archive():
    return StandinProvider("archive", load_schema("archive"))


def _config(provider, type_name, data=False, **values):
    """A configuration object as Terraform sends it: every attribute present, unset ones null."""
    block = provider.block(type_name, data)
    config = {name: None for name in block.get("attributes", {})}
    for name, nested in block.get("block_types", {}).items():
        config[name] = None if nested["nesting_mode"] == "single" else []
    config.update(values)
    return config


def test_a_create_plans_every_computed_value_the_configuration_leaves_open_as_unknown(aws):
    config = _config(aws, "aws_sqs_queue", name="q", sqs_managed_sse_enabled=True)
    planned = aws.plan("aws_sqs_queue", None, config, config)
    assert planned["name"] == "q" and planned["sqs_managed_sse_enabled"] is True
    assert planned["arn"] is UNKNOWN and planned["url"] is UNKNOWN and planned["id"] is UNKNOWN
    assert planned["kms_data_key_reuse_period_seconds"] is UNKNOWN  # optional + computed, unset: decided later
    assert planned["tags"] is None  # optional, not computed: stays as configured


def test_computed_values_inside_nested_blocks_are_unknown_too(aws):
    vpc = {"subnet_ids": ["s"], "security_group_ids": ["g"], "vpc_id": None, "ipv6_allowed_for_dual_stack": None}
    config = _config(aws, "aws_lambda_function", function_name="f", role="r", vpc_config=[vpc])
    planned = aws.plan("aws_lambda_function", None, config, config)
    assert planned["vpc_config"][0]["vpc_id"] is UNKNOWN
    assert planned["vpc_config"][0]["subnet_ids"] == ["s"]


def test_an_update_keeps_the_prior_computed_values_and_a_delete_plans_null(aws):
    config = _config(aws, "aws_sqs_queue", name="q")
    prior = {**config, "arn": "arn:aws:sqs:eu-west-1:1:q", "id": "https://q", "url": "https://q"}
    planned = aws.plan("aws_sqs_queue", prior, config, config)
    assert planned["arn"] == "arn:aws:sqs:eu-west-1:1:q"
    assert aws.plan("aws_sqs_queue", prior, None, None) is None


def test_a_value_for_a_computed_only_attribute_is_refused_with_the_sdks_message(aws):
    config = _config(aws, "aws_lambda_function", function_name="f", role="r", arn="x")
    (problem,) = aws.validate("aws_lambda_function", config)
    assert problem[0] == "Value for unconfigurable attribute"
    assert 'Can\'t configure a value for "arn"' in problem[1]
    assert problem[2] == ["arn"]
    assert aws.validate("aws_lambda_function", _config(aws, "aws_lambda_function", function_name="f", role="r")) == []


def test_the_policy_document_is_rendered_as_the_provider_renders_it(aws):
    statement = {"sid": "Logs", "effect": None, "actions": ["logs:PutLogEvents", "logs:CreateLogStream"],
                 "resources": ["arn:aws:logs:*"], "not_actions": None, "not_resources": None,
                 "principals": [{"type": "Service", "identifiers": ["lambda.amazonaws.com"]}],
                 "not_principals": [], "condition": []}
    config = _config(aws, "aws_iam_policy_document", data=True, statement=[statement])
    state = aws.read_data("aws_iam_policy_document", config)
    assert json.loads(state["json"]) == {"Version": "2012-10-17", "Statement": [{
        "Sid": "Logs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": "arn:aws:logs:*", "Principal": {"Service": "lambda.amazonaws.com"}}]}


def test_other_data_sources_answer_known_placeholders_for_what_no_account_can_tell(aws):
    aws.configure({"region": "af-south-1"})
    state = aws.read_data("aws_dynamodb_table", _config(aws, "aws_dynamodb_table", data=True, name="campaigns-dev"))
    assert state["name"] == "campaigns-dev"
    assert state["arn"] == "arn:aws:standin:af-south-1:000000000000:aws_dynamodb_table/arn"
    assert UNKNOWN not in state.values()


def test_archive_file_writes_the_zip_and_reports_its_hashes(archive, tmp_path):
    out = tmp_path / "build" / "p.zip"
    config = _config(archive, "archive_file", data=True, type="zip", output_path=str(out),
                     source=[{"filename": "h.py", "content": "x = 1\n"}])
    state = archive.read_data("archive_file", config)
    data = out.read_bytes()
    assert state["output_base64sha256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert state["output_size"] == len(data)
    with zipfile.ZipFile(out) as zf:
        assert zf.read("h.py") == b"x = 1\n"
    again = archive.read_data("archive_file", config)
    assert again["output_sha256"] == state["output_sha256"]  # the same bytes every time


def test_a_list_block_holding_an_untyped_argument_keeps_ctys_dynamic_wrapping(aws):
    # aws_wafv2_web_acl.rule holds the untyped `statement`: Terraform sends the block list as [type, value]
    rule = {"name": "r", "priority": 1, "statement": None, "action": [], "captcha_config": [],
            "challenge_config": [], "override_action": [], "rule_label": [], "visibility_config": []}
    config = _config(aws, "aws_wafv2_web_acl", name="acl", scope="REGIONAL", rule=[b'["tuple",[]]', [rule]])
    planned = aws.plan("aws_wafv2_web_acl", None, config, config)
    assert planned["rule"][0] == b'["tuple",[]]'
    assert planned["rule"][1][0]["name"] == "r"
    assert planned["arn"] is UNKNOWN
