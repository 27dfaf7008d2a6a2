"""The rehearsal as the pipeline: ``promote`` run phase by phase against sandboxes playing the real accounts.

Stages, each a rehearsal step with what it expects (two accounts, the default):

1. **sandbox sit**: a sandbox playing SIT's account; this process's AWS SDK points at it;
2. **sit-promotion**: ``promote --env sit --phase sit-promotion`` for ``v1.1.0`` (built once, for Lambda) under
   synthetic traffic; expected: preflight, the terraform plan (or skipped with terraform's reason), the canary
   to 100 %, smoke and status pass;
3. **sit-validation paused**: ``promote --env sit --phase sit-validation`` with no sign-off on record; expected:
   it stops at the first sign-off with exit 5 and the exact ``promoter approve`` command;
4. **sit-validation resumed**: the sign-offs recorded (the rehearsal plays the approvers, under an identity of
   their own: four eyes), ``--resume``; expected: the phase succeeds;
5. **faulty**: ``promote --env sit --phase sit-promotion`` of a release whose configuration injects errors
   (``CHAOS_ERROR_RATE``); expected: the canary analysis rolls it back (exit 3), SIT stays on ``v1.1.0``;
6. **sandbox prod**: a second sandbox, playing PROD's account; the SDK now points there;
7. **prod refuses unproven**: ``promote --env prod`` of an artifact SIT never saw; expected: refused (exit 1),
   nothing recorded in PROD, the alias unchanged;
8. **prod-promotion paused**: ``promote --env prod`` of SIT's artifact; expected: the change request is missing,
   exit 5 (SIT's health was checked first);
9. **prod-promotion resumed**: the change request recorded, ``--resume``; expected: backup, canary, smoke and
   status pass and PROD serves exactly SIT's sha256;
10. **rollback**: ``rollback --to v1.0.0`` in PROD; 11. **evidence**: every pipeline run's pack verifies.

With ``--env ENV`` the phases of that one environment run against one sandbox (for PROD, without SIT's proof
or SIT's checks: stated in the report). The report is the evidence packs' reports, behind a summary.
"""

from __future__ import annotations

import contextlib
import time
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from promoter.engine.ledger import Ledger, new_run_id
from promoter.engine.rehearse import (
    BASELINE_RELEASE,
    FAULTY_RELEASE,
    GOOD_RELEASE,
    Rehearsal,
    RehearsalSettings,
    StepResult,
    _Expectation,
    _infra,
    _process_env,
    _python_of,
    _rollback_figures,
    _stats,
    release_notes,
    sandbox_state_ledger,
)
from promoter.errors import PromoterError, RefusedError, ReleaseFailed, WaitingForApproval
from promoter.plan.models import Plan

REHEARSAL_APPROVER = "promoter rehearse (playing the approvers)"
REHEARSAL_APPROVER_IDENTITY = "rehearsal:approver"  # never the starter's identity: four eyes holds
SOAK_MINUTES = 0.25
SMOKE_BUDGET_MS = 3000.0
# the replay's threshold: above the faulty release's 30 %, and above the highest rate any of its windows showed
# (a few requests early in a window can show more): the replay must not roll it back
REPLAY_ERROR_RATE_PCT = 50.0
FUZZ_EXAMPLES = 5  # the rehearsal's API fuzzing: examples per operation, and a time bound
FUZZ_SECONDS = 20.0
LOAD_RATE = 20.0  # the rehearsal's load test: what two cores serve through the sandbox within the SLA
LOAD_SECONDS = 20.0
LOAD_SPAWN_SECONDS = 3.0
LOAD_METRICS_WAIT = 10.0


