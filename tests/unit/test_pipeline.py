"""The promotion pipeline on plain data: plan models of steps, the planner, pause at a manual step (exit 5),
resume, no-op re-run, dry run through the same planner, failures on record; approvals bound to the artifact."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from promoter.engine.approvals import ApprovalStep, approve_command, find_approval
from promoter.engine.infra import record_gate_approval
from promoter.engine.ledger import Ledger
from promoter.engine.pipeline import (
    ArtifactRef,
    PipelinePorts,
    Probe,
    PromoteSettings,
    StepOutcome,
    decide,
    promote,
)
from promoter.errors import PlanError, ReleaseFailed, UsageError, WaitingForApproval
from promoter.exitcodes import ExitCode
from promoter.plan import load_plan

PLAN_PATH = Path(__file__).resolve().parents[2] / "plans" / "PROM-CAMP-001.yaml"
SHA = "a" * 64
OTHER_SHA = "b" * 64


class FakeOperation:
    """Records what ran; passes unless told to fail."""

    def __init__(self, name: str, calls: list[str], fail: dict[str, Exception] | None = None) -> None:
        self.name, self.calls, self.fail = name, calls, fail if fail is not None else {}

    def probe(self, ctx):
        return Probe("run", f"would {self.name}")

    def run(self, ctx):
        key = f"{ctx.phase.id}/{ctx.step.id}"
        self.calls.append(key)
        if key in self.fail:
            raise self.fail.pop(key)
        outputs = {"plan_sha256": "c" * 64} if self.name == "infra-plan" else {"did": key}
        return StepOutcome("passed", f"{self.name} done", outputs, files={"out.json": {"key": key}})


@pytest.fixture
def plan(signoff_plan):
    """The shipped plan with SIT validation as recorded sign-offs (these tests are about pausing and resuming;
    the validation steps that measure are tested with their operations)."""
    return load_plan(signoff_plan)


@pytest.fixture
def world(tmp_path, plan):
    calls: list[str] = []
    fail: dict[str, Exception] = {}
    ledger = Ledger(tmp_path / "home")
    artifact = {"ref": ArtifactRef(release="v1.1.0", sha256=SHA, path=str(tmp_path / "a.zip"))}
    ops = {a: FakeOperation(a, calls, fail) for a in
           ("preflight", "infra-plan", "infra-apply", "deploy", "smoke", "backup", "status")}
    ops["approval"] = ApprovalStep()

    def ports(identity="arn:aws:iam::1:user/starter"):
        return PipelinePorts(operations=ops, ledger=ledger, identity=lambda: identity,
                             artifact=lambda _s, _p: artifact["ref"])

    class World:
        pass

    w = World()
    w.calls, w.fail, w.ledger, w.artifact, w.ports, w.plan = calls, fail, ledger, artifact, ports, plan
    w.settings = PromoteSettings(plan=plan, env="sit", phase="sit-validation")
    return w


def approve(world, gate, env="sit", sha=SHA, release="v1.1.0", identity="arn:aws:iam::1:user/approver", ref=None):
    record_gate_approval(world.plan, world.ledger, env=env, gate=gate, approver="Thandi", release=release,
                         artifact_sha256=sha, identity=identity, ref=ref)


# -- plan models ---------------------------------------------------------------------------------------------------
def _plan_with_step(tmp_path, step: dict) -> Path:
    data = yaml.safe_load(PLAN_PATH.read_text())
    data["phases"][0]["steps"].append(step)
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_every_step_of_the_shipped_plan_names_an_operation_of_the_engine(plan):
    from promoter.engine.steps import StepWiring, operations

    shipped = load_plan(PLAN_PATH)
    actions = {s.action for p in shipped.phases for s in p.steps}
    assert actions <= set(operations(StepWiring(aws_for=lambda _e: None, ports_for=lambda _e: None)))
    assert [p.id for p in plan.phases_of("sit")] == ["sit-promotion", "sit-validation"]
    validation = plan.phase("sit-validation")
    assert all(s.action == "approval" and s.manual for s in validation.steps)


@pytest.mark.parametrize("step, message", [
    ({"id": "x", "title": "X", "action": "run-shell"}, "action"),
    ({"id": "x", "title": "X", "action": "approval"}, "needs gate"),
    ({"id": "x", "title": "X", "action": "approval", "gate": "nope"}, "neither a gate nor a manual check"),
    ({"id": "x", "title": "X", "action": "approval", "gate": "terraform-approval"}, "use action infra-apply"),
    ({"id": "x", "title": "X", "action": "deploy", "gate": "sit-signoff"}, "gate is a parameter of action approval"),
    ({"id": "x", "title": "X", "action": "smoke", "env": "qa"}, "unknown environment 'qa'"),
    ({"id": "preflight", "title": "X", "action": "status"}, "step ids must be unique"),
    ({"id": "x", "title": "X", "action": "deploy", "command": "promoter deploy --env sit"}, "command"),
])
def test_plan_refuses_steps_the_engine_cannot_run(tmp_path, step, message):
    with pytest.raises(PlanError) as err:
        load_plan(_plan_with_step(tmp_path, step))
    assert message in str(err.value)


# -- the planner -----------------------------------------------------------------------------------------------
def test_decide_runs_new_failed_and_changed_steps_and_skips_passed_ones():
    inputs = {"release": "v1", "artifact_sha256": SHA}
    assert decide("p/a", inputs, []) == ("run", "not run yet")
    passed = [{"step_key": "p/a", "status": "started"}, {"step_key": "p/a", "status": "passed", "inputs": inputs,
                                                           "ts": "T"}]
    assert decide("p/a", inputs, passed)[0] == "skip"
    changed = decide("p/a", {**inputs, "artifact_sha256": OTHER_SHA}, passed)
    assert changed[0] == "run" and "artifact_sha256" in changed[1]
    failed = [{"step_key": "p/a", "status": "failed", "inputs": inputs}]
    assert decide("p/a", inputs, failed) == ("run", "its last outcome was failed")


# -- run, pause, resume ------------------------------------------------------------------------------------------
def test_a_manual_step_pauses_with_exit_5_and_the_exact_approve_command(world):
    with pytest.raises(WaitingForApproval) as err:
        promote(world.settings, world.ports())
    exc = err.value
    assert exc.exit_code == ExitCode.WAITING == 5
    command = f"promoter approve --env sit --gate sit-integration --approver NAME --release v1.1.0 --sha256 {SHA}"
    assert exc.command == command and command in exc.hint and "--resume" in exc.hint
    run = exc.details["pipeline"]
    assert run["outcome"] == "waiting" and run["waiting_for"]["step"] == "sit-validation/integration"
    ends = world.ledger.records("sit", kind="pipeline-end")
    assert [e["outcome"] for e in ends] == ["waiting"]


def test_resume_goes_on_once_the_approval_is_recorded_and_skips_what_passed(world):
    with pytest.raises(WaitingForApproval):
        promote(world.settings, world.ports())
    approve(world, "sit-integration")
    with pytest.raises(WaitingForApproval) as err:
        promote(replace(world.settings, resume=True), world.ports())
    assert err.value.details["pipeline"]["waiting_for"]["step"] == "sit-validation/load"
    approve(world, "sit-load-test", ref="LOAD-1")
    approve(world, "sit-security-scan", ref="SEC-1")
    approve(world, "sit-signoff", env="prod")  # the sign-off gate lives in PROD's ledger (before_env: prod)
    run = promote(replace(world.settings, resume=True), world.ports())
    assert run.outcome == "succeeded" and run.resumed
    statuses = {s["step_key"]: s["status"] for s in run.steps}
    assert statuses == {"sit-validation/integration": "skipped", "sit-validation/load": "passed",
                        "sit-validation/security": "passed", "sit-validation/signoff": "passed"}
    # one pipeline run in the ledger: every record carries its id, and the deploy-run view is untouched
    ids = {r["pipeline_id"] for r in world.ledger.records("sit") if r["kind"].startswith("pipeline-")}
    assert ids == {run.pipeline_id}
    assert world.ledger.runs("sit") == []


def test_a_finished_promotion_rerun_is_a_noop_that_says_so(world):
    for gate, env in (("sit-integration", "sit"), ("sit-load-test", "sit"), ("sit-security-scan", "sit"),
                      ("sit-signoff", "prod")):
        approve(world, gate, env=env, ref="R")
    first = promote(world.settings, world.ports())
    assert first.outcome == "succeeded"
    count = len(world.ledger.records("sit"))
    again = promote(world.settings, world.ports())
    assert again.outcome == "noop" and "already succeeded" in again.reason and first.pipeline_id in again.reason
    assert len(world.ledger.records("sit")) == count  # nothing written


def test_a_step_whose_inputs_changed_runs_again_on_resume(world):
    settings = PromoteSettings(plan=world.plan, env="sit", phase="sit-promotion")
    world.fail["sit-promotion/deploy"] = ReleaseFailed("rolled back to version 1: canary at 10%")
    with pytest.raises(ReleaseFailed) as err:
        promote(settings, world.ports())
    assert err.value.exit_code == 3 and err.value.details["pipeline"]["outcome"] == "failed"
    assert world.calls == ["sit-promotion/preflight", "sit-promotion/infra-plan", "sit-promotion/infra-approve",
                           "sit-promotion/deploy"]
    # the same artifact resumes at the failed step
    world.calls.clear()
    run = promote(replace(settings, resume=True), world.ports())
    assert run.outcome == "succeeded"
    assert world.calls == ["sit-promotion/deploy", "sit-promotion/smoke", "sit-promotion/status"]
    # a new artifact of the same release is new input for every step
    world.artifact["ref"] = replace(world.artifact["ref"], sha256=OTHER_SHA)
    world.calls.clear()
    world.fail["sit-promotion/smoke"] = ReleaseFailed("smoke")
    with pytest.raises(ReleaseFailed):
        promote(settings, world.ports())
    world.calls.clear()
    run = promote(replace(settings, resume=True), world.ports())
    assert world.calls == ["sit-promotion/smoke", "sit-promotion/status"]
    steps = [r for r in world.ledger.records("sit", kind="pipeline-step") if r.get("pipeline_id") == run.pipeline_id]
    assert all(r["inputs"]["artifact_sha256"] == OTHER_SHA for r in steps)
    assert {r["inputs"].get("plan_sha256") for r in steps if r["step"] == "deploy"} == {"c" * 64}


def test_an_unfinished_run_is_not_restarted_behind_its_back(world):
    with pytest.raises(WaitingForApproval):
        promote(world.settings, world.ports())
    from promoter.errors import RefusedError

    with pytest.raises(RefusedError, match="unfinished") as err:
        promote(world.settings, world.ports())
    assert "--resume" in err.value.hint
    with pytest.raises(RefusedError, match="no unfinished run"):
        promote(PromoteSettings(plan=world.plan, env="sit", phase="sit-promotion", resume=True), world.ports())


def test_dry_run_goes_through_the_same_planner_and_writes_nothing(world):
    approve(world, "sit-integration")
    run = promote(replace(world.settings, dry_run=True), world.ports())
    assert run.outcome == "dry-run"
    would = {s["step_key"]: s["would"] for s in run.steps}
    assert would == {"sit-validation/integration": "run", "sit-validation/load": "wait",
                     "sit-validation/security": "wait", "sit-validation/signoff": "wait"}
    assert next(s for s in run.steps if s["step_key"] == "sit-validation/load")["command"].startswith(
        "promoter approve --env sit --gate sit-load-test")
    assert world.ledger.records("sit", kind="pipeline-start") == []


def test_phase_and_env_must_agree(world):
    with pytest.raises(UsageError, match="runs in prod"):
        promote(PromoteSettings(plan=world.plan, env="sit", phase="prod-promotion"), world.ports())


def test_evidence_files_of_steps_are_kept_for_the_pack(world):
    settings = PromoteSettings(plan=world.plan, env="sit", phase="sit-promotion")
    run = promote(settings, world.ports())
    stage = world.ledger.root / "pipelines" / "sit" / run.pipeline_id
    assert (stage / "sit-promotion--deploy--out.json").is_file()


# -- approvals bound to what they approve --------------------------------------------------------------------------
def test_an_approval_of_another_artifact_or_release_does_not_count():
    records = [
        {"gate": "sit-signoff", "release": "v1.0.0", "artifact_sha256": SHA, "approver": "A", "ts": "1"},
        {"gate": "sit-signoff", "release": "v1.1.0", "artifact_sha256": OTHER_SHA, "approver": "B", "ts": "2"},
        {"gate": "sit-signoff", "release": "v1.1.0", "approver": "C", "ts": "3"},
    ]
    match = find_approval(records, gate="sit-signoff", release="v1.1.0", artifact_sha256=SHA, four_eyes=False,
                          started_by="x")
    assert match.record is None and len(match.rejected) == 3
    good = {"gate": "sit-signoff", "release": "v1.1.0", "artifact_sha256": SHA, "approver": "D", "ts": "4"}
    assert find_approval([*records, good], gate="sit-signoff", release="v1.1.0", artifact_sha256=SHA,
                         four_eyes=False, started_by="x").record == good


def test_four_eyes_refuses_the_starter_as_approver(world):
    me = "arn:aws:sts::1:assumed-role/ci/run"
    settings = PromoteSettings(plan=world.plan, env="sit", phase="sit-validation")
    for gate in ("sit-integration", "sit-load-test", "sit-security-scan"):
        approve(world, gate, identity=me, ref="R")
    approve(world, "sit-signoff", env="prod", identity=me)  # sit-signoff is four_eyes in the plan
    with pytest.raises(WaitingForApproval) as err:
        promote(settings, world.ports(identity=me))
    assert err.value.details["pipeline"]["waiting_for"]["step"] == "sit-validation/signoff"
    assert "four eyes" in err.value.message
    approve(world, "sit-signoff", env="prod", identity="arn:aws:sts::1:assumed-role/lead/thandi")
    assert promote(replace(settings, resume=True), world.ports(identity=me)).outcome == "succeeded"


def test_the_approve_command_names_release_sha_and_ref_where_needed(plan):
    assert approve_command(plan, "change-request", "prod", "v1.1.0", SHA) == (
        f"promoter approve --env prod --gate change-request --approver NAME --ref REF --release v1.1.0 --sha256 {SHA}")


def test_the_tags_of_one_release_share_its_approvals(plan):
    from promoter.engine.gates import missing_gates, release_name

    assert release_name(plan, "v1.1.0-sit") == release_name(plan, "v1.1.0-prod") == "v1.1.0"
    assert release_name(plan, "v1.2.0-faulty") == "v1.2.0-faulty"
    signoff = {"gate": "sit-signoff", "release": "v1.1.0-sit", "artifact_sha256": SHA, "approver": "A", "ts": "1"}
    change = {"gate": "change-request", "release": "v1.1.0-prod", "artifact_sha256": SHA, "approver": "B", "ts": "2"}
    assert missing_gates(plan, "prod", "v1.1.0-prod", [signoff, change], SHA) == []
    assert [g.id for g in missing_gates(plan, "prod", "v1.1.0-prod", [signoff, change], OTHER_SHA)] == [
        "sit-signoff", "change-request"]
    match = find_approval([signoff], gate="sit-signoff", release="v1.1.0-prod", artifact_sha256=SHA,
                          four_eyes=False, started_by="x", name=lambda tag: release_name(plan, tag))
    assert match.record == signoff


@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("disk full")])
def test_an_interrupt_or_unexpected_error_still_ends_the_run_on_record(world, error):
    settings = PromoteSettings(plan=world.plan, env="sit", phase="sit-promotion")
    world.fail["sit-promotion/smoke"] = error
    with pytest.raises(type(error)):
        promote(settings, world.ports())
    ends = world.ledger.records("sit", kind="pipeline-end")
    assert [e["outcome"] for e in ends] == ["failed"]
    failed = [r for r in world.ledger.records("sit", kind="pipeline-step") if r["status"] == "failed"]
    assert [r["step"] for r in failed] == ["smoke"]
    # and it resumes at that step
    world.calls.clear()
    assert promote(replace(settings, resume=True), world.ports()).outcome == "succeeded"
    assert world.calls == ["sit-promotion/smoke", "sit-promotion/status"]


def test_a_deploy_step_continues_an_interrupted_deploy_of_the_same_artifact_only():
    from promoter.engine.steps import continues_deploy

    assert continues_deploy({"run_id": "r", "artifact": {"sha256": SHA}}, SHA)
    assert not continues_deploy({"run_id": "r", "artifact": {"sha256": OTHER_SHA}}, SHA)
    assert not continues_deploy(None, SHA)


def test_a_second_promotion_of_the_same_environment_is_refused_while_one_runs(world):
    from promoter.errors import RefusedError

    with world.ledger.lock("sit-pipeline", purpose="promote"), pytest.raises(RefusedError) as err:
        promote(world.settings, world.ports())
    assert "another promotion of sit is running" in err.value.message
    assert "sit-pipeline.lock" in err.value.hint
