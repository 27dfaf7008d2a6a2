"""The pipeline's terraform steps with a real terraform binary (null provider, offline mirror): the plan is made
and reviewed, the apply step waits for an approval bound to the plan's sha256, then applies exactly that plan."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from promoter.engine.infra import InfraSettings, approve_plan
from promoter.engine.ledger import Ledger
from promoter.engine.pipeline import ArtifactRef, PipelinePorts, Probe, PromoteSettings, StepOutcome, promote
from promoter.engine.steps import InfraApplyStep, InfraPlanStep, StepWiring
from promoter.errors import WaitingForApproval
from promoter.plan import load_plan


class Passing:
    def probe(self, ctx):
        return Probe("run")

    def run(self, ctx):
        return StepOutcome("passed", "ok")


def _pipeline(workdir, make_plan_file, tmp_path, identity: str):
    """sit-promotion with real terraform steps (the others pass): plan, ledger, ports, infra settings, runner."""
    from promoter.adapters.terraform import TerraformCli

    loaded = load_plan(make_plan_file(directory=str(workdir)))
    # the fixture configuration's local state has only the default workspace
    sit = loaded.environment("sit").model_copy(update={"terraform_workspace": "default"})
    plan = loaded.model_copy(update={"environments": {**loaded.environments, "sit": sit}})
    ledger = Ledger(tmp_path / "home")
    wiring = StepWiring(aws_for=lambda _e: None, ports_for=lambda _e: None)
    ops = {a: Passing() for a in ("preflight", "deploy", "smoke", "status")}
    ops["infra-plan"], ops["infra-apply"] = InfraPlanStep(wiring), InfraApplyStep(wiring)
    ports = PipelinePorts(operations=ops, ledger=ledger, identity=lambda: identity,
                          artifact=lambda _s, _p: ArtifactRef("v1.1.0", "a" * 64, "a.zip"))
    infra = InfraSettings.from_plan(plan, "sit", repo=tmp_path)
    return plan, ledger, ports, infra, TerraformCli(infra.directory, min_version=infra.min_version)


def test_infra_steps_plan_wait_for_the_approval_of_that_plan_and_apply_it(workdir, make_plan_file, tmp_path):
    plan, ledger, ports, infra, runner = _pipeline(workdir, make_plan_file, tmp_path, "me")
    settings = PromoteSettings(plan=plan, env="sit", phase="sit-promotion", repo=tmp_path)

    with pytest.raises(WaitingForApproval) as err:
        promote(settings, ports)
    assert err.value.command == "promoter infra apply --env sit --approve --approver NAME"
    run = err.value.details["pipeline"]
    planned = next(s for s in run["steps"] if s["step_key"] == "sit-promotion/infra-plan")
    sha = planned["outputs"]["plan_sha256"]
    stage = ledger.root / "pipelines" / "sit" / run["pipeline_id"]
    assert json.loads((stage / "sit-promotion--infra-plan--terraform-plan.json").read_text())["format_version"]
    assert ledger.records("sit", kind="infra-apply") == []  # nothing applied without its approval

    approve_plan(infra, runner, ledger, approver="Tech Lead")
    done = promote(replace(settings, resume=True), ports)
    assert done.outcome == "succeeded"
    applied = next(s for s in done.steps if s["step_key"] == "sit-promotion/infra-approve")
    assert applied["status"] == "passed" and applied["inputs"]["plan_sha256"] == sha
    assert [r["outcome"] for r in ledger.records("sit", kind="infra-apply")] == ["started", "applied"]


def test_a_plan_reviewed_and_approved_before_the_promotion_is_the_plan_it_applies(workdir, make_plan_file, tmp_path):
    """A CI review job runs `infra plan`; the environment's reviewers approve that plan; the promotion's infra-plan
    step takes it (same sha256) instead of planning again, and infra-apply applies it without waiting."""
    from promoter.engine.infra import plan_infra

    plan, ledger, ports, infra, runner = _pipeline(workdir, make_plan_file, tmp_path, "github:starter")
    reviewed = plan_infra(infra, runner, ledger)
    approve_plan(infra, runner, ledger, approver="reviewer", identity="github:reviewer")

    done = promote(PromoteSettings(plan=plan, env="sit", phase="sit-promotion", repo=tmp_path), ports)
    assert done.outcome == "succeeded", done.reason
    planned = next(s for s in done.steps if s["step_key"] == "sit-promotion/infra-plan")
    assert planned["outputs"]["adopted"] is True and planned["outputs"]["plan_sha256"] == reviewed.sha256
    assert "github:reviewer" in planned["detail"]
    assert len(ledger.records("sit", kind="infra-plan")) == 1  # no second plan was made
    applied = [r for r in ledger.records("sit", kind="infra-apply") if r["outcome"] == "applied"]
    assert [r["sha256"] for r in applied] == [reviewed.sha256]

    # once applied, that plan is never taken again: the next promotion plans afresh and waits for its approval
    ports.artifact = lambda _s, _p: ArtifactRef("v1.2.0", "b" * 64, "b.zip")
    with pytest.raises(WaitingForApproval):
        promote(PromoteSettings(plan=plan, env="sit", phase="sit-promotion", repo=tmp_path), ports)
    assert len(ledger.records("sit", kind="infra-plan")) == 2
