"""`promoter rollback --to` past a recorded terraform change: refused in CI without --yes, done with it."""

from __future__ import annotations

import json

from promoter.engine.ledger import Ledger


def test_rollback_past_a_terraform_change_needs_yes_without_a_terminal(runner, cli, account, tmp_path):
    account("sit")
    ledger = Ledger(tmp_path / "home")
    ledger.append("sit", "infra-apply", sha256="p" * 64, outcome="applied", counts={"update": 2})
    args = ["rollback", "--env", "sit", "--to", "1", "--ledger-dir", str(tmp_path / "home"), "--json"]

    refused = runner.invoke(cli, args)
    assert refused.exit_code == 1, refused.output
    doc = json.loads(refused.stdout)
    assert "older than changes made since in sit" in doc["message"] and "pppppppppppp" in doc["message"]
    assert ledger.records("sit", kind="run-start") == []  # nothing started, nothing moved

    done = runner.invoke(cli, [*args, "--yes"])
    assert done.exit_code == 0, done.output
    start = ledger.records("sit", kind="run-start")[-1]
    assert start["kind_of_run"] == "rollback" and start["changes_since_target"][0].startswith("terraform plan pppp")