def pipeline_rehearsal_plan(plan: Plan, envs: list[str], min_invocations: int) -> tuple[Plan, list[str]]:
    """The plan the rehearsal runs, every change stated: fault injection where the faulty release runs, fewer
    invocations per verdict, a short soak; for a single-environment PROD rehearsal, no passport and no steps
    that look at other environments."""
    notes: list[str] = []
    environments = dict(plan.environments)
    faulty_env = envs[0]
    spec = environments[faulty_env]
    if not spec.allow_chaos:
        environments[faulty_env] = spec.model_copy(update={"allow_chaos": True})
        notes.append(f"fault injection allowed in the sandbox's {faulty_env} (the plan refuses it in the real "
                     f"{faulty_env})")
    for name, env_spec in list(environments.items()):
        passport = env_spec.passport
        if passport is None or name not in envs:
            continue
        if passport.proven_in in envs:
            if passport.min_soak_minutes > SOAK_MINUTES:
                environments[name] = env_spec.model_copy(update={"passport": passport.model_copy(
                    update={"min_soak_minutes": SOAK_MINUTES})})
                notes.append(f"{name} takes an artifact after a {SOAK_MINUTES:g} minute soak in "
                             f"{passport.proven_in} (plan: {passport.min_soak_minutes:g})")
        else:
            environments[name] = env_spec.model_copy(update={"passport": None})
            notes.append(f"{name} rehearsed alone: its passport ({passport.proven_in}'s proof) is not required")
    canary = plan.canary
    if canary.min_invocations > min_invocations:
        canary = canary.model_copy(update={"min_invocations": min_invocations})
        notes.append(f"minimum invocations per verdict {min_invocations} (plan: {plan.canary.min_invocations})")
    smoke = plan.smoke
    if smoke.latency_budget_ms < SMOKE_BUDGET_MS:
        # the smoke requests may meet a new execution environment (the sandbox scales as Lambda does) on a
        # machine that is also running the traffic, both sandboxes and terraform: a cold start, not a regression
        smoke = smoke.model_copy(update={"latency_budget_ms": SMOKE_BUDGET_MS})
        notes.append(f"smoke latency budget {SMOKE_BUDGET_MS:g} ms per request, cold starts included (plan: "
                     f"{plan.smoke.latency_budget_ms:g} ms)")
    security = plan.security
    if security.fuzz_max_examples > FUZZ_EXAMPLES or security.fuzz_max_seconds > FUZZ_SECONDS:
        security = security.model_copy(update={"fuzz_max_examples": min(security.fuzz_max_examples, FUZZ_EXAMPLES),
                                               "fuzz_max_seconds": min(security.fuzz_max_seconds, FUZZ_SECONDS)})
        notes.append(f"API fuzzing bounded to {security.fuzz_max_examples} examples per operation and "
                     f"{security.fuzz_max_seconds:g} s (plan: {plan.security.fuzz_max_examples}, "
                     f"{plan.security.fuzz_max_seconds:g} s)")
    load = plan.load
    if load.spawn_seconds > LOAD_SPAWN_SECONDS or load.metrics_wait_seconds > LOAD_METRICS_WAIT:
        load = load.model_copy(update={"spawn_seconds": min(load.spawn_seconds, LOAD_SPAWN_SECONDS),
                                       "metrics_wait_seconds": min(load.metrics_wait_seconds, LOAD_METRICS_WAIT)})
        notes.append(f"load test at {LOAD_RATE:g} req/s for {LOAD_SECONDS:g} s, users started over "
                     f"{load.spawn_seconds:g} s, CloudWatch awaited {load.metrics_wait_seconds:g} s (plan: "
                     f"{plan.load.requests_per_second:g} req/s for {plan.load.duration_seconds} s; two cores hold "
                     "about 25 req/s through the sandbox with the SLA's p95)")
    phases = []
    for phase in plan.phases:
        steps = [s for s in phase.steps if s.env is None or s.env in envs]
        if len(steps) != len(phase.steps):
            dropped = ", ".join(s.id for s in phase.steps if s not in steps)
            notes.append(f"{phase.id}: steps on environments not rehearsed are left out ({dropped})")
        phases.append(phase.model_copy(update={"steps": steps}))
    return plan.model_copy(update={"environments": environments, "canary": canary, "phases": phases,
                                   "smoke": smoke, "security": security, "load": load}), notes


class RehearsalInfraPlan:
    """The infra-plan step against a sandbox: the rehearsal's own terraform run, in a scratch copy."""

    def __init__(self, settings: RehearsalSettings, base: Path) -> None:
        self.settings, self.base = settings, base

    def probe(self, ctx):
        from promoter.engine.pipeline import Probe

        return Probe("run", "terraform plan in a scratch copy against the sandbox")

    def run(self, ctx):
        from promoter.engine.pipeline import StepOutcome

        scratch = self.base / "terraform" / f"{ctx.env}-{ctx.pipeline_id}"
        scratch.mkdir(parents=True, exist_ok=True)
        detail, data = _infra(replace(self.settings, env=ctx.env), ctx.plan, ctx.ledger, scratch)
        if data.pop("_skipped", False):
            return StepOutcome("skipped", detail)
        outputs = {"plan_sha256": data.get("sha256"), "plan_file": data.get("plan_file")}
        return StepOutcome("passed", detail, outputs, files={"terraform-plan-review.json": data})


class RehearsalInfraApply:
    """The sandbox is not where terraform applies: the reviewed plan is recorded, never applied here."""

    def probe(self, ctx):
        from promoter.engine.pipeline import Probe

        return Probe("skip", "terraform apply is not rehearsed against the sandbox")

    def run(self, ctx):
        from promoter.engine.pipeline import StepOutcome

        sha = ctx.inputs.get("plan_sha256")
        what = f"plan {sha[:12]} was reviewed" if sha else "no plan was made"
        return StepOutcome("skipped", f"{what}; terraform apply is not rehearsed against the sandbox")


