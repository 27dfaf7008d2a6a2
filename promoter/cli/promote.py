"""``promoter promote``: the plan's phases for one environment, step by step, as one recorded pipeline run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from promoter.cli.common import (
    AllowUntaggedOpt,
    AnalysisIntervalOpt,
    App,
    EnvOpt,
    EnvVarOpt,
    JsonOpt,
    LedgerOpt,
    LockWaitOpt,
    OnInterruptOpt,
    OutOpt,
    PlanOpt,
    ProfileOpt,
    ReleaseOpt,
    RepoOpt,
    TargetOpt,
    YesOpt,
    console,
    print_json,
)

MARKS = {"passed": "ok", "failed": "FAILED", "waiting": "WAITING", "skipped": "skipped"}


class PipelineDisplay:
    """Progress on stderr: a spinner on the running step on a terminal, plain lines otherwise."""

    def __init__(self, json_output: bool) -> None:
        self.err = console(stderr=True)
        self.live = self.err.is_terminal and not json_output
        self.status: Any = None

    def line(self, text: str) -> None:
        self.err.print(text, markup=False, highlight=False, soft_wrap=True)

    def _stop(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None

    def __call__(self, event: Any) -> None:
        d = event.data
        if event.kind == "start":
            resumed = " (resumed)" if d.get("resumed") else ""
            self.line(f"pipeline {d['pipeline_id']}{resumed}: {' + '.join(d['phases'])} for {d['release']} "
                      f"(sha256 {d['artifact_sha256'][:12]})")
        elif event.kind == "step-start":
            text = f">> {d['key']}: {d['title']} [{d['action']}] ({d['why']})"
            if self.live:
                self._stop()
                self.line(text)
                self.status = self.err.status(f"{d['key']} running")
                self.status.start()
            else:
                self.line(text)
        elif event.kind == "note":
            self.line(f"   {d['message']}")
        elif event.kind == "step-end":
            self._stop()
            status = d.get("status", "")
            key = d.get("step_key", "")
            mark = MARKS.get(status, status)
            took = f" in {d['duration_s']:.1f}s" if d.get("duration_s") is not None else ""
            self.line(f"   {key}: {mark}{took}: {d.get('detail', '')}")
            if d.get("command"):
                self.line(f"   record it with: {d['command']}")
        elif event.kind in ("end", "noop"):
            self._stop()
            if event.kind == "noop":
                self.line(d["reason"])
            else:
                self.line(f"pipeline {d['pipeline_id']}: {d['outcome']}: {d['reason']}")
                pack = d.get("evidence") or {}
                if pack.get("archive"):
                    self.line(f"evidence: {pack['archive']}")

    def release_event(self, event: Any) -> None:
        from promoter.engine.rehearse import release_notes

        release_notes(lambda m: self.line(f"   {m}"))(event)


def promote(
    env: EnvOpt = None,
    phase: Annotated[str | None, typer.Option("--phase", help="Run only this phase of the plan.")] = None,
    release_tag: ReleaseOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the last unfinished run of these phases.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what each step would do; change nothing.")] = False,
    yes: YesOpt = False,
    artifact: Annotated[Path | None, typer.Option("--artifact", help="Promote this zip instead of building.")] = None,
    allow_untagged: AllowUntaggedOpt = False,
    allow_unproven: Annotated[
        bool, typer.Option("--allow-unproven", help="Promote an artifact the passport does not prove (recorded; "
                           "refused where the plan says so).")
    ] = False,
    bake: Annotated[float | None, typer.Option("--bake", help="Override canary bake seconds.")] = None,
    analysis_interval: AnalysisIntervalOpt = None,
    env_var: EnvVarOpt = None,
    on_interrupt: OnInterruptOpt = "rollback",
    lock_wait: LockWaitOpt = 0,
    target: TargetOpt = None,
    out: OutOpt = Path("dist"),
    repo: RepoOpt = None,
    plan: PlanOpt = None,
    profile: ProfileOpt = None,
    ledger_dir: LedgerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Run the plan's phases for ENV (dev: dev-deployment; sit: sit-promotion, sit-validation; prod:
    prod-promotion) step by step.

    Each step is an operation of the plan (preflight, infra-plan, infra-apply, deploy, smoke, backup, approval,
    status), recorded in the ledger with its inputs and outputs. Exit 5: waiting for an approval (the command
    to record it is printed), then --resume goes on. A finished promotion re-run is a no-op.
    """
    from promoter.cli.release import _check_numbers, _confirm, _parse_env_vars
    from promoter.engine import pipeline, release, steps
    from promoter.engine.approvals import caller_identity
    from promoter.engine.notify import notifier_for, pipeline_notifications
    from promoter.errors import UsageError

    if on_interrupt not in ("rollback", "hold"):
        raise UsageError("--on-interrupt must be rollback or hold")
    _check_numbers(bake=bake, analysis_interval=analysis_interval, lock_wait=lock_wait)
    app = App(plan_path=plan, env_name=env, profile=profile, ledger_dir=ledger_dir, json_output=json_output,
              repo_path=repo)
    env_name = app.env
    ledger = app.ledger()
    settings = pipeline.PromoteSettings(
        plan=app.plan, env=env_name, phase=phase, release=release_tag, artifact=artifact,
        allow_untagged=allow_untagged, allow_unproven=allow_unproven, resume=resume, dry_run=dry_run,
        repo=app.repo, out_dir=out, bake_seconds=bake, analysis_interval=analysis_interval,
        env_vars=_parse_env_vars(env_var), on_interrupt=on_interrupt, lock_wait=lock_wait, target=target,  # type: ignore[arg-type]
    )
    phases = settings.phases()
    if not dry_run:
        _confirm(app, env_name, [f"promote to {env_name} (account {app.plan.environment(env_name).account_id}): "
                                 + " + ".join(p.id for p in phases)], yes)
    display = PipelineDisplay(json_output)
    notifiers: dict[str, Any] = {}

    def notifier(e: str) -> Any:
        if e not in notifiers:
            notifiers[e] = notifier_for(app.plan, e, app.aws(e), ledger)
        return notifiers[e]

    def ports_for(e: str) -> Any:
        release_ports = release.Ports.for_aws(app.aws(e), app.plan, e, ledger)
        release_ports.notifier = notifier(e)
        return release_ports

    wiring = steps.StepWiring(aws_for=lambda e: app.aws(e), ports_for=ports_for,
                              release_observer=display.release_event)
    ports = steps.pipeline_ports(wiring, ledger, lambda: caller_identity(lambda: app.aws(env_name).client("sts")),
                                 app.plan)
    if not dry_run:
        ports.notify = pipeline_notifications(notifier(env_name))
    try:
        with release.sigterm_as_interrupt():
            run = pipeline.promote(settings, ports, display)
    finally:
        for each in notifiers.values():  # bounded: the notifications never hold the promotion past this
            each.flush()
    if json_output:
        print_json(run.to_dict())
        return
    for entry in run.steps:
        state = entry.get("status") or f"would {entry.get('would')}"
        typer.echo(f"{entry['step_key']:<32} {state:<12} {entry.get('detail', '')}")
        if entry.get("command"):
            typer.echo(f"{'':<32} {'':<12} {entry['command']}")
    typer.echo(f"{run.outcome}: {run.reason}")
    sys.stdout.flush()


def register(root: typer.Typer) -> None:
    root.command("promote")(promote)
