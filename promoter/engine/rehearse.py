"""The rehearsal: the whole promotion, offline, against a fresh sandbox, with every expectation checked.

Stages (each recorded with its outcome, duration and what was expected):

1. **sandbox**: start a sandbox for the environment (its own state directory), point this process's AWS SDK
   at it through the standard variables (``AWS_ENDPOINT_URL``...), exactly as ``eval "$(promoter sandbox
   env)"`` does for a shell;
2. **preflight**: every AWS check of the environment passes (the git checks are left out: a rehearsal runs
   on any checkout);
3. **infra**: ``terraform init`` / plan / review of the service's configuration against the sandbox, when a
   terraform with the AWS provider can be initialised here; otherwise *skipped*, with terraform's reason;
4. **build**: the current code as ``v1.1.0`` for the host interpreter (the sandbox runs it);
5. **deploy**: ``v1.1.0`` through the plan's canary steps (bake times compressed) under steady synthetic
   traffic; expected: it reaches 100 %;
6. **smoke**: the runbook's smoke tests through the API; expected: all pass;
7. **faulty**: a release with ``CHAOS_ERROR_RATE`` set; expected: the canary analysis fails it and the
   alias is back on ``v1.1.0``; measured: time from the faulty version's first request to the alias back on
   stable, and how many requests the faulty version served;
8. **rollback**: ``rollback --to v1.0.0``; expected: the alias serves version 1 at 100 %;
9. **status**: the alias and the recorded runs.

The rehearsal's records go to their own ledger (``<home>/rehearsals/<id>/``), never to the environment's
real ledger; the markdown report lands in ``<home>/reports/``. It uses the same engine entry points as the
commands; the sandbox is only an endpoint. Fault injection is refused by the plan in production, so the
rehearsal runs on a copy of the plan that allows it (the sandbox is not production) and that asks for
fewer invocations per verdict (the synthetic traffic is small); both changes are listed in the report.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from promoter.engine.ledger import Ledger, default_home, new_run_id
from promoter.errors import PromoterError, ReleaseFailed
from promoter.plan.models import Plan

GOOD_RELEASE = "v1.1.0"
FAULTY_RELEASE = "v1.2.0-faulty"
BASELINE_RELEASE = "v1.0.0"


@dataclass(frozen=True)
class RehearsalSettings:
    plan: Plan
    plan_path: Path
    env: str = "sit"
    keep: bool = False
    bake_seconds: float = 8.0
    analysis_interval: float = 2.0
    min_invocations: int = 10
    traffic_rate: float = 30.0
    chaos_error_rate: float = 0.3
    home: Path = field(default_factory=default_home)
    terraform_timeout: float = 120.0
    state_backend: str = "s3"  # the sandbox's seeded state bucket, as a team would share; "local": a directory


@dataclass
class StepResult:
    name: str
    title: str
    outcome: str  # passed | failed | skipped
    expected: str
    detail: str = ""
    duration_s: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "title": self.title, "outcome": self.outcome, "expected": self.expected,
            "detail": self.detail, "duration_s": round(self.duration_s, 2), "data": self.data,
        }


@dataclass
class Rehearsal:
    rehearsal_id: str
    env: str
    steps: list[StepResult] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    adjustments: list[str] = field(default_factory=list)
    report_path: str | None = None
    ledger_dir: str | None = None
    sandbox_dir: str | None = None
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.outcome in {"passed", "skipped"} for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rehearsal_id": self.rehearsal_id, "env": self.env, "ok": self.ok,
            "duration_s": round(self.duration_s, 1), "steps": [s.to_dict() for s in self.steps],
            "figures": self.figures, "adjustments": self.adjustments, "report": self.report_path,
            "ledger_dir": self.ledger_dir, "sandbox_dir": self.sandbox_dir,
        }


# ("start", step) when a step begins, ("note", message) while it runs, ("done", step) when it ended
Observer = Callable[[str, Any], None]


class _Expectation(Exception):
    """A step ran but did not do what the rehearsal expects."""


def rehearsal_plan(plan: Plan, env: str, min_invocations: int) -> tuple[Plan, list[str]]:
    """The plan the rehearsal runs: the real one, with the two changes a sandbox needs, stated."""
    notes = []
    spec = plan.environment(env)
    environments = dict(plan.environments)
    if not spec.allow_chaos:
        environments[env] = spec.model_copy(update={"allow_chaos": True})
        notes.append(f"fault injection allowed in the sandbox's {env} (the plan refuses it in the real {env})")
    canary = plan.canary
    if canary.min_invocations > min_invocations:
        canary = canary.model_copy(update={"min_invocations": min_invocations})
        notes.append(f"minimum invocations per verdict {min_invocations} (plan: {plan.canary.min_invocations})")
    return plan.model_copy(update={"environments": environments, "canary": canary}), notes


@contextlib.contextmanager
def _process_env(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in [*values, "AWS_PROFILE"]}
    os.environ.pop("AWS_PROFILE", None)
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_rehearsal(settings: RehearsalSettings, observer: Observer = lambda _k, _r: None) -> Rehearsal:
    from promoter.sandbox.manager import Sandbox

    started = time.monotonic()
    rid = new_run_id()
    base = Path(settings.home) / "rehearsals" / rid
    ledger = Ledger(base / "ledger")
    state_dir = base / "sandbox"
    plan, notes = rehearsal_plan(settings.plan, settings.env, settings.min_invocations)
    result = Rehearsal(rehearsal_id=rid, env=settings.env, adjustments=notes, ledger_dir=str(ledger.root),
                       sandbox_dir=str(state_dir))
    ctx: dict[str, Any] = {}

    def step(name: str, title: str, expected: str, fn: Callable[[], tuple[str, dict[str, Any]] | None]) -> bool:
        observer("start", StepResult(name, title, "running", expected))
        t0 = time.monotonic()
        outcome, detail, data = "passed", "", {}
        try:
            got = fn()
            if got is not None:
                detail, data = got
            if data.pop("_skipped", False):
                outcome = "skipped"
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

    sandbox: Sandbox | None = None
    try:
        def up() -> tuple[str, dict[str, Any]]:
            nonlocal sandbox
            sandbox = Sandbox.up(plan=settings.plan, env=settings.env, state_dir=state_dir,
                                 plan_path=settings.plan_path)
            ctx["env_vars"] = sandbox.env_vars()
            ctx["token"] = sandbox.token("campaigns-admin")
            ctx["sandbox"] = sandbox
            return "endpoints " + ", ".join(f"{k}={v}" for k, v in sandbox.endpoints.items()), {
                "endpoints": sandbox.endpoints}

        if not step("sandbox", f"Sandbox up as {settings.env}", "moto, Lambda front and API front answer", up):
            return result
        with _process_env(ctx["env_vars"]):
            if settings.state_backend == "s3":
                ledger = _sandbox_state_ledger(ctx["sandbox"], plan, settings.env, rid, base)
                result.ledger_dir = ledger.describe(settings.env)
            _run_steps(settings, plan, ledger, ctx, step, result, base, observer)
    finally:
        if sandbox is not None and not settings.keep:
            with contextlib.suppress(Exception):
                sandbox.down()
        result.duration_s = time.monotonic() - started
        result.report_path = str(write_report(result, Path(settings.home) / "reports"))
    return result


def _sandbox_state_ledger(sandbox: Any, plan: Plan, env: str, rid: str, base: Path) -> Ledger:
    """The rehearsal's ledger in the sandbox's state bucket (under ``rehearsals/<id>``), through the same S3 state
    store a team uses; the sandbox is only its endpoint."""
    import boto3

    from promoter.adapters.state_s3 import s3_store_from_url

    url = sandbox.state["seed"]["state_url"].rstrip("/") + f"/rehearsals/{rid}"
    session = boto3.Session(region_name=plan.environment(env).region)
    return Ledger(base / "ledger", store=s3_store_from_url(url, session))


def release_notes(note: Callable[[str], None]) -> Callable[[Any], None]:
    """Turn the release engine's events into one-line notes: shifts, verdicts, the gate, rollbacks."""

    def on_event(event: Any) -> None:
        data = event.data
        if event.kind == "shift":
            alias = data.get("alias") or {}
            extra = "".join(f", {w * 100:g} % on version {v}" for v, w in (alias.get("weights") or {}).items())
            note(f"alias on version {alias.get('version')}{extra}")
        elif event.kind == "verdict":
            canary = (data.get("observation") or {}).get("canary") or {}
            note(f"{data.get('step')} %: {data.get('outcome')} -> {data.get('action')} "
                 f"({canary.get('invocations', 0):g} invocations, error rate {canary.get('error_rate_pct')} %, "
                 f"p95 {canary.get('p95_ms')} ms)")
        elif event.kind == "gate":
            note(f"pre-traffic gate on version {data.get('version')}: {'passed' if data.get('ok') else 'FAILED'}")
        elif event.kind == "rollback":
            note(f"rolling back to version {data.get('to')}: {data.get('reason')}")

    return on_event