def run_pipeline_rehearsal(settings: RehearsalSettings, observer: Callable[[str, Any], None] = lambda _k, _r: None,
                           envs: list[str] | None = None) -> Rehearsal:
    from promoter.sandbox.manager import Sandbox

    envs = envs or ["sit", "prod"]
    started = time.monotonic()
    rid = new_run_id()
    base = Path(settings.home) / "rehearsals" / rid
    ledger = Ledger(base / "ledger")
    plan, notes = pipeline_rehearsal_plan(settings.plan, envs, settings.min_invocations)
    result = Rehearsal(rehearsal_id=rid, env="+".join(envs), adjustments=notes, ledger_dir=str(ledger.root),
                       sandbox_dir=str(base / f"sandbox-{envs[0]}"))
    sandboxes: dict[str, Any] = {}
    ctx: dict[str, Any] = {"pipelines": [], "api": {}, "tokens": {}, "vars": {}, "sandboxes": sandboxes}

    def step(name: str, title: str, expected: str, fn: Callable[[], tuple[str, dict[str, Any]] | None]) -> bool:
        observer("start", StepResult(name, title, "running", expected))
        t0 = time.monotonic()
        outcome, detail, data = "passed", "", {}
        try:
            got = fn()
            if got is not None:
                detail, data = got
        except _Expectation as exc:
            outcome, detail = "failed", str(exc)
        except PromoterError as exc:
            outcome, detail = "failed", f"{type(exc).__name__}: {exc.message}"
        except Exception as exc:  # a rehearsal reports every failure as a step, never a traceback
            outcome, detail = "failed", f"{type(exc).__name__}: {exc}"
        res = StepResult(name, title, outcome, expected, detail, time.monotonic() - t0, data)
        result.steps.append(res)
        observer("done", res)
        return outcome != "failed"

    def up(env: str) -> Callable[[], tuple[str, dict[str, Any]]]:
        def start() -> tuple[str, dict[str, Any]]:
            sandbox = Sandbox.up(plan=settings.plan, env=env, state_dir=base / f"sandbox-{env}",
                                 plan_path=settings.plan_path, repo=settings.repo)
            sandboxes[env] = sandbox
            ctx["vars"][env] = sandbox.env_vars()
            ctx["api"][env] = sandbox.env_vars()["PROMOTER_API_URL"]
            ctx["tokens"][env] = sandbox.token("campaigns-admin")
            return (f"account {plan.environment(env).account_id}: " + ", ".join(
                f"{k}={v}" for k, v in sandbox.endpoints.items()), {"endpoints": sandbox.endpoints})
        return start

    from promoter.sandbox.webhook import WebhookReceiver

    # the team's chat channel: a webhook receiver on loopback, named to the plan's webhook variable
    receiver = ctx["webhook"] = WebhookReceiver().start()
    hooks = contextlib.ExitStack()
    webhook = settings.plan.notifications.webhook
    if webhook is not None and webhook.url_env:
        hooks.enter_context(_process_env({webhook.url_env: receiver.url}))
    try:
        for env in envs:
            if not step(f"sandbox-{env}", f"Sandbox up as {env}", f"a local account playing {env}'s "
                        f"({plan.environment(env).account_id}): moto, Lambda front and API front answer", up(env)):
                return result
            with _process_env(ctx["vars"][env]):
                if env == envs[0] and settings.state_backend == "s3":
                    # the team's shared store: every environment's records in one state bucket
                    ledger = sandbox_state_ledger(sandboxes[env], plan, env, rid, base)
                    result.ledger_dir = ledger.describe(env)
                if not _rehearse_env(settings, plan, ledger, base, env, envs, ctx, step, result, observer):
                    return result
        with _process_env(ctx["vars"][envs[-1]]):
            _rollback(plan, ledger, envs[-1], step, observer)
        step("notifications", "Notifications", "the promotions' events reached the sandbox's SNS topic and the "
             "webhook receiver, none failed", lambda: _notifications(ledger, envs, ctx))
        step("evidence", "Evidence packs", "every pipeline run's pack verifies (hashes, archive, chain)",
             lambda: _verify_all(ledger, ctx["pipelines"]))
    finally:
        hooks.close()
        receiver.stop()
        result.duration_s = time.monotonic() - started
        # the report reads the packs through the ledger, which may live in a sandbox's state bucket: before down
        result.report_path = str(write_pipeline_report(result, ledger, ctx["pipelines"],
                                                       Path(settings.home) / "reports"))
        for sandbox in sandboxes.values():
            if not settings.keep:
                with contextlib.suppress(Exception):
                    sandbox.down()
    return result


