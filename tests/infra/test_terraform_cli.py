"""plan / review / approve / apply against a real terraform binary and the null provider from an offline mirror."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from promoter.adapters.terraform import TerraformCli
from promoter.engine.infra import (
    InfraSettings,
    apply_plan,
    approve_plan,
    plan_infra,
    sha256_file,
)
from promoter.engine.ledger import Ledger
from promoter.errors import ConfigurationError, RefusedError
from promoter.plan import load_plan

pytestmark = pytest.mark.terraform


def ledger() -> Ledger:
    import os

    return Ledger(os.environ["PROMOTER_HOME"])


def state_list(terraform_bin, workdir) -> list[str]:
    proc = subprocess.run(
        [terraform_bin, "state", "list", "-no-color"], cwd=workdir, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0 and "No state file was found" in proc.stderr:
        return []
    assert proc.returncode == 0, proc.stderr
    return sorted(proc.stdout.split())


def settings_for(workdir, env="dev", **changes) -> InfraSettings:
    base = InfraSettings.from_plan(load_plan(), env, directory=workdir)
    return InfraSettings(**{**base.__dict__, **changes})


def make_change(workdir, *, release="r2", drop_extra=True):
    """Change the rotating resource's trigger (a replace) and remove null_resource.extra (a delete)."""
    (workdir / "env" / "dev.tfvars").write_text(f'env     = "dev"\nrelease = "{release}"\n')
    if drop_extra:
        main = workdir / "main.tf"
        main.write_text(re.sub(r'resource "null_resource" "extra" \{.*?\n\}\n', "", main.read_text(), flags=re.S))


# -- plan and workspaces ---------------------------------------------------------------------------------------
def test_missing_workspace_is_refused_with_the_existing_ones(cli, workdir):
    result = cli("infra", "plan", "--env", "dev", "--dir", str(workdir))

    assert result.exit_code == 1
    assert "terraform workspace 'dev' does not exist; existing workspaces: default" in result.stderr
    assert "--create-workspace" in result.stderr
    assert not (workdir / "dev.tfplan").exists()
    assert ledger().records("dev", kind="infra-plan") == []


def test_plan_approve_apply_through_the_cli(cli, workdir, terraform_bin):
    # GIVEN a new environment
    # WHEN it is planned with --create-workspace
    result = cli("infra", "plan", "--env", "dev", "--dir", str(workdir), "--create-workspace", "--json")

    # THEN a saved plan of three creates is recorded with its hash and workspace
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["workspace"] == "dev" and doc["workspace_created"] is True
    assert doc["review"]["counts"]["create"] == 3
    assert doc["review"]["blocked"] is False
    plan_file = workdir / "dev.tfplan"
    assert doc["sha256"] == sha256_file(plan_file)
    (record,) = ledger().records("dev", kind="infra-plan")
    assert (record["sha256"], record["workspace"]) == (doc["sha256"], "dev")
    assert record["review"]["counts"]["create"] == 3
    # AND terraform's output streamed to stderr, not stdout
    assert "Plan: 3 to add, 0 to change, 0 to destroy." in result.stderr

    # WHEN it is applied with a CI approval
    result = cli("infra", "apply", "--env", "dev", "--dir", str(workdir), "--approve", "--approver", "alice")

    # THEN the approval carries the plan's sha256 and the resources exist
    assert result.exit_code == 0, result.stderr
    (approval,) = ledger().records("dev", kind="approval")
    assert approval["gate"] == "terraform-approval"
    assert approval["approver"] == "alice"
    assert approval["sha256"] == doc["sha256"]
    applied = [r for r in ledger().records("dev", kind="infra-apply") if r["outcome"] == "applied"]
    assert [r["sha256"] for r in applied] == [doc["sha256"]]
    assert "Apply complete! Resources: 3 added" in result.stderr
    assert state_list(terraform_bin, workdir) == [
        "null_resource.extra", "null_resource.keeper", "null_resource.rotating",
    ]

    # AND the same plan cannot be applied twice
    again = cli("infra", "apply", "--env", "dev", "--dir", str(workdir), "--approve", "--approver", "alice")
    assert again.exit_code == 1
    assert "already applied" in again.stderr

    # AND a second plan sees no changes, in the existing workspace
    result = cli("infra", "plan", "--env", "dev", "--dir", str(workdir), "--json")
    assert result.exit_code == 0, result.stderr
    counts = json.loads(result.stdout)["review"]["counts"]
    assert counts["create"] == counts["delete"] == counts["replace"] == 0
    assert json.loads(result.stdout)["changes"] is False