def _run_steps(settings, plan, ledger, ctx, step, result, base, observer) -> None:
    from promoter.adapters.aws import AwsSessionFactory
    from promoter.adapters.http import HttpClient
    from promoter.engine import release
    from promoter.engine.build import build
    from promoter.engine.gates import blocking_gates
    from promoter.engine.infra import record_gate_approval
    from promoter.engine.preflight import PreflightContext, Status, checklist, run_checks, select_checks
    from promoter.engine.smoke import run_smoke
    from promoter.engine.smoke_requests import smoke_requests
    from promoter.engine.traffic import SteadyTraffic

    env = settings.env
    spec = plan.environment(env)
    aws = AwsSessionFactory(region=spec.region)
    notes = release_notes(lambda message: observer("note", message))
    api_url = ctx["env_vars"]["PROMOTER_API_URL"]

    def preflight():
        checks = select_checks(checklist(plan, env), skip=["code", "manual"])
        report = run_checks(checks, PreflightContext(plan=plan, env=env, aws=aws))
        failed = [r for r in report.results if r.status == Status.FAIL]
        data = {"checks": len(report.results), "failed": [r.id for r in failed]}
        if not report.ok:
            raise _Expectation("preflight blockers failed: " + ", ".join(f"{r.id} ({r.evidence})" for r in failed))
        return f"{len(report.results)} checks, no blocker failed", data

    step("preflight", "Preflight", "every AWS check passes (git checks left out)", preflight)

    step("infra", "Terraform plan and review", "a reviewed plan with no destructive change, or skipped with "
         "the reason", lambda: _infra(settings, plan, ledger, base))

    def do_build():
        artifact = build(release=GOOD_RELEASE, target="local", out_dir=base / "dist")
        ctx["artifact"] = artifact
        return f"{Path(artifact.path).name}, {artifact.size} bytes, sha256 {artifact.sha256[:12]}", artifact.to_dict()

    if not step("build", f"Build {GOOD_RELEASE}", "a reproducible zip", do_build):
        return

    def approvals():
        gates = blocking_gates(plan, env)
        if not gates:
            return f"no gate of the plan blocks a deploy to {env}", {"_skipped": True}
        recorded = []
        for gate in gates:
            for tag in (GOOD_RELEASE, FAULTY_RELEASE):
                record_gate_approval(plan, ledger, env=env, gate=gate.id, approver="promoter rehearse",
                                     ref="REHEARSAL" if gate.kind == "change-request" else None, release=tag)
            recorded.append(gate.id)
        return (f"recorded {', '.join(recorded)} for {GOOD_RELEASE} and {FAULTY_RELEASE} in the rehearsal's "
                "ledger (approver: promoter rehearse)", {"gates": recorded})

    step("approvals", "Release gates", "the plan's sign-offs recorded before the deploys (a rehearsal signs "
         "its own)", approvals)

    ports = release.Ports.for_aws(aws, plan, env, ledger)
    traffic = SteadyTraffic(api_url, ctx["token"], rate=settings.traffic_rate, threads=4)
    traffic.start()
    try:
        def deploy_good():
            ds = release.DeploySettings(
                plan=plan, env=env, release=GOOD_RELEASE, canary=True, bake_seconds=settings.bake_seconds,
                analysis_interval=settings.analysis_interval, artifact=Path(ctx["artifact"].path), target="local",
                allow_untagged=True, out_dir=base / "dist",
            )
            # a control-plane fault: the first alias change is applied and its reply lost
            ctx["sandbox"].add_fault({"service": "lambda", "operation": "UpdateAlias", "kind": "drop", "count": 1})
            record = release.deploy(ds, ports, notes)
            alias = ports.router.read()
            ctx["good_version"] = record.candidate_version
            settled = [c["step"] for c in record.alias_changes if c.get("settled")]
            data = {"run_id": record.run_id, "outcome": record.outcome, "version": record.candidate_version,
                    "verdicts": len(record.verdicts), "lost_replies_recognised": settled}
            if record.outcome != "succeeded":
                raise _Expectation(f"deploy ended {record.outcome}: {record.reason}")
            if alias.version != record.candidate_version or alias.weights:
                raise _Expectation(f"alias is on {alias.version} with {alias.weights}, not 100 % on the new version")
            if not settled:
                raise _Expectation("the injected lost UpdateAlias reply was not recognised in the ledger")
            steps = "/".join(str(s.weight) for s in release.plan_steps(plan, env, canary=True, bake_seconds=None))
            return (f"version {record.candidate_version} through {steps} %, {len(record.verdicts)} verdicts; the "
                    f"reply to the {settled[0]} % alias change was dropped (injected) and recognised as applied",
                    data)

        deployed = step("deploy", f"Canary deploy {GOOD_RELEASE}", "reaches 100 % with every verdict passing, "
                        "through a lost UpdateAlias reply", deploy_good)

        def smoke():
            client = HttpClient(api_url, token=ctx["token"], timeout=15)
            try:
                report = run_smoke(plan, env, client)
            finally:
                client.close()
            data = report.to_dict()
            if not report.ok:
                bad = [f"{t['name']}: {'; '.join(t['problems'])}" for t in data["tests"] if not t["ok"]]
                raise _Expectation("smoke failures: " + " | ".join(bad + data["skipped"]))
            return f"{data['passed']} requests passed", {"tests": data["tests"]}

        if deployed:
            step("smoke", "Smoke tests", "all pass against the new release", smoke)

        # the fault starts after the pre-traffic gate's requests: a release that passes its smoke checks and
        # fails under user traffic, which only the canary analysis can catch
        chaos_start_after = len(smoke_requests(plan)) + 3

        def faulty():
            before = _stats(api_url)
            ds = release.DeploySettings(
                plan=plan, env=env, release=FAULTY_RELEASE, canary=True, bake_seconds=settings.bake_seconds * 3,
                analysis_interval=settings.analysis_interval, artifact=None, target="local", allow_untagged=True,
                env_vars={"CHAOS_ERROR_RATE": str(settings.chaos_error_rate),
                          "CHAOS_START_AFTER": str(chaos_start_after)},
                out_dir=base / "dist",
            )
            stable = ports.router.read().version
            try:
                record = release.deploy(ds, ports, notes)
            except ReleaseFailed as exc:
                reason = exc.message
            else:
                raise _Expectation(f"the faulty release was not rolled back: deploy ended {record.outcome}")
            after = _stats(api_url)
            alias = ports.router.read()
            if alias.version != stable or alias.weights:
                raise _Expectation(f"alias is on {alias.version} {alias.weights}, expected {stable} at 100 %")
            run_id = ledger.runs(env)[-1]["run_id"]
            shifted = [r for r in ledger.records(env, kind="alias-change", run_id=run_id)
                       if (r.get("after") or {}).get("weights")]
            if not shifted:
                raise _Expectation(f"no traffic reached the faulty release: {reason}")
            faulty_version = next(iter(shifted[0]["after"]["weights"]))
            figures = _rollback_figures(ledger, env, run_id, faulty_version, before, after)
            result.figures.update(figures)
            detail = (f"rolled back: {reason.splitlines()[0]}; faulty version {faulty_version} served "
                      f"{figures.get('faulty_requests_served')} requests; back on stable "
                      f"{figures.get('first_faulty_request_to_stable_s')} s after its first request")
            return detail, {"faulty_version": faulty_version, **figures}

        if deployed:
            step("faulty", f"Faulty release {FAULTY_RELEASE} (CHAOS_ERROR_RATE={settings.chaos_error_rate})",
                 "the canary analysis fails it at the first step and the alias returns to stable", faulty)
    finally:
        stats = traffic.stop()
        result.figures["synthetic_traffic"] = stats.to_dict()

    def rollback():
        rs = release.RollbackSettings(plan=plan, env=env, to=BASELINE_RELEASE)
        record = release.rollback_to(rs, ports, notes)
        alias = ports.router.read()
        if alias.weights or alias.version != "1":
            raise _Expectation(f"alias is on {alias.version} {alias.weights}, expected version 1 at 100 %")
        return f"alias {plan.names(env).alias} on version {alias.version} ({BASELINE_RELEASE})", {
            "run_id": record.run_id, "outcome": record.outcome}

    step("rollback", f"Rollback to {BASELINE_RELEASE}", "alias on version 1 at 100 %", rollback)

    def status():
        data = release.status(plan, env, ports)
        routes = ", ".join(f"version {r['version']} ({r['release']}) {r['percent']:g} %" for r in data["routes"])
        outcomes = ", ".join(str(r.get("outcome")) for r in data.get("runs", []))
        return f"alias {data['alias']}: {routes}; runs: {outcomes}", {"status": data}

    step("status", "Status", "the alias and the recorded runs", status)