def _wiring(plan: Plan, ledger: Ledger, env: str, ctx: dict[str, Any], notes: Callable[[Any], None],
            notifier: Any = None):
    from promoter.adapters.aws import AwsSessionFactory
    from promoter.engine import release
    from promoter.engine.steps import StepWiring

    def aws_for(target: str) -> AwsSessionFactory:
        if target != env:
            raise RefusedError(f"the rehearsal of {env} reaches {target}'s account only through its API")
        return AwsSessionFactory(region=plan.environment(target).region)

    # the validation steps' child processes (the integration suite) reach the sandbox as `sandbox env` points a shell
    sandbox = _sandbox_of(ctx, env)
    suite_env = {env: {**sandbox.env_vars(), "AWS_PROFILE": None}} if sandbox is not None else {}

    def security_tokens(_target: str) -> Any:
        from promoter.sandbox.tokens import SandboxTokens

        return SandboxTokens(sandbox.state_dir)

    def ports_for(target: str) -> Any:
        ports = release.Ports.for_aws(aws_for(target), plan, target, ledger)
        ports.notifier = notifier
        return ports

    return StepWiring(aws_for=aws_for, ports_for=ports_for,
                      api_urls=dict(ctx["api"]), tokens=dict(ctx["tokens"]), preflight_skip=("code", "manual"),
                      release_observer=notes, suite_env=suite_env,
                      security_tokens=security_tokens if sandbox is not None else None)


def _promote(settings: RehearsalSettings, plan: Plan, ledger: Ledger, base: Path, env: str, ctx: dict[str, Any],
             observer, **options: Any):
    """``promoter promote`` as the CLI runs it, over the rehearsal's wiring."""
    from promoter.adapters.aws import AwsSessionFactory
    from promoter.engine import pipeline, steps
    from promoter.engine.approvals import caller_identity
    from promoter.engine.notify import notifier_for, pipeline_notifications
    from promoter.engine.rehearse import release_notes as notes_of

    note = notes_of(lambda message: observer("note", message))
    # the plan's notifications: the sandbox's SNS topic and the rehearsal's webhook receiver
    notifier = notifier_for(plan, env, AwsSessionFactory(region=plan.environment(env).region), ledger)
    wiring = _wiring(plan, ledger, env, ctx, note, notifier)
    ports = steps.pipeline_ports(wiring, ledger, lambda: caller_identity(lambda: wiring.aws_for(env).client("sts")),
                                 plan)
    ports.notify = pipeline_notifications(notifier)
    ops = dict(ports.operations)
    ops["infra-plan"] = RehearsalInfraPlan(settings, base)
    ops["infra-apply"] = RehearsalInfraApply()
    ports.operations = ops
    defaults = {"release": GOOD_RELEASE, "allow_untagged": True, "repo": settings.repo, "out_dir": base / "dist",
                "bake_seconds": settings.bake_seconds, "analysis_interval": settings.analysis_interval,
                "target": "lambda", "load_rate": LOAD_RATE, "load_duration": LOAD_SECONDS,
                "security_max_examples": FUZZ_EXAMPLES}
    ps = pipeline.PromoteSettings(plan=plan, env=env, **{**defaults, **options})

    def on_event(event: Any) -> None:
        d = event.data
        if event.kind == "step-end":
            observer("note", f"{d.get('step_key')}: {d.get('status')}: {str(d.get('detail', ''))[:300]}")
        elif event.kind == "start":
            ctx["pipelines"].append((env, d["pipeline_id"]))

    try:
        return pipeline.promote(ps, ports, on_event)
    finally:
        notifier.flush()


