"""``promoter ci``: what the GitHub Actions workflows (.github/workflows) ask of the plan and the run."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from promoter.cli.common import App, EnvOpt, JsonOpt, LedgerOpt, PlanOpt, ProfileOpt, RepoOpt, print_json

ci_app = typer.Typer(
    help="For CI jobs: the plan's names for a job (outputs), the GitHub reviewers' approvals, job summaries.",
    no_args_is_help=True,
)


@ci_app.command("outputs")
def outputs_cmd(
    env: EnvOpt = None,
    prefix: Annotated[str, typer.Option("--prefix", help="Prefix every key (e.g. sit_ for a second account).")] = "",
    allow_local_state: Annotated[
        bool, typer.Option("--allow-local-state", help="Do not refuse a ledger in a local directory.")
    ] = False,
    plan: PlanOpt = None,
    repo: RepoOpt = None,
    ledger_dir: LedgerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Print the job's names for ENV as key=value lines for $GITHUB_OUTPUT: account_id, region, profile,
    role_arn (deploy), plan_role_arn (read-only), github_environment, session_name, concurrency_group,
    state, reviewer_gates. All of it comes from the plan, so the workflows hold no account id.

    Refuses (exit 1) when the ledger would be a local directory: a runner is discarded after its job.

      promoter ci outputs --env prod >> "$GITHUB_OUTPUT"
      promoter ci outputs --env sit --prefix sit_ >> "$GITHUB_OUTPUT"
    """
    from promoter.engine import ci
    from promoter.engine.state import LocalStateStore

    app = App(plan_path=plan, env_name=env, ledger_dir=ledger_dir, json_output=json_output, repo_path=repo)
    name = app.env
    store = app.ledger().store_for(name)
    values = ci.outputs(app.plan, name, state=store.describe(name), state_is_local=isinstance(store, LocalStateStore))
    if not allow_local_state:
        ci.require_shared_state(values)
    if json_output:
        print_json({prefix + k: v for k, v in values.items()})
        return
    sys.stdout.write(ci.github_output(values, prefix))


@ci_app.command("approvals")
def approvals_cmd(
    env: EnvOpt = None,
    release: Annotated[str, typer.Option("--release", help="The release the reviewers approved (the run's tag).")] = "",
    sha256: Annotated[str, typer.Option("--sha256", help="The artifact's sha256 (promote --dry-run --json).")] = "",
    change_request: Annotated[
        str | None, typer.Option("--change-request", help="The change request number, for a change-request gate.")
    ] = None,
    gate: Annotated[
        list[str] | None, typer.Option("--gate", help="Only these gates (default: the plan's ci.reviewer_gates).")
    ] = None,
    no_reviewers_ok: Annotated[
        bool, typer.Option("--no-reviewers-ok", help="The GitHub environment has no required reviewers: record "
                           "nothing instead of failing (the promotion then waits for approvals recorded otherwise).")
    ] = False,
    plan: PlanOpt = None,
    repo: RepoOpt = None,
    profile: ProfileOpt = None,
    ledger_dir: LedgerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Record the approvals this run's GitHub environment reviewers gave, as the plan's gates for ENV.

    Reads the run's approvals from GitHub's API (GH_TOKEN, permissions: actions: read) and records, for each
    reviewer who approved the environment, each gate of the plan's ci.reviewer_gates under the identity
    github:LOGIN, bound to --release and --sha256. The terraform gate approves the saved plan the review job
    made (downloaded into the checkout), after verifying it against the ledger. The four-eyes rule then
    compares the reviewer with github:ACTOR, who started the run.

      promoter ci approvals --env prod --release v1.1.0-prod --sha256 "$SHA" --change-request CHG-1234
    """
    from promoter.adapters.github import GitHubApi, RunContext
    from promoter.engine import ci
    from promoter.errors import UsageError

    app = App(plan_path=plan, env_name=env, profile=profile, ledger_dir=ledger_dir, json_output=json_output,
              repo_path=repo)
    name = app.env
    if not release:
        raise UsageError("--release is required: the tag the reviewers approved")
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise UsageError(f"--sha256 {sha256!r}: expected the artifact's 64 hex digit sha256",
                         hint=f"SHA=$(promoter promote --env {name} --release {release} --dry-run --json | "
                              "jq -r .artifact_sha256)")
    run = RunContext.from_environment()
    ledger = app.ledger()
    approvals = GitHubApi(run).run_approvals()
    github_env = app.plan.ci.github_environment.format(env=name)
    if no_reviewers_ok and not ci.approving_reviewers(approvals, github_env):
        result = ci.ReviewerApprovals(env=name, github_environment=github_env, reviewers=[],
                                      skipped=[f"no reviewer approved {github_env} in this run; nothing recorded"])
    else:
        result = ci.record_reviewer_approvals(
            app.plan, name, ledger, approvals, release=release, sha256=sha256, run_url=run.run_url,
            change_request=change_request, gates=list(gate) if gate else None,
            approve_terraform=_terraform_approver(app, name, ledger))
    if json_output:
        print_json(result.to_dict())
        return
    for record in result.recorded:
        typer.echo(f"recorded: {record.get('gate')} approved by {record.get('approver')} ({record.get('identity')})")
    for line in result.skipped:
        typer.echo(f"skipped: {line}")


def _terraform_approver(app: App, env: str, ledger: Any):
    """Approves the saved plan in the checkout, or None when the job has none."""
    from promoter.engine.infra import InfraSettings, approve_plan, ensure_workspace

    settings = InfraSettings.from_plan(app.plan, env, repo=app.repo)
    if not settings.plan_file.is_file():
        return None
    from promoter.adapters.terraform import TerraformCli

    runner = TerraformCli(settings.directory, min_version=settings.min_version)
    ready: list[bool] = []

    def approve(approver: str, identity: str, ref: str) -> dict[str, Any]:
        if not ready:
            runner.init(str(settings.backend_config) if settings.backend_config else None)
            ensure_workspace(runner, settings.workspace, create=False)
            ready.append(True)
        return approve_plan(settings, runner, ledger, approver=approver, ref=ref, identity=identity)

    return approve


@ci_app.command("summary")
def summary_cmd(
    document: Annotated[Path, typer.Argument(help="A promoter --json document ('-' for stdin).")],
    title: Annotated[str | None, typer.Option("--title", help="A heading for the summary.")] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="A Markdown report to fold in (the evidence pack's report.md).")
    ] = None,
) -> None:
    """Print a promoter --json document as Markdown for a job summary.

      promoter ci summary promote.json --title "Promote to prod" >> "$GITHUB_STEP_SUMMARY"
    """
    from promoter.engine.ci import summary_markdown
    from promoter.errors import UsageError

    try:
        text = sys.stdin.read() if str(document) == "-" else document.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {document}: {exc.strerror}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{document} is not a JSON document: {exc}",
                         hint="pass the stdout of a promoter command run with --json") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{document}: expected a JSON object")
    extra = None
    if report is not None:
        extra = report.read_text(encoding="utf-8") if report.is_file() else None
    sys.stdout.write(summary_markdown(doc, title=title, report=extra))


def register(root: typer.Typer) -> None:
    root.add_typer(ci_app, name="ci")
