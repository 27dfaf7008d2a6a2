"""The plan review on plan JSON in Terraform's documented format (AWS resources), without a binary."""

from __future__ import annotations

import json

import pytest

from promoter.engine.infra import check_version, classify, review_plan
from promoter.errors import ConfigurationError, RefusedError
from promoter.plan import load_plan

PLAN = load_plan()
PROTECTED = PLAN.terraform.protected_resource_types


def test_counts_every_action_and_blocks_stateful_deletes_and_replaces(plan_json):
    # GIVEN a plan that replaces a DynamoDB table, deletes a bucket and updates the function
    review = review_plan(plan_json("aws_destructive.json"), PROTECTED, [])

    # THEN every action is counted
    assert review.counts == {
        "create": 1, "update": 2, "delete": 1, "replace": 2, "read": 1, "no-op": 1, "forget": 0,
    }
    # AND the table replace and the bucket delete block, with Terraform's reasons and paths
    blockers = {c.address: c for c in review.blockers}
    assert set(blockers) == {"aws_dynamodb_table.legacy", "aws_s3_bucket.exports"}
    table = blockers["aws_dynamodb_table.legacy"]
    assert table.action == "replace"
    assert table.actions == ("delete", "create")
    assert table.action_reason == "replace_because_cannot_update"
    assert table.replace_paths == (("hash_key",),)
    assert blockers["aws_s3_bucket.exports"].action_reason == "delete_because_no_resource_config"
    assert review.blocked
    # AND the create-before-destroy replace of an unprotected policy is listed but does not block
    policy = next(c for c in review.changes if c.address == "aws_iam_role_policy.lambda")
    assert (policy.action, policy.blocking, policy.protected) == ("replace", False, False)
    # AND updates (including one to a protected log group) are not listed as destructive
    assert "aws_lambda_function.campaigns" not in {c.address for c in review.changes}
    assert "aws_cloudwatch_log_group.lambda" not in {c.address for c in review.changes}
    assert review.summary()["destructive"] == [
        "replace aws_dynamodb_table.legacy", "delete aws_s3_bucket.exports", "replace aws_iam_role_policy.lambda",
    ]


def test_a_data_source_of_a_protected_type_is_only_read(plan_json):
    review = review_plan(plan_json("aws_destructive.json"), PROTECTED, [])
    assert "data.aws_s3_bucket.templates" not in {c.address for c in review.changes}


def test_without_protection_nothing_blocks(plan_json):
    review = review_plan(plan_json("aws_destructive.json"), [], [])
    assert not review.blocked
    assert len(review.changes) == 3


def test_forget_is_counted_and_listed_but_does_not_block(plan_json):
    review = review_plan(plan_json("aws_forget.json"), PROTECTED, [])
    assert review.counts["forget"] == 1
    assert review.counts["update"] == 1
    (forget,) = review.changes
    assert (forget.address, forget.action, forget.protected, forget.blocking) == (
        "aws_dynamodb_table.campaigns", "forget", True, False,
    )
    assert not review.blocked


def test_unknown_format_major_is_refused(plan_json):
    with pytest.raises(RefusedError, match=r"format_version 2\.0 is not supported"):
        review_plan(plan_json("format_v2.json"), PROTECTED, [])


@pytest.mark.parametrize("version", ["0.1", "0.2", "1.0", "1.2"])
def test_known_format_majors_are_read(plan_json, version):
    doc = plan_json("aws_destructive.json")
    doc["format_version"] = version
    assert review_plan(doc, PROTECTED, []).format_version == version


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"terraform_version": "1.5.7", "resource_changes": []}, "no readable format_version"),
        ({"format_version": "1.2", "values": {}}, "not a saved plan"),
        ({"format_version": "1.2", "planned_values": {}, "errored": True}, "errored"),
    ],
)
def test_documents_that_are_not_usable_plans_are_refused(doc, message):
    with pytest.raises(RefusedError, match=message):
        review_plan(doc)


def test_protected_addresses_cover_instances_and_modules():
    def change(address, actions):
        return {"address": address, "mode": "managed", "type": "null_resource", "change": {"actions": actions}}

    doc = {
        "format_version": "1.2",
        "resource_changes": [
            change('null_resource.keep["a"]', ["delete"]),
            change("module.db.null_resource.x[0]", ["delete", "create"]),
            change("null_resource.keeper", ["delete"]),  # a different resource sharing a prefix
        ],
    }
    review = review_plan(doc, [], ["null_resource.keep", "module.db"])
    assert [c.address for c in review.blockers] == ['null_resource.keep["a"]', "module.db.null_resource.x[0]"]


