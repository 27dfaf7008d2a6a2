"""``promoter ledger verify`` and ``ledger migrate`` on local stores; the plan's ``state:`` section."""

from __future__ import annotations

import json

import pytest

from promoter.engine.ledger import Ledger


@pytest.fixture
def home(tmp_path):
    ledger = Ledger(tmp_path / "home")
    ledger.append("sit", "run-start", run_id="r1", release="v1.1.0")
    ledger.append("sit", "approval", gate="sit-signoff", approver="ana", release="v1.1.0")
    ledger.append("sit", "run-end", run_id="r1", outcome="succeeded")
    return tmp_path / "home"


def test_verify_passes_an_intact_ledger(runner, cli, home):
    result = runner.invoke(cli, ["ledger", "verify", "--env", "sit", "--ledger-dir", str(home), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["records"] == 3 and data["problems"] == []


def test_verify_exits_1_naming_the_edited_record(runner, cli, home):
    path = home / "ledger" / "sit.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[1].replace('"ana"', '"mallory"'), lines[2]]) + "\n")

    result = runner.invoke(cli, ["ledger", "verify", "--env", "sit", "--ledger-dir", str(home)])
    assert result.exit_code == 1
    assert "line 2" in result.stderr and "edited" in result.stderr


def test_migrate_to_a_directory_is_idempotent(runner, cli, home, tmp_path):
    dest = tmp_path / "shared"
    args = ["ledger", "migrate", "--to", str(dest), "--env", "sit", "--ledger-dir", str(home), "--json"]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["environments"][0]["copied"] == 3
    Ledger(home).append("sit", "approval", gate="change-request", approver="bo", release="v1.1.0")
    second = runner.invoke(cli, args)
    again = json.loads(second.stdout)["environments"][0]
    assert (again["copied"], again["skipped"]) == (1, 3)
    copied = Ledger(dest).records("sit")
    assert [r["kind"] for r in copied] == ["run-start", "approval", "run-end", "approval"]
    assert [r["ts"] for r in copied] == [r["ts"] for r in Ledger(home).records("sit")]
    assert Ledger(dest).verify("sit").ok


def test_state_option_points_a_command_at_another_store(runner, cli, home, tmp_path):
    result = runner.invoke(cli, ["ledger", "verify", "--env", "sit", "--state", str(home), "--json"])
    assert json.loads(result.stdout)["records"] == 3
    empty = runner.invoke(cli, ["ledger", "verify", "--env", "sit", "--state", str(tmp_path / "none"), "--json"])
    assert json.loads(empty.stdout)["records"] == 0


def test_plan_state_section_validates():
    from pydantic import ValidationError

    from promoter.plan.models import State

    state = State(backend="s3", bucket="team-state", environments={"prod": {"backend": "s3", "bucket": "prod-st"}})
    assert state.default.bucket == "team-state" and state.environments["prod"].bucket == "prod-st"
    with pytest.raises(ValidationError, match="needs a bucket"):
        State(backend="s3")


def test_the_plans_state_section_puts_records_in_s3_and_one_environment_elsewhere(runner, cli, tmp_path,
                                                                                    monkeypatch):
    import boto3
    import yaml
    from moto import mock_aws

    from tests.cli.conftest import PLAN_TEXT

    data = yaml.safe_load(PLAN_TEXT)
    data["state"] = {"backend": "s3", "bucket": "team-state", "prefix": "campaigns", "region": "eu-west-1",
                     "environments": {"dev": {"backend": "local", "path": str(tmp_path / "dev-state")}}}
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.delenv("PROMOTER_HOME", raising=False)  # --ledger-dir / PROMOTER_HOME would override the plan
    monkeypatch.chdir(tmp_path)
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-1")
        s3.create_bucket(Bucket="team-state", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        approve = runner.invoke(cli, ["approve", "--env", "prod", "--gate", "sit-signoff", "--approver", "ana",
                                      "--release", "v1.1.0", "--plan", str(plan_file)])
        assert approve.exit_code == 0, approve.output
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="team-state")["Contents"]]
        assert keys == ["campaigns/ledger/prod/000000000001.json"]
        shown = json.loads(runner.invoke(cli, ["ledger", "show", "--env", "prod", "--plan", str(plan_file),
                                               "--json"]).stdout)
        assert shown["store"] == "s3://team-state/campaigns/ledger/prod/"
        assert shown["records"][0]["approver"] == "ana"
        dev = json.loads(runner.invoke(cli, ["ledger", "verify", "--env", "dev", "--plan", str(plan_file),
                                             "--json"]).stdout)
        assert dev["store"] == str(tmp_path / "dev-state" / "ledger" / "dev.jsonl")
    assert not (tmp_path / ".promoter").exists()
