"""``promoter approve``: manual gates and checks of the plan recorded in the ledger."""

from __future__ import annotations

import json
import os

import pytest

from promoter.engine.ledger import Ledger


def approvals(env: str) -> list[dict]:
    return Ledger(os.environ["PROMOTER_HOME"]).records(env, kind="approval")


def test_sit_signoff_is_recorded_for_prod(cli):
    missing = cli("approve", "--env", "prod", "--gate", "sit-signoff", "--approver", "Tech Lead A")
    assert missing.exit_code == 2 and "approves one release for prod: --release TAG" in missing.stderr
    result = cli("approve", "--env", "prod", "--gate", "sit-signoff", "--approver", "Tech Lead A",
                 "--release", "v1.1.0")

    assert result.exit_code == 0, result.stderr
    assert "sit-signoff" in result.stdout and "Tech Lead A" in result.stdout
    (record,) = approvals("prod")
    assert (record["gate"], record["approver"], record["kind"], record["ref"]) == (
        "sit-signoff", "Tech Lead A", "approval", None,
    )
    assert record["title"] == "SIT sign-off (Gate 4)" and record["release"] == "v1.1.0"


def test_change_request_needs_its_reference(cli):
    missing = cli("approve", "--env", "prod", "--gate", "change-request", "--approver", "PO", "--release", "v1.1.0")
    assert missing.exit_code == 2
    assert "--ref CR-NUMBER" in missing.stderr
    assert approvals("prod") == []

    given = cli("approve", "--env", "prod", "--gate", "change-request", "--approver", "PO", "--ref", "CR-123",
                "--release", "v1.1.0", "--json")
    assert given.exit_code == 0, given.stderr
    assert json.loads(given.stdout)["ref"] == "CR-123"
    assert [r["ref"] for r in approvals("prod")] == ["CR-123"]


def test_manual_checks_are_gates_for_their_environments(cli):
    assert cli("approve", "--env", "sit", "--gate", "changelog", "--approver", "dev1").exit_code == 0
    assert [r["gate"] for r in approvals("sit")] == ["changelog"]

    wrong_env = cli("approve", "--env", "dev", "--gate", "changelog", "--approver", "dev1")
    assert wrong_env.exit_code == 2
    assert "applies to sit, prod, not dev" in wrong_env.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--env", "prod", "--gate", "no-such-gate", "--approver", "x"], "unknown gate 'no-such-gate'"),
        (["--env", "sit", "--gate", "sit-signoff", "--approver", "x"], "recorded against prod, not sit"),
        (["--env", "prod", "--gate", "terraform-approval", "--approver", "x"], "promoter infra apply"),
        (["--env", "prod", "--gate", "sit-signoff", "--approver", "  "], "--approver NAME"),
        (["--env", "qa", "--gate", "sit-signoff", "--approver", "x"], "unknown environment 'qa'"),
        (["--env", "prod", "--approver", "x"], "--gate is required; the plan defines: sit-signoff"),
    ],
)
def test_refusals_name_the_problem(cli, args, message):
    result = cli("approve", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert approvals("prod") == [] and approvals("sit") == []
