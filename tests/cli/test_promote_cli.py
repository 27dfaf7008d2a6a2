"""`promoter promote` through the real CLI: pause with exit 5 and the approve command, approvals bound to the
artifact's sha256, four eyes from the caller identity, --resume, a no-op re-run, --dry-run, PROD's refusal."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def zip_artifact(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "campaigns_lambda-v1.1.0-lambda.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("campaigns_lambda/__init__.py", "")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(autouse=True)
def _sign_off_plan(runner, monkeypatch, signoff_plan):
    """SIT validation as recorded sign-offs: these tests are about pausing, approving and resuming."""
    monkeypatch.setenv("PROMOTER_PLAN", str(signoff_plan))


def _promote(runner, cli, ledger, artifact, *extra):
    return runner.invoke(cli, ["promote", "--env", "sit", "--phase", "sit-validation", "--artifact", str(artifact),
                               "--release", "v1.1.0", "--allow-untagged", "--repo", str(ROOT),
                               "--ledger-dir", str(ledger), "--json", *extra])


def _approve(runner, cli, ledger, env, gate, sha, *extra):
    result = runner.invoke(cli, ["approve", "--env", env, "--gate", gate, "--approver", "Thandi", "--release",
                                 "v1.1.0", "--sha256", sha, "--ledger-dir", str(ledger), "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_promote_pauses_for_each_sign_off_and_resumes_to_the_end(runner, cli, account, tmp_path, zip_artifact,
                                                                  monkeypatch):
    account("sit", seed=False)
    artifact, sha = zip_artifact
    ledger = tmp_path / "home"

    result = _promote(runner, cli, ledger, artifact)
    assert result.exit_code == 5, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["error"] == "WaitingForApproval"
    waiting = doc["pipeline"]["waiting_for"]
    assert waiting["step"] == "sit-validation/integration"
    assert waiting["command"] == (f"promoter approve --env sit --gate sit-integration --approver NAME --release "
                                  f"v1.1.0 --sha256 {sha}")

    # an approval of another artifact does not count
    _approve(runner, cli, ledger, "sit", "sit-integration", "e" * 64)
    assert _promote(runner, cli, ledger, artifact, "--resume").exit_code == 5
    _approve(runner, cli, ledger, "sit", "sit-integration", sha)
    _approve(runner, cli, ledger, "sit", "sit-load-test", sha, "--ref", "LOAD-1")
    _approve(runner, cli, ledger, "sit", "sit-security-scan", sha, "--ref", "SEC-1")
    # the sign-off is four eyes: the identity that started the promotion cannot give it
    same = _approve(runner, cli, ledger, "prod", "sit-signoff", sha)
    result = _promote(runner, cli, ledger, artifact, "--resume")
    assert result.exit_code == 5
    assert "four eyes" in json.loads(result.stdout)["message"]
    assert same["identity"] == json.loads(result.stdout)["pipeline"]["started_by"]

    key = boto3.client("iam").create_user(UserName="tech-lead") and boto3.client("iam").create_access_key(
        UserName="tech-lead")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    other = _approve(runner, cli, ledger, "prod", "sit-signoff", sha)
    assert other["identity"].endswith(":user/tech-lead")

    result = _promote(runner, cli, ledger, artifact, "--resume")
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert run["outcome"] == "succeeded" and run["resumed"]
    assert {s["step_key"]: s["status"] for s in run["steps"]}["sit-validation/signoff"] == "passed"

    again = _promote(runner, cli, ledger, artifact)
    assert again.exit_code == 0 and json.loads(again.stdout)["outcome"] == "noop"


def test_dry_run_lists_what_would_run_or_wait(runner, cli, account, tmp_path, zip_artifact):
    account("sit", seed=False)
    artifact, _sha = zip_artifact
    result = _promote(runner, cli, tmp_path / "home", artifact, "--dry-run")
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert run["outcome"] == "dry-run" and {s["would"] for s in run["steps"]} == {"wait"}
    assert not (tmp_path / "home" / "ledger" / "sit.jsonl").exists()


def test_prod_refuses_an_artifact_sit_never_proved(runner, cli, account, tmp_path, zip_artifact):
    account("prod", seed=False)
    artifact, sha = zip_artifact
    result = runner.invoke(cli, ["promote", "--env", "prod", "--artifact", str(artifact), "--release", "v1.1.0",
                                 "--allow-untagged", "--repo", str(ROOT), "--ledger-dir", str(tmp_path / "home"),
                                 "--yes", "--json"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["error"] == "RefusedError" and sha[:12] in doc["message"]
    for missing in ("no canary deploy", "no passed smoke run", "sit-validation steps not passed"):
        assert missing in doc["message"]
    assert not (tmp_path / "home" / "ledger" / "prod.jsonl").exists()  # nothing changed, nothing recorded


def test_without_a_terminal_progress_is_plain_lines(runner, cli, account, tmp_path, zip_artifact):
    account("sit", seed=False)
    artifact, sha = zip_artifact
    result = runner.invoke(cli, ["promote", "--env", "sit", "--phase", "sit-validation", "--artifact", str(artifact),
                                 "--release", "v1.1.0", "--allow-untagged", "--repo", str(ROOT),
                                 "--ledger-dir", str(tmp_path / "home")])
    assert result.exit_code == 5
    err = result.stderr
    assert ">> sit-validation/integration: " in err and "sit-validation/integration: WAITING" in err
    assert f"record it with: promoter approve --env sit --gate sit-integration --approver NAME --release v1.1.0 " \
           f"--sha256 {sha}" in err
    assert "\x1b[" not in err  # no terminal control sequences in a log
