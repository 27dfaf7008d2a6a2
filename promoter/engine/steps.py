"""The pipeline's operations over the existing engine: one small class per step action.

Each wraps the engine entry point the matching command uses (preflight, infra plan/apply, deploy, smoke,
status) and turns its result into a :class:`~promoter.engine.pipeline.StepOutcome` with its outputs and its
evidence files. ``probe`` answers for dry runs from read-only calls. :func:`operations` builds the full set
for real accounts; the rehearsal swaps the ones it plays differently (terraform against a sandbox).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from promoter.engine.pipeline import ArtifactRef, Operation, Probe, PromoteSettings, StepContext, StepOutcome
from promoter.errors import PromoterError


@dataclass
class StepWiring:
    """What the operations need from outside: sessions per environment, the smoke tests' URL and token."""

    aws_for: Callable[[str], Any]  # env -> AwsSessionFactory
    ports_for: Callable[[str], Any]  # env -> release.Ports
    api_urls: Mapping[str, str] = field(default_factory=dict)  # env -> API base URL (default: the plan's domain)
    tokens: Mapping[str, str] = field(default_factory=dict)  # env -> bearer token for the smoke tests
    preflight_skip: tuple[str, ...] = ("manual",)  # approvals are the pipeline's own steps
    release_observer: Callable[[Any], None] | None = None
    terraform_runner: Callable[[Any], Any] | None = None  # InfraSettings -> TerraformRunner
    # env -> variables for the child processes of the validation steps (a sandbox's endpoints; None unsets)
    suite_env: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)
    security_tokens: Callable[[str], Any] | None = None  # env -> the security checks' tokens (a sandbox's users)


def prepare(settings: PromoteSettings, progress: Callable[[str], None]) -> ArtifactRef:
    """Build the release once (or take ``--artifact``): the same path the deploy steps then publish."""
    from promoter.engine import release

    ds = release.DeploySettings(plan=settings.plan, env=settings.env, release=settings.release,
                                artifact=settings.artifact, allow_untagged=settings.allow_untagged,
                                out_dir=settings.out_dir, repo=settings.repo, target=settings.target)
    art = release.prepare_artifact(ds, progress)
    return ArtifactRef(release=art.release, sha256=art.sha256, path=art.path, code_sha256=art.code_sha256,
                       git_sha=art.git_sha)


class PreflightStep:
    def __init__(self, wiring: StepWiring) -> None:
        self.w = wiring

    def probe(self, ctx: StepContext) -> Probe:
        return Probe("run", f"preflight of {ctx.env} (read-only)")

    def run(self, ctx: StepContext) -> StepOutcome:
        from promoter.engine.preflight import PreflightContext, checklist, run_checks, select_checks

        checks = select_checks(checklist(ctx.plan, ctx.env), skip=list(self.w.preflight_skip))
        pf = PreflightContext(plan=ctx.plan, env=ctx.env, aws=self.w.aws_for(ctx.env),
                              repo=ctx.settings.repo or Path.cwd(), release=ctx.artifact.release,
                              approvals=ctx.ledger)
        report = run_checks(checks, pf)
        data = report.to_dict()
        outputs = {"ok": report.ok, "counts": report.counts(), "blockers": [r.id for r in report.blockers]}
        if not report.ok:
            return StepOutcome("failed", "preflight blockers failed: " + ", ".join(
                f"{r.id} ({r.evidence})" for r in report.blockers), outputs, files={"preflight.json": data})
        return StepOutcome("passed", f"{len(report.results)} checks, no blocker failed", outputs,
                           files={"preflight.json": data})


class InfraPlanStep:
    def __init__(self, wiring: StepWiring) -> None:
        self.w = wiring

    def _settings(self, ctx: StepContext):
        from promoter.engine.infra import InfraSettings

        return InfraSettings.from_plan(ctx.plan, ctx.env, repo=ctx.settings.repo)

    def probe(self, ctx: StepContext) -> Probe:
        return Probe("run", f"terraform plan and review for {ctx.env}")

    def run(self, ctx: StepContext) -> StepOutcome:
        from promoter.engine.infra import plan_infra

        settings = self._settings(ctx)
        runner = self.w.terraform_runner(settings) if self.w.terraform_runner else _terraform_cli(settings)
        adopted = adopt_approved_plan(settings, runner, ctx.ledger)
        if adopted is not None:
            return adopted
        outcome = plan_infra(settings, runner, ctx.ledger, progress=ctx.note)
        result = plan_outcome(outcome)
        # the plan itself (terraform show -json) beside its review, for the evidence pack
        return replace(result, files={**result.files, "terraform-plan.json": runner.show_json(str(outcome.plan_file))})