def _rehearse_env(settings, plan, ledger, base, env, envs, ctx, step, result, observer) -> bool:
    from promoter.engine.traffic import SteadyTraffic

    phases = [p.id for p in plan.phases_of(env)]
    traffic = SteadyTraffic(ctx["api"][env], ctx["tokens"][env], rate=settings.traffic_rate, threads=4)
    traffic.start()
    try:
        passport = plan.environment(env).passport
        if passport is not None and passport.proven_in in envs:
            if not step(f"{env}-unproven", f"{env} refuses an unproven artifact", f"refused (exit 1) naming what "
                        f"{passport.proven_in} lacks; nothing recorded in {env}, the alias unchanged",
                        lambda: _unproven(settings, plan, ledger, base, env, ctx, observer)):
                return False
            _await_soak(plan, ledger, env, ctx, observer)
        if env == envs[0]:
            # a control-plane fault: the first alias change is applied and its reply lost; the deploy must
            # recognise the change as its own and carry on
            _sandbox_of(ctx, env).add_fault({"service": "lambda", "operation": "UpdateAlias", "kind": "drop",
                                             "count": 1})
            ctx["fault_injected"] = env
        ok = True
        for phase in phases:
            ok = _phase(settings, plan, ledger, base, env, phase, ctx, step, observer) and ok
            if not ok:
                return False
        if env == envs[0]:
            step("faulty", f"Faulty release {FAULTY_RELEASE} (CHAOS_ERROR_RATE={settings.chaos_error_rate})",
                 "promote fails at the deploy step (exit 3): the canary analysis rolls it back and the alias returns "
                 "to the good release", lambda: _faulty(settings, plan, ledger, base, env, ctx, result, observer))
            step("replay", "Replay of the faulty canary with a looser threshold", f"its recorded observations "
                 f"judged again with error_rate_pct at least {REPLAY_ERROR_RATE_PCT:g} and above the highest rate "
                 "any of its windows showed: it would not have rolled back",
                 lambda: _replay(ledger, env, ctx))
    finally:
        stats = traffic.stop()
        result.figures[f"synthetic_traffic_{env}"] = stats.to_dict()
    return True


def _await_soak(plan: Plan, ledger: Ledger, env: str, ctx: dict[str, Any], observer, *,
                clock: Any = None, timeout: float = 120) -> None:
    """Wait (with a deadline) until the artifact has soaked as long as the rehearsal's plan asks."""
    from datetime import UTC, datetime

    from promoter.engine.ledger import SystemClock
    from promoter.engine.passport import proof_problems

    clock = clock or SystemClock()
    passport = plan.environment(env).passport
    deadline = clock.now() + timeout
    while clock.now() < deadline:
        proof = proof_problems(ledger.records(passport.proven_in), plan=plan, passport=passport,
                               sha=ctx["artifact_sha"], now=datetime.now(UTC))
        if proof.soak_minutes is None or proof.soak_minutes >= passport.min_soak_minutes:
            return
        observer("note", f"soaking in {passport.proven_in}: {proof.soak_minutes:g} of "
                 f"{passport.min_soak_minutes:g} minutes")
        clock.sleep(min(5.0, max(0.1, deadline - clock.now())))


def _phase(settings, plan, ledger, base, env, phase, ctx, step, observer) -> bool:
    manual = [s for s in plan.phase(phase).steps if s.action == "approval"]
    title = plan.phase(phase).title
    if not manual:
        return step(phase, f"{title} ({env})", "every step passes (or is skipped with its reason); the alias "
                    "serves the release at 100 %", lambda: _run_phase(settings, plan, ledger, base, env, phase, ctx,
                                                                    observer))
    first = manual[0]

    def paused():
        try:
            _promote(settings, plan, ledger, base, env, ctx, observer, phase=phase, **_artifact_opt(ctx))
        except WaitingForApproval as exc:
            waiting = (exc.details or {}).get("pipeline", {}).get("waiting_for") or {}
            if waiting.get("step") != f"{phase}/{first.id}" or "promoter approve" not in exc.command:
                raise _Expectation(f"paused at {waiting.get('step')} with {exc.command!r}") from None
            ctx["artifact_sha"] = (exc.details or {})["pipeline"]["artifact_sha256"]
            return (f"exit {int(exc.exit_code)} at {waiting['step']}: {exc.command}",
                    {"exit_code": int(exc.exit_code), "command": exc.command})
        raise _Expectation(f"{phase} did not pause without {first.gate} on record")

    if not step(f"{phase}-paused", f"{title} without its approvals ({env})", f"stops at {first.id} with exit 5 and "
                "the exact promoter approve command", paused):
        return False

    def resumed():
        from promoter.engine.approvals import approval_env
        from promoter.engine.infra import record_gate_approval

        for s in manual:
            record_gate_approval(plan, ledger, env=approval_env(plan, s.gate, env), gate=s.gate,
                                 approver=REHEARSAL_APPROVER, ref=f"REHEARSAL-{s.id}", release=GOOD_RELEASE,
                                 artifact_sha256=ctx["artifact_sha"], identity=REHEARSAL_APPROVER_IDENTITY)
        from promoter.engine.gates import missing_gates

        # rehearsing one environment alone, gates an earlier phase gives (PROD's sit-signoff) are recorded here
        extra = missing_gates(plan, env, GOOD_RELEASE, ledger.records(env, kind="approval"), ctx["artifact_sha"])
        for gate in extra:
            record_gate_approval(plan, ledger, env=env, gate=gate.id, approver=REHEARSAL_APPROVER,
                                 ref=f"REHEARSAL-{gate.id}", release=GOOD_RELEASE,
                                 artifact_sha256=ctx["artifact_sha"], identity=REHEARSAL_APPROVER_IDENTITY)
        also = f"; {', '.join(g.id for g in extra)} recorded too (given by a phase not rehearsed)" if extra else ""
        detail, data = _run_phase(settings, plan, ledger, base, env, phase, ctx, observer, resume=True)
        return f"approvals recorded ({', '.join(s.gate for s in manual)}){also}; --resume: {detail}", data

    return step(f"{phase}-resumed", f"{title}, resumed ({env})", "with the approvals on record, --resume finishes "
                "the phase", resumed)


