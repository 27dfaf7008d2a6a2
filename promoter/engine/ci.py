"""What CI needs from the plan, and what it records back.

- :func:`outputs`: for one environment, the names a workflow job needs (account, region, the plan's AWS profile,
  the OIDC role ARNs, the GitHub environment, the concurrency group, the state store), from the plan alone, so
  the workflow files hold no account id of their own.
- :func:`record_reviewer_approvals`: the approvals a GitHub environment's required reviewers gave a run,
  recorded as the plan's gates under the reviewers' GitHub identities (``github:LOGIN``), bound to the release
  and artifact like any ``promoter approve``.
- :func:`summary_markdown`: any promoter ``--json`` document as the Markdown of a job summary.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from promoter.adapters.github import EnvironmentApproval
from promoter.engine.infra import TERRAFORM_GATE
from promoter.errors import ConfigurationError, PromoterError, UsageError
from promoter.plan.models import Plan


def outputs(plan: Plan, env: str, *, state: str, state_is_local: bool) -> dict[str, str]:
    """The job's names for ``env`` (pure). ``state`` describes the store the ledger is on."""
    spec = plan.environment(env)
    ci = plan.ci
    return {
        "env": env,
        "account_id": spec.account_id,
        "region": spec.region,
        "profile": spec.profile or f"promoter-{env}",
        "role_arn": ci.role_arn(spec.account_id, env, "deploy"),
        "plan_role_arn": ci.role_arn(spec.account_id, env, "plan"),
        "github_environment": ci.github_environment.format(env=env),
        "session_name": ci.session_name.format(env=env),
        "concurrency_group": f"promoter-{env}",
        "terraform_min_version": plan.terraform.min_version,
        "tag_pattern": plan.code.tag_pattern,
        "state": state,
        "state_shared": "false" if state_is_local else "true",
        "reviewer_gates": ",".join(ci.reviewer_gates.get(env, [])),
    }


def require_shared_state(values: dict[str, str]) -> None:
    if values["state_shared"] != "true":
        raise ConfigurationError(
            f"the ledger for {values['env']} is a local directory ({values['state']}); a CI runner is discarded "
            "after its job, and with it the lock, the approvals and SIT's proof of the artifact",
            hint="set the plan's `state:` section to an S3 bucket, or the repository variable PROMOTER_STATE to "
                 "s3://BUCKET/PREFIX (the workflows pass it to every job)",
        )


def github_output(values: dict[str, str], prefix: str = "") -> str:
    """``key=value`` lines for ``$GITHUB_OUTPUT``; refuses values a line cannot carry."""
    lines = []
    for key, value in values.items():
        if "\n" in value or "\r" in value:
            raise UsageError(f"{key}: a value with a line break cannot be a step output")
        lines.append(f"{prefix}{key}={value}")
    return "\n".join(lines) + "\n"


@dataclass
class ReviewerApprovals:
    env: str
    github_environment: str
    reviewers: list[str]
    recorded: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"env": self.env, "github_environment": self.github_environment, "reviewers": self.reviewers,
                "recorded": self.recorded, "skipped": self.skipped}


def approving_reviewers(approvals: Iterable[EnvironmentApproval], github_environment: str) -> list[str]:
    """Logins that approved this run's deployment to ``github_environment``, in order, each once (pure)."""
    seen: list[str] = []
    for a in approvals:
        if a.state == "approved" and github_environment in a.environments and a.login not in seen:
            seen.append(a.login)
    return seen


def record_reviewer_approvals(
    plan: Plan, env: str, ledger: Any, approvals: Iterable[EnvironmentApproval], *, release: str, sha256: str,
    run_url: str, change_request: str | None = None, gates: list[str] | None = None,
    approve_terraform: Callable[[str, str, str], dict[str, Any]] | None = None,
) -> ReviewerApprovals:
    """Record, for each reviewer who approved the run's GitHub environment, each gate of ``ci.reviewer_gates``.

    ``approve_terraform(approver, identity, ref)`` records the terraform plan approval (the saved plan the
    review job made); without it the terraform gate is skipped with the reason.
    """
    from promoter.engine.approvals import approval_env
    from promoter.engine.infra import record_gate_approval

    github_env = plan.ci.github_environment.format(env=env)
    wanted = list(gates if gates is not None else plan.ci.reviewer_gates.get(env, []))
    if not wanted:
        raise ConfigurationError(f"the plan names no gate that {github_env}'s reviewers approve",
                                 hint=f"list them in the plan: ci.reviewer_gates.{env}")
    reviewers = approving_reviewers(approvals, github_env)
    result = ReviewerApprovals(env=env, github_environment=github_env, reviewers=reviewers)
    if not reviewers:
        raise PromoterError(
            f"no reviewer approved this run's deployment to the GitHub environment {github_env!r}",
            hint=f"give the environment {github_env!r} required reviewers (Settings > Environments); the job "
                 "then waits for one of them",
        )
    for gate in wanted:
        if gate == TERRAFORM_GATE:
            if approve_terraform is None:
                result.skipped.append(f"{gate}: no saved terraform plan in this job")
                continue
            for login in reviewers:
                result.recorded.append(approve_terraform(login, f"github:{login}", run_url))
            continue
        needs_ref = _needs_ref(plan, gate)
        if needs_ref and not change_request:
            raise UsageError(f"gate {gate!r} needs the change request number: --change-request CR-NUMBER")
        ref = change_request if needs_ref else run_url
        for login in reviewers:
            approval = record_gate_approval(
                plan, ledger, env=approval_env(plan, gate, env), gate=gate, approver=login, ref=ref,
                release=release, artifact_sha256=sha256, identity=f"github:{login}")
            result.recorded.append(approval.record)
    return result