def plan_outcome(outcome: Any) -> StepOutcome:
    """A reviewed terraform plan as a step outcome; a blocked review fails the step."""
    data = outcome.to_dict()
    review = outcome.review
    outputs = {"plan_sha256": outcome.sha256, "plan_file": str(outcome.plan_file), "workspace": outcome.workspace,
               "summary": review.summary()}
    files = {"terraform-plan-review.json": data}
    if review.blocked:
        return StepOutcome("failed", "the review blocks the plan: " + ", ".join(c.address for c in review.blockers),
                           outputs, files=files)
    return StepOutcome("passed", f"plan {outcome.sha256[:12]} reviewed: {review.summary()}", outputs, files=files)


def adopt_approved_plan(settings: Any, runner: Any, ledger: Any) -> StepOutcome | None:
    """The saved plan already reviewed and approved for this environment, when there is one to take instead of
    planning again: its file unchanged since ``infra plan`` recorded it, fresh, not applied, in the workspace
    terraform selects, not blocked. A CI review job plans, its reviewers approve that plan, and the promotion
    applies exactly it. None otherwise (the step plans)."""
    from promoter.engine.infra import TERRAFORM_GATE, ensure_workspace, sha256_file, verify_saved_plan
    from promoter.errors import RefusedError

    if not settings.plan_file.is_file():
        return None
    # from the ledger first: terraform is started only for a plan that is recorded, approved and not applied
    sha = sha256_file(settings.plan_file)
    if not any(r.get("sha256") == sha for r in ledger.records(settings.env, kind="infra-plan")):
        return None
    if not any(r.get("gate") == TERRAFORM_GATE and r.get("sha256") == sha
               for r in ledger.records(settings.env, kind="approval")):
        return None
    if any(r.get("sha256") == sha and r.get("outcome") == "applied"
           for r in ledger.records(settings.env, kind="infra-apply")):
        return None
    runner.init(str(settings.backend_config) if settings.backend_config else None)
    try:
        ensure_workspace(runner, settings.workspace, create=False)
        saved = verify_saved_plan(settings, runner, ledger)
    except RefusedError:
        return None
    if saved.approval is None or saved.review.blocked:
        return None
    data = saved.to_dict()
    outputs = {"plan_sha256": saved.sha256, "plan_file": str(saved.plan_file), "workspace": saved.workspace,
               "summary": saved.review.summary(), "adopted": True}
    return StepOutcome(
        "passed", f"plan {saved.sha256[:12]} made at {saved.record.get('created')} and approved by "
        f"{saved.approval.get('approver')} ({saved.approval.get('identity') or 'identity unknown'}): applying "
        f"that plan, not a new one", outputs,
        files={"terraform-plan-review.json": data, "terraform-plan.json": runner.show_json(str(saved.plan_file))})


def _terraform_cli(settings: Any) -> Any:
    from promoter.adapters.terraform import TerraformCli

    return TerraformCli(settings.directory, min_version=settings.min_version)