def _artifact_opt(ctx: dict[str, Any]) -> dict[str, Any]:
    return {"artifact": Path(ctx["artifact_path"])} if ctx.get("artifact_path") else {}


def _run_phase(settings, plan, ledger, base, env, phase, ctx, observer, resume=False):
    run = _promote(settings, plan, ledger, base, env, ctx, observer, phase=phase, resume=resume, **_artifact_opt(ctx))
    if run.outcome != "succeeded":
        raise _Expectation(f"{phase} ended {run.outcome}: {run.reason}")
    ctx["artifact_sha"] = run.artifact_sha256
    deploy = next((s for s in run.steps if s.get("action") == "deploy"), None)
    data: dict[str, Any] = {"pipeline_id": run.pipeline_id, "steps": {s["step_key"]: s["status"] for s in run.steps},
                            "evidence": run.evidence}
    if deploy is not None:
        ctx["artifact_path"] = next(r for r in ledger.records(env, kind="pipeline-start")
                                    if r.get("pipeline_id") == run.pipeline_id)["artifact"]["path"]
        version = (deploy.get("outputs") or {}).get("version")
        python = _python_of(_sandbox_of(ctx, env), version)
        data["python"] = python
        if not python.get("matches_runtime"):
            raise _Expectation(f"version {version} did not run under the runtime's Python: {python}")
        status = next(s for s in run.steps if s.get("action") == "status")
        routes = (status.get("outputs") or {}).get("routes") or []
        if not routes or routes[0].get("sha256") != run.artifact_sha256 or routes[0].get("percent") != 100:
            raise _Expectation(f"{env} does not serve sha256 {run.artifact_sha256[:12]} at 100 %: {routes}")
        data["served_sha256"] = routes[0]["sha256"]
        if ctx.get("fault_injected") == env and not ctx.get("fault_recognised"):
            settled = [r for r in ledger.records(env, kind="alias-change") if r.get("settled")]
            if not settled:
                raise _Expectation("the injected lost UpdateAlias reply was not recognised in the ledger")
            ctx["fault_recognised"] = True
            data["lost_replies_recognised"] = len(settled)
            data["fault"] = (f"the reply to the {settled[0].get('step')} % alias change was dropped (injected) and "
                             "recognised as applied")
        proven = ctx.setdefault("first_deployed_sha256", run.artifact_sha256)
        if run.artifact_sha256 != proven:
            raise _Expectation(f"{env} deployed sha256 {run.artifact_sha256[:12]}, not the {proven[:12]} the first "
                               "environment proved")
    detail = (f"pipeline {run.pipeline_id}: " + ", ".join(f"{k.split('/')[1]} {v}" for k, v in data["steps"].items())
              + f"; artifact sha256 {run.artifact_sha256[:12]}" + (f"; {data['fault']}" if data.get("fault") else ""))
    return detail, data


def _sandbox_of(ctx: dict[str, Any], env: str) -> Any:
    return ctx.get("sandboxes", {}).get(env)


