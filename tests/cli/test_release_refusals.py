"""Refusals through the command line are recorded in the ledger, a plan that does not load included."""

from __future__ import annotations

from promoter.cli.app import app
from promoter.engine.ledger import Ledger


def test_a_deploy_refused_for_a_broken_plan_is_recorded(runner, broken_plan, tmp_path):
    plan = broken_plan("  error_rate_pct: 5.0 ", "  error_rate_pct: 5.0\n  error_rate_pct: 100 ")
    home = tmp_path / "home"
    result = runner.invoke(app, ["deploy", "--env", "sit", "--plan", str(plan), "--ledger-dir", str(home), "--yes"])
    assert result.exit_code == 1, result.output
    assert "duplicate key" in result.stderr
    (refusal,) = Ledger(home).records("sit")
    assert refusal["kind"] == "refusal" and refusal["command"] == "deploy" and refusal["error"] == "PlanError"
    assert "duplicate key" in refusal["reason"]
    result = runner.invoke(app, ["history", "--env", "sit", "--ledger-dir", str(home)])
    assert result.exit_code == 0 and "refused" in result.stdout and "the plan did not load" in result.stdout
