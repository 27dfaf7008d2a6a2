"""Environments the plan marks `confirm` ask before acting; without a terminal and --yes they refuse."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from promoter.cli.app import app
from promoter.plan import load_plan


def test_the_plan_marks_prod_and_only_prod_for_confirmation():
    plan = load_plan()
    assert {name for name, spec in plan.environments.items() if spec.confirm} == {"prod"}


@pytest.mark.parametrize(
    "args",
    [
        ["deploy", "--env", "prod", "--release", "v1.1.0"],
        ["rollback", "--env", "prod", "--to", "v1.0.0"],
        ["abort", "--env", "prod"],
    ],
)
def test_prod_without_a_terminal_or_yes_is_refused_before_any_call(args, monkeypatch):
    # no AWS endpoint is reachable: a refusal that came after an AWS call would say so instead
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "needs confirmation and there is no terminal to ask" in result.stderr
    assert "--yes" in result.stderr
