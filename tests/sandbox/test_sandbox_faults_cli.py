"""``promoter sandbox fault``: rules added through the command line hit the calls they name, then end."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from typer.testing import CliRunner

from promoter.cli.app import app

pytestmark = pytest.mark.sandbox


def test_fault_add_list_clear_through_the_cli(sandbox, sandbox_env, plan_path):
    from promoter.plan.loader import load_plan

    names = load_plan(plan_path).names("sit")
    runner = CliRunner()
    env = {"COLUMNS": "120", "NO_COLOR": "1", "PROMOTER_SANDBOX": str(sandbox.state_dir)}
    once = Config(retries={"mode": "standard", "total_max_attempts": 1})
    lam = boto3.client("lambda", config=once)
    sts = boto3.client("sts", config=once)
    try:
        added = runner.invoke(app, ["sandbox", "fault", "add", "--service", "lambda", "--operation", "GetAlias",
                                    "--kind", "throttle", "--count", "1", "--json"], env=env)
        assert added.exit_code == 0, added.output
        assert json.loads(added.stdout)["kind"] == "throttle"
        added = runner.invoke(app, ["sandbox", "fault", "add", "--service", "sts", "--kind", "error", "--status",
                                    "503", "--seconds", "60"], env=env)
        assert added.exit_code == 0 and "error on sts *" in added.stdout
        # the named calls fail as AWS fails them; others are untouched
        with pytest.raises(ClientError) as throttled:
            lam.get_alias(FunctionName=names.function, Name=names.alias)
        assert throttled.value.response["Error"]["Code"] == "TooManyRequestsException"
        assert lam.get_alias(FunctionName=names.function, Name=names.alias)["FunctionVersion"] == "1"  # spent
        with pytest.raises(ClientError) as failed:
            sts.get_caller_identity()
        assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        listed = runner.invoke(app, ["sandbox", "fault", "list", "--json"], env=env)
        rules = {r["service"]: r for r in json.loads(listed.stdout)}
        assert rules["lambda"]["hits"] == 1 and rules["lambda"]["active"] is False
        assert rules["sts"]["hits"] == 1 and rules["sts"]["active"] is True
        refused = runner.invoke(app, ["sandbox", "fault", "add", "--service", "sts", "--kind", "error",
                                      "--status", "404"], env=env)
        assert refused.exit_code == 2 and "5xx" in refused.output
    finally:
        cleared = runner.invoke(app, ["sandbox", "fault", "clear"], env=env)
    assert cleared.exit_code == 0 and "cleared 2 fault(s)" in cleared.stdout
    assert sts.get_caller_identity()["Account"] == sandbox.state["account_id"]