def _stats(api_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(api_url + "/__sandbox/stats", timeout=5) as resp:
        return json.loads(resp.read())


def _rollback_figures(ledger: Ledger, env: str, run_id: str, version: str | None, before: dict, after: dict) -> dict:
    """Time from the faulty version's first request to the alias back on stable, and requests it served."""
    figures: dict[str, Any] = {}
    if version is None:
        return figures
    served = after.get("versions", {}).get(version, 0) - before.get("versions", {}).get(version, 0)
    figures["faulty_requests_served"] = served
    first = (after.get("first_seen") or {}).get(version)
    changes = ledger.records(env, kind="alias-change", run_id=run_id)
    back = next((r for r in reversed(changes) if (r.get("after") or {}).get("version") != version
                 and not (r.get("after") or {}).get("weights")), None)
    if first and back:
        back_at = datetime.fromisoformat(back["ts"].replace("Z", "+00:00")).timestamp()
        figures["first_faulty_request_to_stable_s"] = round(back_at - float(first), 2)
    return figures


def _infra(settings: RehearsalSettings, plan: Plan, ledger: Ledger, base: Path):
    """Plan the real configuration against the sandbox, in a scratch copy with a local backend."""
    from promoter.adapters.terraform import TerraformCli, find_terraform
    from promoter.engine.infra import InfraSettings, plan_infra, resolve_directory
    from promoter.errors import TerraformError

    if not find_terraform():
        return "terraform is not installed", {"_skipped": True}
    source = resolve_directory(Path(plan.terraform.directory))
    work = base / "terraform"
    shutil.copytree(source, work, ignore=shutil.ignore_patterns(".terraform", "*.tfplan", "terraform.tfstate*"))
    # the backend of the real accounts is S3; the rehearsal's state stays in its scratch copy
    (work / "backend_override.tf").write_text('terraform {\n  backend "local" {}\n}\n')
    output: list[str] = []
    runner = TerraformCli(work, min_version=plan.terraform.min_version, echo=output.append)
    try:
        runner.init(None)
    except TerraformError:
        return f"terraform {runner.version()} cannot install the providers: {init_failure_reason(output)}", {
            "_skipped": True}
    infra_settings = InfraSettings.from_plan(plan, settings.env, directory=work)
    outcome = plan_infra(infra_settings, runner, ledger, create_workspace=True)
    review = outcome.review
    if review.blocked:
        raise _Expectation("the review blocks the plan: " + ", ".join(c.address for c in review.blockers))
    return f"plan {outcome.sha256[:12]} reviewed: {review.summary()}", outcome.to_dict()


def init_failure_reason(output: list[str]) -> str:
    """The sentence of ``terraform init`` output that says why it failed, unwrapped."""
    text = " ".join(" ".join(output).split())
    match = re.search(r"Error: (.+?)(?: To see | ╵|$)", text)
    if not match:
        return text[-300:] or "terraform init failed"
    return match.group(1).strip()[:400]


def write_report(result: Rehearsal, reports: Path) -> Path:
    reports.mkdir(parents=True, exist_ok=True)
    path = reports / f"rehearsal-{result.env}-{result.rehearsal_id}.md"
    lines = [
        f"# Rehearsal {result.rehearsal_id} ({result.env})",
        "",
        f"Outcome: **{'every expectation held' if result.ok else 'FAILED'}** in {result.duration_s:.1f} s, on "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}.",
        "",
        "| step | outcome | duration | expected | what happened |",
        "|---|---|---:|---|---|",
    ]
    for s in result.steps:
        detail = s.detail.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {s.title} | {s.outcome} | {s.duration_s:.1f} s | {s.expected} | {detail} |")
    figures = result.figures
    lines += ["", "## Figures", ""]
    if "first_faulty_request_to_stable_s" in figures:
        lines.append(f"- Faulty version's first request to the alias back on stable: "
                     f"{figures['first_faulty_request_to_stable_s']} s")
    if "faulty_requests_served" in figures:
        lines.append(f"- Requests the faulty version served: {figures['faulty_requests_served']}")
    traffic = figures.get("synthetic_traffic")
    if traffic:
        lines.append(f"- Synthetic traffic: {traffic['sent']} requests, by status {traffic['by_status']}, "
                     f"by release {traffic['by_release']}")
    if result.adjustments:
        lines += ["", "## How the rehearsal's plan differs from the real one", ""]
        lines += [f"- {note}" for note in result.adjustments]
    lines += ["", f"Ledger of this rehearsal: `{result.ledger_dir}`", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