def test_replace_and_delete_of_a_protected_address_are_blocked_until_allowed(cli, workdir, make_plan_file,
                                                                             terraform_bin):
    plan = make_plan_file(protected_addresses=["null_resource.extra"])
    common = ["--env", "dev", "--dir", str(workdir), "--plan", str(plan)]
    assert cli("infra", "plan", *common, "--create-workspace").exit_code == 0
    assert cli("infra", "apply", *common, "--approve", "--approver", "alice").exit_code == 0

    # GIVEN a trigger changed (replace) and a protected resource removed from the configuration (delete)
    make_change(workdir)
    result = cli("infra", "plan", *common, "--json")
    assert result.exit_code == 0, result.stderr
    review = json.loads(result.stdout)["review"]
    assert review["counts"]["replace"] == 1 and review["counts"]["delete"] == 1
    changes = {c["address"]: c for c in review["changes"]}
    assert changes["null_resource.rotating"]["action"] == "replace"
    assert changes["null_resource.rotating"]["replace_paths"] == [["triggers"]]
    assert changes["null_resource.rotating"]["blocking"] is False
    assert changes["null_resource.extra"]["action"] == "delete"
    assert review["blockers"] == ["null_resource.extra"]

    # WHEN the saved plan is reviewed on its own
    reviewed = cli("infra", "review", "--plan-file", str(workdir / "dev.tfplan"), "--plan", str(plan))
    # THEN it is blocked
    assert reviewed.exit_code == 1
    assert "null_resource.extra" in reviewed.stdout

    # WHEN applied without --allow-destroy THEN refused, and nothing changed
    refused = cli("infra", "apply", *common, "--approve", "--approver", "alice")
    assert refused.exit_code == 1
    assert "would destroy protected resources: delete null_resource.extra" in refused.stderr
    assert "null_resource.extra" in state_list(terraform_bin, workdir)
    assert len(ledger().records("dev", kind="approval")) == 1  # only the first plan's

    # WHEN approved with --allow-destroy THEN applied
    allowed = cli("infra", "apply", *common, "--approve", "--approver", "bob", "--allow-destroy")
    assert allowed.exit_code == 0, allowed.stderr
    assert state_list(terraform_bin, workdir) == ["null_resource.keeper", "null_resource.rotating"]
    last = ledger().records("dev", kind="approval")[-1]
    assert (last["approver"], last["allow_destroy"], last["review"]["blockers"]) == (
        "bob", True, ["null_resource.extra"],
    )


def test_interactive_approval_shows_the_review_and_records_the_answer(cli, workdir):
    common = ["--env", "dev", "--dir", str(workdir)]
    assert cli("infra", "plan", *common, "--create-workspace").exit_code == 0

    declined = cli("infra", "apply", *common, "--approver", "carol", input="n\n")
    assert declined.exit_code == 1
    assert "create" in declined.stderr and "Approve as carol" in declined.stderr
    assert ledger().records("dev", kind="approval") == []
    assert ledger().records("dev", kind="infra-apply") == []

    accepted = cli("infra", "apply", *common, "--approver", "carol", input="y\n")
    assert accepted.exit_code == 0, accepted.stderr
    (approval,) = ledger().records("dev", kind="approval")
    assert approval["approver"] == "carol"
    assert approval["sha256"] == sha256_file(workdir / "dev.tfplan")


# -- what apply refuses -----------------------------------------------------------------------------------------
def test_a_tampered_plan_file_is_refused(cli, workdir, terraform_bin):
    common = ["--env", "dev", "--dir", str(workdir)]
    assert cli("infra", "plan", *common, "--create-workspace").exit_code == 0
    reviewed = sha256_file(workdir / "dev.tfplan")

    # GIVEN the reviewed plan file replaced by another valid plan made outside promoter
    subprocess.run(
        [terraform_bin, "plan", "-input=false", "-no-color", "-var=env=dev", "-var=release=evil",
         f"-out={workdir / 'dev.tfplan'}"],
        cwd=workdir, check=True, capture_output=True,
    )
    tampered = sha256_file(workdir / "dev.tfplan")
    assert tampered != reviewed

    result = cli("infra", "apply", *common, "--approve", "--approver", "alice")

    assert result.exit_code == 1
    assert f"sha256 {tampered}" in result.stderr
    assert reviewed in result.stderr
    assert ledger().records("dev", kind="approval") == []
    assert state_list(terraform_bin, workdir) == []


def test_a_file_changed_after_approval_is_refused(workdir):
    settings = settings_for(workdir)
    runner = TerraformCli(workdir, echo=lambda _line: None)
    plan_infra(settings, runner, ledger(), create_workspace=True)
    approve_plan(settings, runner, ledger(), approver="alice")

    with settings.plan_file.open("ab") as fh:
        fh.write(b"\0")

    with pytest.raises(RefusedError, match="is not a plan that `promoter infra plan` reviewed"):
        apply_plan(settings, runner, ledger())