class InfraApplyStep:
    """Applies the plan the infra-plan step reviewed, once its approval (bound to the plan's sha256) is on
    record; waits for it otherwise. Skipped when the phase made no plan."""

    def __init__(self, wiring: StepWiring) -> None:
        self.w = wiring

    def _state(self, ctx: StepContext) -> tuple[str | None, dict[str, Any] | None, dict[str, Any] | None]:
        from promoter.engine.infra import TERRAFORM_GATE

        sha = ctx.inputs.get("plan_sha256")
        if not sha:
            return None, None, None
        approval = next((r for r in reversed(ctx.ledger.records(ctx.env, kind="approval"))
                         if r.get("gate") == TERRAFORM_GATE and r.get("sha256") == sha), None)
        applied = next((r for r in reversed(ctx.ledger.records(ctx.env, kind="infra-apply"))
                        if r.get("sha256") == sha and r.get("outcome") == "applied"), None)
        return sha, approval, applied

    def _command(self, ctx: StepContext) -> str:
        return f"promoter infra apply --env {ctx.env} --approve --approver NAME"

    def probe(self, ctx: StepContext) -> Probe:
        sha, approval, applied = self._state(ctx)
        planned = any(f"{ctx.phase.id}/{s.id}" in ctx.state for s in ctx.phase.steps if s.action == "infra-plan")
        if not planned:
            return Probe("wait", "the plan the infra-plan step makes needs its own approval", self._command(ctx))
        if not sha:
            return Probe("skip", "no terraform plan was made in this phase")
        if applied or approval:
            return Probe("run", f"plan {sha[:12]} approved")
        return Probe("wait", f"plan {sha[:12]} has no approval", self._command(ctx))

    def run(self, ctx: StepContext) -> StepOutcome:
        sha, approval, applied = self._state(ctx)
        if not sha:
            return StepOutcome("skipped", "no terraform plan was made in this phase (the infra-plan step was "
                               "skipped), nothing to apply")
        if applied:
            return StepOutcome("passed", f"plan {sha[:12]} applied at {applied.get('ts')} (approved by "
                               f"{applied.get('approver')})", {"plan_sha256": sha, "applied": applied.get("ts")},
                               files={"terraform-apply.json": applied})
        if approval is None:
            return StepOutcome("waiting", f"terraform plan {sha[:12]} for {ctx.env} has no approval on record",
                               {"plan_sha256": sha}, command=self._command(ctx))
        from promoter.engine.infra import InfraSettings, apply_plan

        settings = InfraSettings.from_plan(ctx.plan, ctx.env, repo=ctx.settings.repo)
        runner = self.w.terraform_runner(settings) if self.w.terraform_runner else _terraform_cli(settings)
        record = apply_plan(settings, runner, ctx.ledger)
        return StepOutcome("passed", f"plan {sha[:12]} applied (approved by {approval.get('approver')})",
                           {"plan_sha256": sha, "applied": record.get("ts")}, files={"terraform-apply.json": record})


class DeployStep:
    def __init__(self, wiring: StepWiring) -> None:
        self.w = wiring

    def _settings(self, ctx: StepContext):
        from promoter.engine import release

        s = ctx.settings
        return release.DeploySettings(
            plan=ctx.plan, env=ctx.env, release=ctx.artifact.release, canary=ctx.step.canary,
            bake_seconds=s.bake_seconds, analysis_interval=s.analysis_interval, artifact=Path(ctx.artifact.path),
            env_vars=dict(s.env_vars), on_interrupt=s.on_interrupt, lock_wait=s.lock_wait,
            allow_untagged=s.allow_untagged, out_dir=s.out_dir, repo=s.repo, allow_unproven=s.allow_unproven,
        )

    def probe(self, ctx: StepContext) -> Probe:
        from promoter.engine import release

        try:
            record = release.deploy(replace(self._settings(ctx), dry_run=True), self.w.ports_for(ctx.env))
        except PromoterError as exc:  # e.g. the backup an earlier step of the same run would record
            return Probe("run", f"deploy {ctx.artifact.release}; refused as things stand now: {exc.message}")
        return Probe("run", "; ".join((record.plan or {}).get("actions", [])))

    def run(self, ctx: StepContext) -> StepOutcome:
        from promoter.engine import release

        ports = self.w.ports_for(ctx.env)
        settings = self._settings(ctx)
        if continues_deploy(release.unfinished_run(ports.ledger, ctx.env), ctx.artifact.sha256):
            ctx.note("continuing the interrupted deploy of this artifact (deploy --resume)")
            settings = replace(settings, resume=True)
        try:
            record = release.deploy(settings, ports, self.w.release_observer)
        except PromoterError as exc:
            run = (exc.details or {}).get("run")
            if run:
                exc.details = {**(exc.details or {}), "deploy_record": run}
            raise
        data = record.to_dict()
        outputs = {"run_id": record.run_id, "outcome": record.outcome, "version": record.candidate_version,
                   "stable_version": record.stable_version, "alias": record.alias, "verdicts": len(record.verdicts)}
        return StepOutcome("passed", f"{record.outcome}: {record.reason}", outputs, files={"deploy-record.json": data})


def continues_deploy(unfinished: dict[str, Any] | None, sha256: str) -> bool:
    """A deploy step run again after an interrupted deploy of the same artifact continues that deploy (pure)."""
    return unfinished is not None and (unfinished.get("artifact") or {}).get("sha256") == sha256