def _faulty(settings, plan, ledger, base, env, ctx, result, observer):
    from promoter.adapters.aws import AwsSessionFactory
    from promoter.engine import release

    api = ctx["api"][env]
    ports = release.Ports.for_aws(AwsSessionFactory(region=plan.environment(env).region), plan, env, ledger)
    stable = ports.router.read().version
    phase = next(p.id for p in plan.phases_of(env) if any(s.action == "deploy" for s in p.steps))
    # the fault is on requests through the alias only (CHAOS_VIA): a release that passes its pre-traffic gate and
    # fails its users from their first request, which only the canary analysis can catch
    chaos = {"CHAOS_ERROR_RATE": str(settings.chaos_error_rate), "CHAOS_VIA": plan.names(env).alias}
    _approve_release(plan, ledger, env, phase, FAULTY_RELEASE, ctx["artifact_sha"])  # approved, and still caught
    before = _stats(api)
    try:
        run = _promote(settings, plan, ledger, base, env, ctx, observer, phase=phase, release=FAULTY_RELEASE,
                       bake_seconds=settings.bake_seconds * 3, env_vars=chaos, **_artifact_opt(ctx))
    except ReleaseFailed as exc:
        details = exc.details or {}
        reason, deploy_run = exc.message, (details.get("run") or {}).get("run_id")
        pipeline_run = details.get("pipeline") or {}
    else:
        raise _Expectation(f"the faulty release was not rolled back: promote ended {run.outcome}")
    after = _stats(api)
    alias = ports.router.read()
    if alias.version != stable or alias.weights:
        raise _Expectation(f"alias is on {alias.version} {alias.weights}, expected {stable} at 100 %")
    shifted = [r for r in ledger.records(env, kind="alias-change", run_id=deploy_run)
               if (r.get("after") or {}).get("weights")]
    if not shifted:
        raise _Expectation(f"no traffic reached the faulty release: {reason}")
    faulty_version = next(iter(shifted[0]["after"]["weights"]))
    figures = _rollback_figures(ledger, env, deploy_run, faulty_version, before, after)
    result.figures.update(figures)
    failed = [s["step_key"] for s in pipeline_run.get("steps", []) if s.get("status") == "failed"]
    detail = (f"pipeline {pipeline_run.get('pipeline_id')} failed at {', '.join(failed)} (exit 3): "
              f"{reason.splitlines()[0]}; faulty version {faulty_version} served "
              f"{figures.get('faulty_requests_served')} requests; back on stable "
              f"{figures.get('first_faulty_request_to_stable_s')} s after its first request")
    ctx["faulty_deploy_run"] = deploy_run
    return detail, {"faulty_version": faulty_version, "pipeline_id": pipeline_run.get("pipeline_id"),
                    "deploy_run": deploy_run, **figures}