def test_a_stale_plan_is_refused(workdir):
    settings = settings_for(workdir, max_plan_age_minutes=30)
    runner = TerraformCli(workdir, echo=lambda _line: None)
    made = datetime(2026, 2, 21, 9, 0, tzinfo=UTC)
    plan_infra(settings, runner, ledger(), create_workspace=True, now=lambda: made)
    approve_plan(settings, runner, ledger(), approver="alice", now=lambda: made + timedelta(minutes=5))

    with pytest.raises(RefusedError, match=r"made 31 minutes ago .* at most 30 minutes"):
        apply_plan(settings, runner, ledger(), now=lambda: made + timedelta(minutes=31))
    assert ledger().records("dev", kind="infra-apply") == []

    # within the limit the same plan applies
    apply_plan(settings, runner, ledger(), now=lambda: made + timedelta(minutes=29))


def test_a_plan_made_in_another_workspace_is_refused(cli, workdir, terraform_bin):
    common = ["--env", "dev", "--dir", str(workdir)]
    assert cli("infra", "plan", *common, "--create-workspace").exit_code == 0
    assert cli("infra", "plan", "--env", "sit", "--dir", str(workdir), "--create-workspace").exit_code == 0

    # GIVEN the dev plan, while terraform has the sit workspace selected
    result = cli("infra", "apply", *common, "--approve", "--approver", "alice")

    assert result.exit_code == 1
    assert "made in workspace 'dev', but terraform has 'sit' selected" in result.stderr
    assert state_list(terraform_bin, workdir) == []  # sit state still empty


def test_apply_without_approval_is_refused(workdir):
    settings = settings_for(workdir)
    runner = TerraformCli(workdir, echo=lambda _line: None)
    plan_infra(settings, runner, ledger(), create_workspace=True)

    with pytest.raises(RefusedError, match="has no recorded approval"):
        apply_plan(settings, runner, ledger())


def test_an_approval_without_allow_destroy_does_not_cover_a_blocked_plan(workdir):
    settings = settings_for(workdir, protected_addresses=("null_resource.extra",))
    runner = TerraformCli(workdir, echo=lambda _line: None)
    plan_infra(settings, runner, ledger(), create_workspace=True)
    approve_plan(settings, runner, ledger(), approver="alice")
    apply_plan(settings, runner, ledger())
    make_change(workdir, drop_extra=True)
    outcome = plan_infra(settings, runner, ledger())
    assert outcome.review.blocked
    # an approval recorded directly in the ledger for this hash, without allow_destroy
    ledger().append("dev", "approval", gate="terraform-approval", approver="mallory", sha256=outcome.sha256)

    with pytest.raises(RefusedError, match="would destroy protected resources"):
        apply_plan(settings, runner, ledger())


def test_missing_plan_file_is_refused(cli, workdir):
    result = cli("infra", "apply", "--env", "dev", "--dir", str(workdir), "--approve", "--approver", "a")
    assert result.exit_code == 1
    assert "no saved plan at" in result.stderr
    assert "promoter infra plan --env dev" in result.stderr


# -- terraform itself ----------------------------------------------------------------------------------------------
def test_terraform_older_than_the_plan_needs_is_refused(cli, workdir, make_plan_file):
    plan = make_plan_file(min_version="99.0.0")
    result = cli("infra", "plan", "--env", "dev", "--dir", str(workdir), "--plan", str(plan), "--create-workspace")
    assert result.exit_code == 1
    assert "the plan needs terraform >= 99.0.0" in result.stderr


def test_terraform_missing_is_a_configuration_error(workdir, monkeypatch, tmp_path):
    monkeypatch.setenv("PROMOTER_TERRAFORM", str(tmp_path / "no-such-terraform"))
    with pytest.raises(ConfigurationError, match=r"terraform not found at .*promoter needs terraform >= 1\.0\.0"):
        TerraformCli(workdir, min_version="1.0.0")


def test_output_streams_line_by_line_and_failures_carry_the_tail(workdir):
    lines: list[str] = []
    runner = TerraformCli(workdir, echo=lines.append)
    runner.init(str(workdir / "env" / "dev.backend.hcl"))
    assert any("Terraform has been successfully initialized" in line for line in lines)
    assert all(line.endswith("\n") and line.count("\n") == 1 for line in lines)

    (workdir / "broken.tf").write_text('resource "null_resource" "x" {\n  nonsense = true\n}\n')
    from promoter.errors import TerraformError

    with pytest.raises(TerraformError, match=r"(?s)`terraform plan` failed with exit code 1.*nonsense"):
        runner.plan(str(workdir / "x.tfplan"), str(workdir / "env" / "dev.tfvars"))


def test_no_empty_var_file_is_injected(workdir):
    runner = TerraformCli(workdir, echo=lambda _line: None)
    argv = runner.command("plan", input=False, var_file=None, out="dev.tfplan")
    assert not any(a.startswith("-var-file") for a in argv)
    assert argv[1:] == ["plan", "-input=false", "-out=dev.tfplan", "-no-color"]
