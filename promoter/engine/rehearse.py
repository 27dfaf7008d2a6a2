"""The rehearsal's shared parts: its settings and results, the report, terraform against a sandbox, and the
release events as notes.

The rehearsal itself is the promotion pipeline run over sandboxes (:mod:`promoter.engine.rehearse_pipeline`):
``promote`` for SIT's phases in a sandbox playing SIT's account, then for PROD's phase in a second sandbox
playing PROD's, with the faulty release rolled back by the canary, PROD refusing an unproven artifact and a
missing approval pausing the pipeline until ``--resume``.

The rehearsal's records go to their own ledger (``<home>/rehearsals/<id>/``), never to the environment's
real ledger; the markdown report lands in ``<home>/reports/``. It uses the same engine entry points as the
commands; the sandbox is only an endpoint. The rehearsal runs on a copy of the plan with the changes a
sandbox needs (fault injection allowed where the faulty release runs, fewer invocations per verdict, a short
soak), every change listed in the report.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from promoter.adapters.git import find_repository
from promoter.engine.ledger import Ledger, default_home
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
    repo: Path | None = None  # the checkout rehearsed; default: the working directory's
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


def run_rehearsal(settings: RehearsalSettings, observer: Observer = lambda _k, _r: None,
                  envs: list[str] | None = None) -> Rehearsal:
    """The rehearsal is the pipeline over sandboxes: see :mod:`promoter.engine.rehearse_pipeline`."""
    from promoter.engine.rehearse_pipeline import run_pipeline_rehearsal

    return run_pipeline_rehearsal(settings, observer, envs)


def sandbox_state_ledger(sandbox: Any, plan: Plan, env: str, rid: str, base: Path) -> Ledger:
    """The rehearsal's ledger in the sandbox's state bucket (under ``rehearsals/<id>``), through the same S3 state
    store a team uses; the sandbox is only its endpoint. Its client is made now, while this process's SDK points
    at that sandbox, so it keeps that endpoint when later phases point the SDK at another account's sandbox."""
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


def _python_of(sandbox: Any, version: str | None) -> dict[str, Any]:
    """The interpreter the sandbox ran ``version`` under, from its own status."""
    if sandbox is None or version is None:
        return {"error": "no sandbox status"}
    function = sandbox.status().get("function", {})
    for entry in function.get("versions", []):
        if entry.get("version") == version:
            return entry.get("python") or {"error": "not reported"}
    return {"error": f"version {version} not in the sandbox's status"}


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
    """Plan and review the real configuration in a scratch copy whose state stays local, with the offline
    stand-ins for the aws and archive providers (``tools/tfstandin``): Terraform checks every argument against
    the real schema and plans the creates; no account is read."""
    from promoter.adapters.terraform import TerraformCli, standin_toolchain
    from promoter.engine.infra import InfraSettings, plan_infra
    from promoter.errors import TerraformError

    repo = settings.repo or find_repository()
    toolchain = standin_toolchain(repo, repo / ".promoter" / "tfstandin")
    # the copy's settings carry no -backend-config: its backend is local, and a local backend refuses S3's
    infra = InfraSettings.from_plan(plan, settings.env, repo=repo).with_local_backend(base / "terraform")
    output: list[str] = []
    runner = TerraformCli(infra.directory, binary=toolchain["terraform"], min_version=plan.terraform.min_version,
                          env={"TF_CLI_CONFIG_FILE": toolchain["cli_config"],
                               "AWS_REGION": plan.environment(settings.env).region},
                          echo=output.append)
    try:
        outcome = plan_infra(infra, runner, ledger, create_workspace=True)
    except TerraformError as exc:
        raise _Expectation(f"terraform failed: {init_failure_reason(output) or exc.message}") from None
    review = outcome.review
    if review.blocked:
        raise _Expectation("the review blocks the plan: " + ", ".join(c.address for c in review.blockers))
    counts = ", ".join(f"{n} to {action}" for action, n in review.counts.items() if n) or "no changes"
    return (f"plan {outcome.sha256[:12]} of {infra.workspace} reviewed (terraform {outcome.terraform_version}, "
            f"offline stand-in providers): {counts}; no protected resource deleted or replaced"), outcome.to_dict()


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
