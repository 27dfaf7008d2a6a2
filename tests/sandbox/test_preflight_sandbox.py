"""After `sandbox up`, `promoter preflight` passes against it: only the git checks may fail."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from promoter.cli.app import app

pytestmark = pytest.mark.sandbox


def test_preflight_passes_against_the_sandbox_except_git(sandbox, sandbox_env, plan_path, tmp_path):
    # run outside any git checkout, so the code checks fail for a known reason and nothing else may
    result = CliRunner().invoke(app, ["preflight", "--env", "sit", "--plan", str(plan_path), "--repo",
                                      str(tmp_path), "--json"])
    report = json.loads(result.stdout)
    failed = {r["id"] for r in report["results"] if r["status"] == "FAIL"}
    assert failed <= {"code.branch", "code.clean", "code.tag"}, report
    passed = {r["id"] for r in report["results"] if r["status"] == "PASS"}
    for check in ("aws.account", "acm.certificate", "dns.zone", "apigw.domain", "dynamodb.table", "dynamodb.pitr",
                  "s3.bucket", "iam.role", "lambda.function", "lambda.alias", "logs.group", "cloudwatch.alarms",
                  "sqs.dlq"):
        assert check in passed, (check, report)
    assert report["account_id"] == "815856636111"

    skipping_git = CliRunner().invoke(app, ["preflight", "--env", "sit", "--plan", str(plan_path), "--skip", "code"])
    assert skipping_git.exit_code == 0, skipping_git.output