class SmokeStep:
    def __init__(self, wiring: StepWiring) -> None:
        self.w = wiring

    def probe(self, ctx: StepContext) -> Probe:
        return Probe("run", f"the runbook's smoke tests against {self._url(ctx)}")

    def _url(self, ctx: StepContext) -> str:
        return api_url(self.w, ctx)

    def run(self, ctx: StepContext) -> StepOutcome:
        from promoter.adapters.http import HttpClient
        from promoter.engine.smoke import resolve_token, run_smoke

        url = self._url(ctx)
        token = self.w.tokens.get(ctx.env) or resolve_token(None, lambda: self.w.aws_for(ctx.env), ctx.plan, ctx.env)
        client = HttpClient(url, token=token, timeout=15)
        try:
            report = run_smoke(ctx.plan, ctx.env, client)
        finally:
            client.close()
        data = report.to_dict()
        ctx.ledger.append(ctx.env, "smoke", ok=report.ok, api_url=url, tests=data["tests"],
                          pipeline_id=ctx.pipeline_id, artifact_sha256=ctx.artifact.sha256,
                          release=ctx.artifact.release)
        files = {"smoke-junit.xml": report.to_junit(), "smoke.json": data}
        outputs = {"ok": report.ok, "passed": data.get("passed"), "api_url": url}
        if not report.ok:
            bad = [f"{t['name']}: {'; '.join(t['problems'])}" for t in data["tests"] if not t["ok"]]
            return StepOutcome("failed", "smoke failures: " + " | ".join(bad + data["skipped"]), outputs, files=files)
        return StepOutcome("passed", f"{data['passed']} smoke requests passed against {url}", outputs, files=files)


def api_url(wiring: StepWiring, ctx: StepContext) -> str:
    """The API a step that sends requests talks to: the wiring's URL for the environment, else the plan's domain
    (``PROMOTER_API_URL`` too, for the environment the promotion is for)."""
    from promoter.engine.smoke import api_url_for

    if ctx.env in wiring.api_urls:
        return wiring.api_urls[ctx.env]
    override = None if ctx.env == ctx.settings.env else f"https://{ctx.plan.environment(ctx.env).domain}"
    return api_url_for(ctx.plan, ctx.env, override)


class StatusStep:
    def __init__(self, wiring: StepWiring) -> None:
        self.w = wiring

    def probe(self, ctx: StepContext) -> Probe:
        return Probe("run", f"read the alias of {ctx.env} (read-only)")

    def run(self, ctx: StepContext) -> StepOutcome:
        from promoter.engine import release

        data = release.status(ctx.plan, ctx.env, self.w.ports_for(ctx.env))
        routes = data["routes"]
        described = ", ".join(f"version {r['version']} ({r['release']}) {r['percent']:g} %" for r in routes)
        outputs = {"routes": routes}
        ours = [r for r in routes if r.get("sha256") == ctx.artifact.sha256 and r["percent"] == 100]
        if ctx.env == ctx.phase.env and any(s.action == "deploy" for s in ctx.phase.steps) and not ours:
            return StepOutcome("failed", f"alias {data['alias']} does not serve {ctx.artifact.release} (sha256 "
                               f"{ctx.artifact.sha256[:12]}) at 100 %: {described}", outputs,
                               files={"status.json": data})
        return StepOutcome("passed", f"alias {data['alias']}: {described}", outputs, files={"status.json": data})


def operations(wiring: StepWiring) -> dict[str, Operation]:
    from promoter.engine.approvals import ApprovalStep
    from promoter.engine.backup import BackupStep
    from promoter.engine.integration import IntegrationStep
    from promoter.engine.load import LoadStep
    from promoter.engine.security.step import SecurityStep

    return {
        "preflight": PreflightStep(wiring), "infra-plan": InfraPlanStep(wiring), "infra-apply": InfraApplyStep(wiring),
        "deploy": DeployStep(wiring), "smoke": SmokeStep(wiring), "status": StatusStep(wiring),
        "approval": ApprovalStep(), "backup": BackupStep(wiring.aws_for), "integration": IntegrationStep(wiring),
        "security": SecurityStep(wiring), "load": LoadStep(wiring),
    }


def admission(settings: PromoteSettings, artifact: ArtifactRef, ledger: Any) -> dict[str, Any] | None:
    from promoter.engine.passport import admit

    return admit(settings.plan, settings.env, artifact.sha256, artifact.release, ledger,
                 allow_unproven=settings.allow_unproven)


def pipeline_ports(wiring: StepWiring, ledger: Any, identity: Callable[[], str], plan: Any) -> Any:
    """The pipeline over real operations: build once, the passport at the door, an evidence pack at the end."""
    from promoter.engine.evidence import write_pack
    from promoter.engine.pipeline import PipelinePorts

    limit = plan.rollback_thresholds.error_rate_pct
    return PipelinePorts(operations=operations(wiring), ledger=ledger, identity=identity, artifact=prepare,
                         admission=admission, evidence=lambda lg, env, pid: write_pack(lg, env, pid, threshold=limit))