def _needs_ref(plan: Plan, gate: str) -> bool:
    return any(g.id == gate and g.kind == "change-request" for g in plan.gates)


# -- job summaries -----------------------------------------------------------------------------------------------
def summary_markdown(doc: dict[str, Any], *, title: str | None = None, report: str | None = None) -> str:
    """A promoter ``--json`` document as a job summary: the outcome first, then what it is made of (pure)."""
    lines: list[str] = []
    if title:
        lines += [f"## {title}", ""]
    if doc.get("ok") is False and "error" in doc:
        waiting = doc.get("exit_code") == 5
        head = "Waiting for an approval" if waiting else "Failed"
        lines += [f"**{head}** (exit {doc.get('exit_code')}, {doc.get('error')}): {_md(doc.get('message'))}", ""]
        if doc.get("hint"):
            lines += [f"Next: {_md(doc['hint'])}", ""]
        run = doc.get("pipeline") or doc.get("run")
        if isinstance(run, dict):
            doc = run
    if "pipeline_id" in doc:
        lines += _pipeline(doc)
    elif "routes" in doc:
        lines += ["| version | release | weight |", "|---|---|---|"]
        lines += [f"| {r.get('version')} | {r.get('release')} | {r.get('percent')} % |" for r in doc["routes"]]
    elif "review" in doc or "plan_counts" in doc:
        lines += _terraform(doc)
    elif "outcome" in doc:
        lines += [f"**{doc.get('outcome')}**: {_md(doc.get('reason'))}", ""]
    else:
        lines += ["```json", json.dumps(doc, indent=2, default=str)[:20000], "```"]
    if report:
        lines += ["", "<details><summary>Evidence report</summary>", "", report, "", "</details>"]
    return "\n".join(lines).rstrip() + "\n"


def _pipeline(doc: dict[str, Any]) -> list[str]:
    outcome = doc.get("outcome")
    mark = {"succeeded": "Succeeded", "waiting": "Waiting for an approval", "noop": "Nothing to do",
            "dry-run": "Dry run"}.get(str(outcome), str(outcome).capitalize())
    lines = [f"**{mark}**: {_md(doc.get('reason'))}", "",
             f"Pipeline `{doc.get('pipeline_id')}` · {doc.get('env')} · release `{doc.get('release')}` · artifact "
             f"sha256 `{str(doc.get('artifact_sha256'))[:12]}` · started by {doc.get('started_by')}", ""]
    waiting = doc.get("waiting_for") or {}
    if outcome == "waiting" and waiting.get("command"):
        lines += ["To go on, record the approval, then run the workflow again (the pipeline resumes):", "",
                  "```bash", str(waiting["command"]), "```", ""]
    lines += ["| step | status | detail |", "|---|---|---|"]
    for s in doc.get("steps") or []:
        status = s.get("status") or f"would {s.get('would')}"
        lines.append(f"| {s.get('step_key')} | {status} | {_md(s.get('detail'))} |")
    return lines


def _terraform(doc: dict[str, Any]) -> list[str]:
    """``infra validate`` (its checks) or ``infra plan`` (its review of each change)."""
    lines: list[str] = []
    if "steps" in doc:  # infra validate
        verdict = "passed" if doc.get("ok") else "failed: " + ", ".join(doc.get("failed") or [])
        lines += [f"**Terraform checks of {doc.get('env')} {verdict}** (terraform {doc.get('terraform_version')}"
                  f"{', offline providers' if doc.get('offline') else ''}); planned: {_counts(doc.get('plan_counts'))}",
                  "", "| check | result | detail |", "|---|---|---|"]
        for step in doc["steps"]:
            result = "skipped" if step.get("skipped") else ("ok" if step.get("ok") else "FAILED")
            lines.append(f"| {step.get('name')} | {result} | {_md(step.get('detail'))} |")
            for d in step.get("diagnostics") or []:
                lines.append(f"| | | {_md(d.get('severity'))}: {_md(d.get('summary'))} |")
        return lines
    review = doc.get("review") or {}
    blocked = review.get("blocked")
    lines += [f"**Terraform plan for {doc.get('env')} {'is BLOCKED' if blocked else 'reviewed'}**: sha256 "
              f"`{str(doc.get('sha256'))[:12]}`, workspace {doc.get('workspace')}, {_counts(review.get('counts'))}", ""]
    changes = review.get("changes") or []
    if changes:
        lines += ["| address | actions | protected | blocks |", "|---|---|---|---|"]
        lines += [f"| {c.get('address')} | {', '.join(c.get('actions') or [])} | {'yes' if c.get('protected') else ''}"
                  f" | {'yes' if c.get('blocking') else ''} |" for c in changes]
    return lines


def _counts(counts: Any) -> str:
    if not isinstance(counts, dict) or not counts:
        return "no changes"
    return ", ".join(f"{n} {k}" for k, n in counts.items() if n)


def _md(text: Any) -> str:
    return str(text or "").replace("|", "\\|").replace("\n", " ")
