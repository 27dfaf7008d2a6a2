"""`promoter rehearse` end to end: the promotion pipeline in two sandbox accounts (SIT's phases, the faulty
release rolled back, PROD refusing an unproven artifact, approvals pausing and resuming, PROD serving SIT's
sha256), rollback --to v1.0.0, every evidence pack verified; and its parts on plain data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from promoter.engine.rehearse import Rehearsal, StepResult, init_failure_reason, rehearsal_plan, write_report
from promoter.engine.rehearse_pipeline import pipeline_rehearsal_plan
from promoter.plan import load_plan

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_the_whole_promotion_rehearses_offline_as_the_pipeline_in_two_accounts(tmp_path):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT", "PROMOTER_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "promoter", "rehearse", "--repo", str(ROOT), "--ledger-dir", str(home), "--json"],
        capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout)
    steps = {s["name"]: s for s in result["steps"]}
    assert list(steps) == ["sandbox-sit", "sit-promotion", "sit-validation-paused", "sit-validation-resumed",
                           "faulty", "replay", "sandbox-prod", "prod-unproven", "prod-promotion-paused",
                           "prod-promotion-resumed", "rollback", "notifications", "evidence"]
    assert {s["outcome"] for s in steps.values()} == {"passed"}
    # two accounts, as in reality
    assert "815856636111" in steps["sandbox-sit"]["detail"] and "093646564004" in steps["sandbox-prod"]["detail"]
    # a missing approval pauses with exit 5 and the exact command; --resume finishes
    assert steps["sit-validation-paused"]["data"]["exit_code"] == 5
    assert steps["prod-promotion-paused"]["data"]["command"].startswith("promoter approve --env prod --gate "
                                                                        "change-request")
    # PROD deploys exactly SIT's sha256 and refuses another
    sit_sha = steps["sit-promotion"]["data"]["served_sha256"]
    assert steps["prod-promotion-resumed"]["data"]["served_sha256"] == sit_sha
    assert "accepts only an artifact sit proved" in steps["prod-unproven"]["detail"]
    # the faulty release reached users, was judged and rolled back, and the figures were measured
    figures = result["figures"]
    assert figures["faulty_requests_served"] > 0
    assert 0 < figures["first_faulty_request_to_stable_s"] < 60
    assert "error_rate_pct" in steps["faulty"]["detail"] and "(exit 3)" in steps["faulty"]["detail"]
    # SIT validation measured: the integration suite, the load test and the security checks ran and passed
    validation = steps["sit-validation-paused"]["data"]
    assert validation["exit_code"] == 5 and "sit-signoff" in validation["command"]
    # the faulty canary's observations, judged again with a threshold above its error rate: no rollback
    assert steps["replay"]["data"]["comparison"] == "never" and steps["replay"]["data"]["rolled_back"]
    # the plan's notifications reached the sandbox's SNS topic and the loopback webhook
    delivered = steps["notifications"]["data"]["by_target"]
    assert delivered["sns"]["delivered"] > 0 and delivered["webhook"]["delivered"] > 0
    assert {"promotion-started", "waiting-approval", "rolled-back"} <= set(steps["notifications"]["data"]["events"])
    # every evidence pack verifies, and the report is theirs
    assert len(steps["evidence"]["data"]["packs"]) == 4
    # the control-plane fault injected into the good SIT deploy (a lost UpdateAlias reply) was handled, and the
    # deployed version ran under the runtime's Python
    sit = steps["sit-promotion"]
    assert sit["data"]["lost_replies_recognised"] and "recognised as applied" in sit["detail"]
    assert sit["data"]["python"]["matches_runtime"] and sit["data"]["python"]["version"] == "3.12"
    # the records were written to and read back from SIT's sandbox state bucket, through the S3 state store
    assert result["ledger_dir"].startswith("s3://promoter-state-") and "/rehearsals/" in result["ledger_dir"]
    assert not (home / "rehearsals" / result["rehearsal_id"] / "ledger" / "ledger").exists()
    report = Path(result["report"])
    text = report.read_text()
    assert report.parent == home / "reports" and "every expectation held" in text and "# Evidence packs" in text
    assert f"artifact sha256 `{sit_sha}`" in text
    for name in ("sandbox-sit", "sandbox-prod"):  # nothing of the sandboxes is left running
        sandbox_dir = home / "rehearsals" / result["rehearsal_id"] / name
        assert sandbox_dir.is_dir() and not (sandbox_dir / "state.json").exists()


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


def test_the_pipeline_rehearsal_plan_states_each_change():
    plan = load_plan()
    both, notes = pipeline_rehearsal_plan(plan, ["sit", "prod"], min_invocations=10)
    assert both.environment("prod").passport.min_soak_minutes == 0.25
    assert plan.environment("prod").passport.min_soak_minutes == 60  # the real plan is untouched
    assert both.environment("prod").allow_chaos is False  # the faulty release runs in SIT
    assert any("soak" in n for n in notes) and any("invocations" in n for n in notes)
    alone, notes = pipeline_rehearsal_plan(plan, ["prod"], min_invocations=10)
    assert alone.environment("prod").passport is None and alone.environment("prod").allow_chaos is True
    assert "sit-healthy" not in [s.id for s in alone.phase("prod-promotion").steps]
    assert any("passport" in n for n in notes) and any("sit-healthy" in n for n in notes)