def _replay(ledger: Ledger, env: str, ctx: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The faulty canary's recorded observations judged again with a threshold above its error rate."""
    from promoter.engine.replay import highest_canary_error_pct, parse_overrides, replay_records, threshold_above

    run_id = ctx.get("faulty_deploy_run")
    if not run_id:
        raise _Expectation("no faulty deploy run to replay")
    records = ledger.records(env)
    highest = highest_canary_error_pct(records, run_id)
    looser = threshold_above(highest, REPLAY_ERROR_RATE_PCT)
    overrides = parse_overrides([f"error_rate_pct={looser:g}"])
    replayed = replay_records(records, run_id, env, overrides)
    if not replayed.rolled_back or replayed.comparison != "never":
        raise _Expectation(f"replay of {run_id} with error_rate_pct={looser:g}: "
                           f"{replayed.comparison}: {replayed.text()}")
    shown = f"; its windows showed at most {highest:.1f} %" if highest is not None else ""
    return (f"promoter replay {run_id} --threshold error_rate_pct={looser:g}: {replayed.text()} "
            f"({len(replayed.intervals)} intervals re-judged, no AWS call{shown})",
            {**replayed.to_dict(), "highest_canary_error_pct": highest})


def _notifications(ledger: Ledger, envs: list[str], ctx: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """What the plan's notification targets got: the sandbox's SNS topic and the loopback webhook."""
    deliveries = [r for env in envs for r in ledger.records(env, kind="notification")]
    by_target: dict[str, dict[str, int]] = {}
    for d in deliveries:
        counts = by_target.setdefault(str(d.get("target")), {"delivered": 0, "failed": 0})
        counts["delivered" if d.get("ok") else "failed"] += 1
    events = sorted({str(d.get("event")) for d in deliveries if d.get("ok")})
    received = len(ctx["webhook"].messages) if ctx.get("webhook") else 0
    data = {"by_target": by_target, "events": events, "webhook_received": received}
    missing = [e for e in ("promotion-started", "waiting-approval", "rolled-back") if e not in events]
    if missing or not by_target.get("sns", {}).get("delivered") or not by_target.get("webhook", {}).get("delivered"):
        raise _Expectation(f"notifications: {by_target}; events delivered {events}; missing {missing}")
    failed = sum(c["failed"] for c in by_target.values())
    if failed or received != by_target["webhook"]["delivered"]:
        raise _Expectation(f"{failed} deliveries failed; the webhook received {received} of "
                           f"{by_target['webhook']['delivered']} recorded as delivered")
    return (f"{by_target['sns']['delivered']} to SNS, {by_target['webhook']['delivered']} to the webhook (received "
            f"{received}), none failed; events: {', '.join(events)}", data)


def _approve_release(plan: Plan, ledger: Ledger, env: str, phase: str, release: str, sha: str) -> list[str]:
    """The rehearsal plays the approvers: every approval the phase and the deploy to ``env`` wait for."""
    from promoter.engine.approvals import approval_env
    from promoter.engine.gates import missing_gates
    from promoter.engine.infra import record_gate_approval

    gates = [s.gate for s in plan.phase(phase).steps if s.action == "approval"]
    gates += [g.id for g in missing_gates(plan, env, release, ledger.records(env, kind="approval"), sha)
              if g.id not in gates]
    for gate in gates:
        record_gate_approval(plan, ledger, env=approval_env(plan, gate, env), gate=gate, approver=REHEARSAL_APPROVER,
                             ref=f"REHEARSAL-{gate}", release=release, artifact_sha256=sha,
                             identity=REHEARSAL_APPROVER_IDENTITY)
    return gates


def _unproven(settings, plan, ledger, base, env, ctx, observer):
    """An artifact SIT never saw (the good one, rebuilt with one more file) must not get into PROD."""
    from promoter.adapters.aws import AwsSessionFactory
    from promoter.engine import release

    source = Path(ctx["artifact_path"])
    unproven = base / "dist" / "campaigns_lambda-unproven.zip"
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(unproven, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info, zin.read(info))
        zout.writestr("campaigns_lambda/REBUILT", "a build SIT never deployed\n")
    ports = release.Ports.for_aws(AwsSessionFactory(region=plan.environment(env).region), plan, env, ledger)
    before = ports.router.read()
    try:
        _promote(settings, plan, ledger, base, env, ctx, observer, artifact=unproven)
    except RefusedError as exc:
        message, code = exc.message, int(exc.exit_code)
    else:
        raise _Expectation("PROD accepted an artifact SIT never proved")
    if "accepts only an artifact" not in message or code != 1:
        raise _Expectation(f"refused for another reason (exit {code}): {message}")
    recorded = [r for r in ledger.records(env) if r["kind"].startswith("pipeline-")]
    after = ports.router.read()
    if recorded or not after.same_routing(before):
        raise _Expectation(f"something changed in {env}: {len(recorded)} pipeline records, alias {after.describe()}")
    return f"exit 1: {message}", {"message": message}


def _rollback(plan, ledger, env, step, observer) -> None:
    from promoter.adapters.aws import AwsSessionFactory
    from promoter.engine import release

    def rollback():
        ports = release.Ports.for_aws(AwsSessionFactory(region=plan.environment(env).region), plan, env, ledger)
        record = release.rollback_to(release.RollbackSettings(plan=plan, env=env, to=BASELINE_RELEASE), ports,
                                     release_notes(lambda m: observer("note", m)))
        alias = ports.router.read()
        if alias.weights or alias.version != "1":
            raise _Expectation(f"alias is on {alias.version} {alias.weights}, expected version 1 at 100 %")
        return f"alias {plan.names(env).alias} on version {alias.version} ({BASELINE_RELEASE})", {
            "run_id": record.run_id, "outcome": record.outcome}

    step("rollback", f"Rollback to {BASELINE_RELEASE} ({env})", "alias on version 1 at 100 %", rollback)


def _verify_all(ledger: Ledger, pipelines: list[tuple[str, str]]):
    from promoter.engine.evidence import verify_pack

    verified = []
    for env, pipeline_id in dict.fromkeys(pipelines):
        result = verify_pack(ledger, pipeline_id, env)
        verified.append({"env": env, "pipeline_id": pipeline_id, "files": result["files"],
                         "archive": result["archive"]})
    if not verified:
        raise _Expectation("no pipeline run wrote an evidence pack")
    return (f"{len(verified)} packs verify: " + ", ".join(f"{v['pipeline_id']} ({v['env']}, {v['files']} files)"
                                                          for v in verified), {"packs": verified})


def write_pipeline_report(result: Rehearsal, ledger: Ledger, pipelines: list[tuple[str, str]], reports: Path) -> Path:
    """The rehearsal's summary, then each pipeline run's evidence report."""
    from promoter.engine.evidence import find_pack
    from promoter.engine.rehearse import write_report

    path = write_report(result, reports)
    sections = []
    for env, pipeline_id in dict.fromkeys(pipelines):
        try:
            pack = find_pack(ledger, pipeline_id, env)
        except PromoterError:
            continue
        folder = Path(pack["folder"])
        body = (folder / "report.md").read_text(encoding="utf-8").replace("\n# ", "\n## ").lstrip("# ")
        sections.append(f"\n## {body}\nEvidence: `{folder}` (`{pack['archive']}`), page `{folder / 'report.html'}`\n")
    with path.open("a", encoding="utf-8") as fh:
        fh.write("\n# Evidence packs\n" + "".join(sections))
    return path
