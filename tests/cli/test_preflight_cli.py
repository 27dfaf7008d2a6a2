"""``promoter preflight`` through the CLI against moto in-process: exit codes, the table, the JSON report."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import boto3
import pytest

PLAN = Path(__file__).resolve().parents[2] / "plans" / "PROM-CAMP-001.yaml"


@pytest.fixture
def repo(tmp_path):
    path = tmp_path / "service"
    path.mkdir()

    def git(*args):
        subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("config", "user.email", "ci@example.com")
    git("config", "user.name", "CI")
    (path / "README").write_text("campaigns\n")
    (path / "plans").mkdir()
    shutil.copy(PLAN, path / "plans" / PLAN.name)  # a checkout of the service carries its plan
    git("add", ".")
    git("commit", "-q", "-m", "release")
    git("tag", "v1.2.0")
    return path


@pytest.fixture
def ledger_dir(tmp_path):
    return tmp_path / "ledger"


def test_missing_env_refuses_listing_the_environments(runner, cli):
    result = runner.invoke(cli, ["preflight"])
    assert result.exit_code == 2
    assert "no environment given; pass --env or set PROMOTER_ENV to one of: dev, prod, sit" in result.stderr


def test_unknown_check_name_is_a_usage_error(runner, cli):
    result = runner.invoke(cli, ["preflight", "--env", "sit", "--only", "dynamo"])
    assert result.exit_code == 2
    assert "unknown check or group: dynamo" in result.stderr


def test_ready_environment_exits_0_with_a_table(runner, cli, account, repo, ledger_dir):
    # GIVEN a correct sit account and a clean tagged checkout
    account("sit")
    # WHEN preflight runs
    result = runner.invoke(cli, ["preflight", "--env", "sit", "--repo", str(repo), "--ledger-dir", str(ledger_dir)])
    # THEN every check shows in the table, manual items are listed, and the run exits 0
    assert result.exit_code == 0, result.output
    out = result.stdout
    for check_id in ("aws.account", "acm.certificate", "sqs.dlq", "code.tag", "manual.changelog"):
        assert check_id in out
    assert "FAIL" not in out
    assert "MANUAL" in out and "READY" in out
    assert "v1.2.0" in out


def test_json_report_shape_and_exit_1_on_a_failed_blocker(runner, cli, account, ledger_dir):
    account("prod")
    boto3.client("dynamodb", region_name="af-south-1").delete_table(TableName="campaigns-prod")
    result = runner.invoke(cli, ["preflight", "--env", "prod", "--skip", "code", "--json",
                                 "--ledger-dir", str(ledger_dir)])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["plan"] == "PROM-CAMP-001"
    assert (report["env"], report["account_id"], report["region"]) == ("prod", "093646564004", "af-south-1")
    assert "dynamodb.table" in report["blockers"]
    by_id = {r["id"]: r for r in report["results"]}
    assert not [i for i in by_id if i.startswith("code.")]
    assert by_id["dynamodb.table"]["status"] == "FAIL" and by_id["dynamodb.table"]["remedy"]
    assert by_id["dr.table"]["status"] == "PASS"
    assert set(by_id["aws.account"]) == {"id", "title", "group", "severity", "status", "evidence", "remedy",
                                         "duration_ms", "record"}
    assert sum(report["counts"].values()) == len(report["results"])


def test_wrong_account_exits_1(runner, cli, plan, account):
    account("prod", account_id=plan.environment("dev").account_id)
    result = runner.invoke(cli, ["preflight", "--env", "prod", "--only", "aws", "--json"])
    assert result.exit_code == 1
    by_id = {r["id"]: r for r in json.loads(result.stdout)["results"]}
    assert by_id["aws.account"]["status"] == "FAIL"
    assert "536580886816" in by_id["aws.account"]["evidence"]


def test_unreachable_endpoint_is_a_failed_check_not_a_traceback(runner, cli, aws_credentials, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    result = runner.invoke(cli, ["preflight", "--env", "sit", "--only", "aws.account", "--json"])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    [check] = json.loads(result.stdout)["results"]
    assert check["status"] == "FAIL"
    assert "endpoint unreachable" in check["evidence"]


def test_recorded_approval_is_shown(runner, cli, ledger_dir, aws_credentials):
    from promoter.engine.ledger import Ledger

    Ledger(ledger_dir).append("prod", "approval", gate="sit-signoff", approver="Thandi", ref="GATE-4")
    result = runner.invoke(cli, ["preflight", "--env", "prod", "--only", "manual", "--json",
                                 "--ledger-dir", str(ledger_dir)])
    assert result.exit_code == 0  # manual items never fail the run
    by_id = {r["id"]: r for r in json.loads(result.stdout)["results"]}
    assert by_id["manual.sit-signoff"]["status"] == "MANUAL"
    assert by_id["manual.sit-signoff"]["evidence"].startswith("recorded: Thandi at ")
    assert by_id["manual.sit-signoff"]["record"]["ref"] == "GATE-4"
    assert by_id["manual.change-request"]["evidence"] == "not recorded"
    assert "--gate change-request" in by_id["manual.change-request"]["remedy"]


def test_release_option_and_dirty_repo(runner, cli, repo, aws_credentials):
    ok = runner.invoke(cli, ["preflight", "--env", "sit", "--only", "code", "--repo", str(repo),
                             "--release", "v1.2.0"])
    assert ok.exit_code == 0, ok.output
    (repo / "README").write_text("changed\n")
    dirty = runner.invoke(cli, ["preflight", "--env", "sit", "--only", "code", "--repo", str(repo),
                                "--release", "v9.9.9", "--json"])
    assert dirty.exit_code == 1
    by_id = {r["id"]: r for r in json.loads(dirty.stdout)["results"]}
    assert by_id["code.clean"]["status"] == "FAIL"
    assert by_id["code.tag"]["status"] == "FAIL" and "v9.9.9" in by_id["code.tag"]["evidence"]
    assert by_id["code.branch"]["status"] == "PASS"