def test_an_empty_plan_has_no_changes():
    review = review_plan({"format_version": "0.2", "planned_values": {"root_module": {}}})
    assert not review.has_changes
    assert not review.blocked
    assert sum(review.counts.values()) == 0


def test_unknown_action_combination_with_delete_is_destructive():
    doc = {"format_version": "1.2", "resource_changes": [
        {"address": "aws_kms_key.k", "mode": "managed", "type": "aws_kms_key",
         "change": {"actions": ["delete", "forget"]}}
    ]}
    review = review_plan(doc, PROTECTED, [])
    assert review.blocked
    assert review.warnings


@pytest.mark.parametrize(
    "actions, label",
    [(["create"], "create"), (["delete", "create"], "replace"), (["create", "delete"], "replace"),
     (["forget"], "forget"), (["no-op"], "no-op"), (["read"], "read")],
)
def test_classify(actions, label):
    assert classify(actions) == label


def test_version_check_names_the_version_needed():
    check_version("1.0.3", "1.0.0")
    check_version("1.6.0-beta1", "1.6.0")
    needed = r"terraform 0\.14\.11 is too old: the plan needs terraform >= 1\.0\.0"
    with pytest.raises(ConfigurationError, match=needed):
        check_version("0.14.11", "1.0.0")


# -- the CLI ------------------------------------------------------------------------------------------------------
def test_cli_review_blocks_with_exit_1_and_lists_the_destructive_changes(cli, tmp_path, plan_json):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan_json("aws_destructive.json")))

    result = cli("infra", "review", "--plan-json", str(path))

    assert result.exit_code == 1, result.output
    assert "aws_dynamodb_table.legacy" in result.stdout
    assert "replace_because_cannot_update" in result.stdout
    assert "hash_key" in result.stdout
    assert "BLOCKED" in result.stdout
    assert "would destroy protected resources" in result.stderr


def test_cli_review_allow_destroy_passes_and_json_is_one_document(cli, tmp_path, plan_json):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan_json("aws_destructive.json")))

    result = cli("infra", "review", "--plan-json", str(path), "--allow-destroy", "--json")

    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["blocked"] is True
    assert doc["allow_destroy"] is True
    assert doc["counts"]["replace"] == 2
    assert sorted(doc["blockers"]) == ["aws_dynamodb_table.legacy", "aws_s3_bucket.exports"]


def test_cli_review_refuses_an_unknown_format(cli, tmp_path, plan_json):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan_json("format_v2.json")))
    result = cli("infra", "review", "--plan-json", str(path))
    assert result.exit_code == 1
    assert "format_version 2.0" in result.stderr


def test_cli_review_needs_exactly_one_input(cli):
    result = cli("infra", "review")
    assert result.exit_code == 2
    assert "exactly one of --plan-file or --plan-json" in result.stderr


@pytest.mark.parametrize(
    "entry",
    [
        {"address": "aws_s3_bucket.exports", "type": "aws_s3_bucket"},
        {"address": "aws_s3_bucket.exports", "type": "aws_s3_bucket", "change": None},
        {"address": "aws_s3_bucket.exports", "type": "aws_s3_bucket", "change": {"actions": []}},
        {"address": "aws_s3_bucket.exports", "type": "aws_s3_bucket", "change": {"actions": "delete"}},
        "aws_s3_bucket.exports",
    ],
)
def test_a_resource_change_without_readable_actions_is_refused_not_passed(entry):
    # GIVEN a plan JSON whose resource change has no readable change.actions (edited, truncated)
    document = {"format_version": "1.1", "resource_changes": [entry]}

    # THEN the review refuses it instead of counting it as a no-op
    with pytest.raises(RefusedError, match=r"no readable change\.actions"):
        review_plan(document, PROTECTED, [])


def test_cli_review_with_allow_destroy_says_allowed_not_blocked(cli, tmp_path, plan_json):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan_json("aws_destructive.json")))

    result = cli("infra", "review", "--plan-json", str(path), "--allow-destroy")

    assert result.exit_code == 0, result.output
    assert "ALLOWED by --allow-destroy: 2 protected resource(s)" in result.stdout
    assert "BLOCKED:" not in result.stdout
