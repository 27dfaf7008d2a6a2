"""`promoter rehearse` end to end: sandbox, preflight, infra, build, canary deploy, smoke, faulty release rolled
back automatically, rollback --to v1.0.0, status, report; and its parts on plain data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from promoter.engine.rehearse import Rehearsal, StepResult, init_failure_reason, rehearsal_plan, write_report
from promoter.plan import load_plan

pytestmark = pytest.mark.e2e


def test_the_whole_promotion_rehearses_offline(tmp_path):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT", "PROMOTER_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "promoter", "rehearse", "--ledger-dir", str(home), "--json"],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout)
    outcomes = {s["name"]: s["outcome"] for s in result["steps"]}
    assert outcomes == {
        "sandbox": "passed", "preflight": "passed", "infra": outcomes["infra"], "build": "passed",
        "approvals": "skipped", "deploy": "passed", "smoke": "passed", "faulty": "passed", "rollback": "passed",
        "status": "passed",
    }
    infra = next(s for s in result["steps"] if s["name"] == "infra")
    assert infra["outcome"] == "passed" or (infra["outcome"] == "skipped" and infra["detail"])
    # the faulty release reached users, was judged and rolled back, and the figures were measured
    figures = result["figures"]
    assert figures["faulty_requests_served"] > 0
    assert 0 < figures["first_faulty_request_to_stable_s"] < 60
    # the control-plane fault injected into the good deploy (a lost UpdateAlias reply) was handled
    deploy = next(s for s in result["steps"] if s["name"] == "deploy")
    assert deploy["data"]["lost_replies_recognised"] and "recognised as applied" in deploy["detail"]
    faulty = next(s for s in result["steps"] if s["name"] == "faulty")
    assert "error_rate_pct" in faulty["detail"]
    status = next(s for s in result["steps"] if s["name"] == "status")["data"]["status"]
    assert status["routes"] == [{"version": "1", "percent": 100.0, "release": "v1.0.0",
                                 "sha256": status["routes"][0]["sha256"]}]
    assert [r["outcome"] for r in status["runs"]] == ["succeeded", "rolled-back", "succeeded"]
    # those runs were read back from the sandbox's state bucket, through the S3 state store
    assert result["ledger_dir"].startswith("s3://promoter-state-") and "/rehearsals/" in result["ledger_dir"]
    assert not (home / "rehearsals" / result["rehearsal_id"] / "ledger" / "ledger").exists()
    # the report landed next to the ledger, and nothing of the sandbox is left running
    report = Path(result["report"])
    assert report.parent == home / "reports" and "every expectation held" in report.read_text()
    state = Path(result["sandbox_dir"]) / "state.json"
    assert not state.exists()


def test_rehearsal_plan_states_what_it_changes():
    plan = load_plan()
    changed, notes = rehearsal_plan(plan, "prod", min_invocations=10)
    assert plan.environment("prod").allow_chaos is False  # the real plan is untouched
    assert changed.environment("prod").allow_chaos is True
    assert changed.canary.min_invocations == 10
    assert len(notes) == 2 and "prod" in notes[0] and "50" in notes[1]
    # nothing else differs
    assert changed.rollback_thresholds == plan.rollback_thresholds and changed.canary.steps == plan.canary.steps
    _, sit_notes = rehearsal_plan(plan, "sit", min_invocations=10)
    assert len(sit_notes) == 1  # sit already allows fault injection


def test_init_failure_reason_unwraps_terraforms_message():
    output = [
        "Initializing provider plugins...\n",
        "- Finding hashicorp/aws versions matching \"~> 5.0\"...\n",
        "╷\n", "│ Error: Failed to query available provider packages\n", "│ \n",
        "│ Could not retrieve the list of available versions for provider\n",
        "│ hashicorp/aws: could not connect to registry.terraform.io\n", "│ \n",
        "│ To see which modules are currently depending on hashicorp/aws\n", "╵\n",
    ]
    reason = init_failure_reason(output)
    assert reason.startswith("Failed to query available provider packages")
    assert "hashicorp/aws: could not connect to registry.terraform.io" in reason
    assert "To see" not in reason


def test_report_lists_every_step_and_the_figures(tmp_path):
    result = Rehearsal(rehearsal_id="r1", env="sit", adjustments=["minimum invocations per verdict 10 (plan: 50)"])
    result.steps = [StepResult("deploy", "Canary deploy v1.1.0", "passed", "reaches 100 %", "version 2", 12.5),
                    StepResult("faulty", "Faulty release", "failed", "rolled back", "not | rolled back", 3.0)]
    result.figures = {"first_faulty_request_to_stable_s": 3.9, "faulty_requests_served": 11}
    text = write_report(result, tmp_path).read_text()
    assert "**FAILED**" in text
    assert "| Faulty release | failed | 3.0 s | rolled back | not \\| rolled back |" in text
    assert "back on stable: 3.9 s" in text and "faulty version served: 11" in text
    assert "minimum invocations per verdict 10" in text
