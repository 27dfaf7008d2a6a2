"""``promoter infra validate | plan | review | apply`` and ``promoter approve``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from promoter.cli.common import App, EnvOpt, JsonOpt, LedgerOpt, PlanOpt, ProfileOpt, RepoOpt, console, print_json

if TYPE_CHECKING:
    from rich.console import Console

    from promoter.engine.infra import InfraSettings, Review

infra_app = typer.Typer(
    help="Terraform for one environment: plan, review, then apply exactly the reviewed and approved plan.",
    no_args_is_help=True,
)

DirOpt = Annotated[
    Path | None,
    typer.Option("--dir", help="Terraform directory. Default: the plan's terraform.directory.", show_default=False),
]
AllowDestroyOpt = Annotated[
    bool,
    typer.Option("--allow-destroy", help="Accept deletes and replaces of protected (stateful) resources."),
]


def _echo(line: str) -> None:
    typer.echo(line, err=True, nl=False)


def _runner(app: App, settings: InfraSettings):
    from promoter.adapters.terraform import TerraformCli

    env: dict[str, str] = {}
    profile = app.aws(settings.env).resolved_profile()
    if profile:
        env["AWS_PROFILE"] = profile  # the runbook's `AWS_PROFILE=Tebogo-sit terraform plan`
    return TerraformCli(settings.directory, env=env, echo=_echo, min_version=settings.min_version)


def _settings(app: App, directory: Path | None, plan_file: Path | None = None) -> InfraSettings:
    from promoter.engine.infra import InfraSettings

    repo = None if directory is not None else app.repo
    return InfraSettings.from_plan(app.plan, app.env, directory=directory, plan_file=plan_file, repo=repo)


def render_review(
    out: Console, review: Review, *, title: str = "Terraform plan review", allow_destroy: bool = False
) -> None:
    from rich.table import Table

    counts = Table(title=title, title_justify="left")
    for action in review.counts:
        counts.add_column(action, justify="right")
    counts.add_row(*(str(n) for n in review.counts.values()))
    out.print(counts)
    if review.changes:
        table = Table(title="Deletes, replaces and forgets", title_justify="left")
        for col in ("action", "address", "reason", "replace paths", "verdict"):
            table.add_column(col)
        for change in review.changes:
            paths = ", ".join(".".join(str(p) for p in path) for path in change.replace_paths) or "-"
            verdict = "BLOCKED (protected)" if change.blocking else ("protected" if change.protected else "ok")
            address = change.address + (f" (deposed {change.deposed})" if change.deposed else "")
            table.add_row(change.action, address, change.action_reason or "-", paths, verdict)
        out.print(table)
    for warning in review.warnings:
        out.print(f"warning: {warning}")
    if review.blocked and allow_destroy:
        out.print(f"ALLOWED by --allow-destroy: {len(review.blockers)} protected resource(s) would be destroyed")
    elif review.blocked:
        out.print(f"BLOCKED: {len(review.blockers)} protected resource(s) would be destroyed")
    elif not review.has_changes:
        out.print("No changes.")
    else:
        out.print("No protected resource is deleted or replaced.")


def _validate_runner_factory(app: App, settings: InfraSettings, *, offline: bool, echo):
    """How ``infra validate`` runs terraform: the offline stand-in (``tools/tfstandin``) or the real providers."""
    from promoter.adapters.terraform import TerraformCli, standin_toolchain

    env: dict[str, str] = {"AWS_REGION": app.plan.environment(settings.env).region}
    binary = None
    if offline:
        toolchain = standin_toolchain(app.repo, app.repo / ".promoter" / "tfstandin")
        binary = toolchain["terraform"]
        env["TF_CLI_CONFIG_FILE"] = toolchain["cli_config"]
    else:
        profile = app.aws(settings.env).resolved_profile()
        if profile:
            env["AWS_PROFILE"] = profile
    return lambda directory: TerraformCli(directory, binary=binary, env=env, echo=echo,
                                          min_version=settings.min_version)


def render_validation(out: Console, outcome: Any) -> None:
    from rich.table import Table

    mode = "offline stand-in providers" if outcome.offline else "the real providers"
    table = Table(title=f"Terraform checks for {outcome.env} (terraform {outcome.terraform_version}, {mode})",
                  title_justify="left")
    for col in ("check", "result", "time", "detail"):
        table.add_column(col)
    for step in outcome.steps:
        result = "skipped" if step.skipped else ("ok" if step.ok else "FAILED")
        table.add_row(step.name, result, f"{step.duration_s:.1f} s", step.detail)
    out.print(table)
    for step in outcome.steps:
        for d in step.diagnostics:
            out.print(f"{d.location()}: {d.severity}: {d.summary}" + (f": {d.detail}" if d.detail else ""),
                      markup=False, soft_wrap=True)
        for f in step.findings:
            where = f"{f.file}:{f.line}" if f.target == "configuration" else f"plan {outcome.env}"
            out.print(f"{f.scanner} {f.check_id} {where} {f.resource}: {f.title}", markup=False, soft_wrap=True)
    out.print(f"evidence: {outcome.evidence_dir}", markup=False, soft_wrap=True)


@infra_app.command("validate")
def validate_cmd(
    env: EnvOpt = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Use the offline stand-ins for the aws and archive providers "
                           "(tools/tfstandin): the real schema, no registry, no account.")
    ] = False,
    no_scan: Annotated[bool, typer.Option("--no-scan", help="Skip the checkov and trivy scans (reported).")] = False,
    no_plan: Annotated[bool, typer.Option("--no-plan", help="Skip the plan (and the scans of its JSON).")] = False,
    evidence_dir: Annotated[
        Path | None, typer.Option("--evidence-dir", help="Where the plan JSON and scanner reports go. Default: "
                                  ".promoter/evidence/infra-validate/<env>/.", show_default=False)
    ] = None,
    directory: DirOpt = None,
    repo: RepoOpt = None,
    plan: PlanOpt = None,
    profile: ProfileOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """fmt -check, init, validate, plan and the misconfiguration scanners; exit 1 on any failure.

    Runs in a scratch copy with a local backend, so no state is read or written; the plan JSON and the checkov
    and trivy reports are kept as evidence.
    """
    from promoter.engine.infra import validate_infra
    from promoter.errors import RefusedError

    app = App(plan_path=plan, env_name=env, profile=profile, repo_path=repo)
    settings = _settings(app, directory)
    root = app.repo / ".promoter"
    evidence = (evidence_dir or root / "evidence" / "infra-validate" / settings.env).resolve()
    scanners = None
    if not no_scan:
        from promoter.adapters.scanners import default_scanners

        scanners = default_scanners(app.repo, cache_dir=root / "cache" / "trivy")
    err = console(stderr=True)

    def shown(path: Path) -> str:
        try:
            return str(path.resolve().relative_to(app.repo.resolve()))
        except ValueError:
            return str(path)

    outcome = validate_infra(
        settings, _validate_runner_factory(app, settings, offline=offline, echo=_echo), scanners,
        work_dir=root / "tf-validate" / settings.env, evidence_dir=evidence, offline=offline, plan=not no_plan,
        shown_as=shown, progress=lambda msg: err.print(f"[dim]{msg}[/]"),
    )
    if not json_output:
        render_validation(console(), outcome)
    if not outcome.ok:
        exc = RefusedError(f"terraform checks failed for {settings.env}: {', '.join(outcome.failed)}",
                           hint="the file, line and message of each problem are above" if not json_output else
                           "each step's diagnostics and findings are in the document")
        exc.details = outcome.to_dict()
        raise exc
    if json_output:
        print_json(outcome.to_dict())


@infra_app.command("plan")
def plan_cmd(
    env: EnvOpt = None,
    create_workspace: Annotated[
        bool, typer.Option("--create-workspace", help="Create the environment's workspace if it does not exist.")
    ] = False,
    offline: Annotated[
        bool, typer.Option("--offline", help="Plan a local-backend copy with the offline stand-in providers "
                           "(tools/tfstandin): a rehearsal of the plan, which cannot be applied.")
    ] = False,
    directory: DirOpt = None,
    repo: RepoOpt = None,
    plan: PlanOpt = None,
    profile: ProfileOpt = None,
    ledger_dir: LedgerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """init, select the workspace, plan -out=<env>.tfplan, review it, and record it in the ledger."""
    from promoter.engine.infra import plan_infra

    app = App(plan_path=plan, env_name=env, profile=profile, ledger_dir=ledger_dir, repo_path=repo)
    settings = _settings(app, directory)
    err = console(stderr=True)
    if offline:
        # the state of an offline plan stays in its copy; the workspace is created there
        settings = settings.with_local_backend(app.repo / ".promoter" / "tf-offline" / settings.env)
        runner = _validate_runner_factory(app, settings, offline=True, echo=_echo)(settings.directory)
        create_workspace = True
    else:
        runner = _runner(app, settings)
    outcome = plan_infra(
        settings, runner, app.ledger(), create_workspace=create_workspace,
        progress=lambda msg: err.print(f"[dim]{msg}[/]"),
    )
    if json_output:
        print_json({**outcome.to_dict(), "offline": offline})
        return
    out = console()
    render_review(out, outcome.review, title=f"Terraform plan for {outcome.env} (workspace {outcome.workspace})")
    typer.echo(f"saved plan {outcome.plan_file}\n  sha256 {outcome.sha256}\n  created {outcome.created}")
    if offline:
        typer.echo("planned with the offline stand-in providers: no account was read, and this plan cannot be "
                   "applied; plan without --offline to apply")
    else:
        typer.echo(f"next: promoter infra apply --env {outcome.env} --approve --approver NAME")


@infra_app.command("review")
def review_cmd(
    plan_file: Annotated[
        Path | None, typer.Option("--plan-file", help="A saved plan (runs `terraform show -json` on it).")
    ] = None,
    plan_json: Annotated[
        Path | None, typer.Option("--plan-json", help="The output of `terraform show -json PLANFILE`.")
    ] = None,
    allow_destroy: AllowDestroyOpt = False,
    directory: DirOpt = None,
    plan: PlanOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Review a plan: counts by action, every delete/replace/forget; exit 1 when protected resources would go."""
    from promoter.engine.infra import review_plan
    from promoter.errors import PlanError, RefusedError, UsageError

    if (plan_file is None) == (plan_json is None):
        raise UsageError("give exactly one of --plan-file or --plan-json")
    app = App(plan_path=plan)
    tf = app.plan.terraform
    if plan_json is not None:
        try:
            document = json.loads(plan_json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PlanError(str(plan_json), [f"not a readable JSON document: {exc}"]) from None
    else:
        from promoter.adapters.terraform import TerraformCli

        assert plan_file is not None
        if not plan_file.is_file():
            raise UsageError(f"no plan file at {plan_file}")
        workdir = directory or plan_file.resolve().parent
        document = TerraformCli(workdir, echo=_echo, min_version=tf.min_version).show_json(str(plan_file.resolve()))
    review = review_plan(document, tf.protected_resource_types, tf.protected_addresses)
    if json_output:
        print_json({**review.to_dict(), "allow_destroy": allow_destroy})
    else:
        render_review(console(), review, allow_destroy=allow_destroy)
    if review.blocked and not allow_destroy:
        names = ", ".join(f"{c.action} {c.address}" for c in review.blockers)
        raise RefusedError(
            f"the plan would destroy protected resources: {names}",
            hint="pass --allow-destroy only if that data loss is intended and agreed",
        )


@infra_app.command("apply")
def apply_cmd(
    env: EnvOpt = None,
    plan_file: Annotated[
        Path | None, typer.Option("--plan-file", help="The saved plan. Default: <dir>/<env>.tfplan.")
    ] = None,
    approve: Annotated[
        bool, typer.Option("--approve", help="Record the approval without asking (CI); needs --approver.")
    ] = False,
    approver: Annotated[str | None, typer.Option("--approver", help="Who approves the plan.")] = None,
    ref: Annotated[str | None, typer.Option("--ref", help="Change request or ticket for the approval.")] = None,
    allow_destroy: AllowDestroyOpt = False,
    directory: DirOpt = None,
    repo: RepoOpt = None,
    plan: PlanOpt = None,
    profile: ProfileOpt = None,
    ledger_dir: LedgerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Apply exactly the saved plan that was reviewed: approval recorded with its sha256, then apply."""
    from promoter.engine.infra import apply_plan, approve_plan, verify_saved_plan
    from promoter.engine.ledger import whoami
    from promoter.errors import RefusedError, UsageError

    if approve and not approver:
        raise UsageError("--approve needs --approver NAME (recorded in the ledger)")
    app = App(plan_path=plan, env_name=env, profile=profile, ledger_dir=ledger_dir, repo_path=repo)
    settings = _settings(app, directory, plan_file)
    runner = _runner(app, settings)
    ledger = app.ledger()
    err = console(stderr=True)

    saved = verify_saved_plan(settings, runner, ledger)
    approval = saved.approval
    fresh_approval = approve or approval is None or (saved.review.blocked and not approval.get("allow_destroy"))
    if fresh_approval:
        if not approve:
            render_review(err, saved.review, title=f"Plan for {settings.env} (sha256 {saved.sha256[:12]})")
            if saved.review.blocked and not allow_destroy:
                raise RefusedError(
                    f"the plan for {settings.env} would destroy protected resources",
                    hint="approve with --allow-destroy only if that data loss is intended and agreed",
                )
            name = approver or whoami()
            if not typer.confirm(f"Approve as {name} and apply this plan to {settings.env}?", err=True):
                raise RefusedError("not approved; nothing applied")
            approver = name
        approval = approve_plan(
            settings, runner, ledger, approver=approver or "", allow_destroy=allow_destroy, ref=ref
        )
        typer.echo(f"approval recorded: {approval['approver']} approved sha256 {approval['sha256']}", err=True)
    else:
        assert approval is not None
        typer.echo(f"using the approval by {approval.get('approver')} recorded at {approval.get('ts')}", err=True)

    result = apply_plan(settings, runner, ledger)
    data: dict[str, Any] = {"env": settings.env, "approval": approval, "apply": result}
    if json_output:
        print_json(data)
        return
    typer.echo(
        f"applied {saved.plan_file} to {settings.env} (workspace {saved.workspace})\n"
        f"  sha256 {saved.sha256}\n  approved by {approval.get('approver')}"
    )


def approve_cmd(
    env: EnvOpt = None,
    gate: Annotated[str, typer.Option("--gate", help="Gate or manual check id from the plan.")] = "",
    approver: Annotated[str, typer.Option("--approver", help="Who approves.")] = "",
    ref: Annotated[str | None, typer.Option("--ref", help="Change request, report or ticket reference.")] = None,
    release: Annotated[
        str | None, typer.Option("--release", help="The release approved (required by gates that block a deploy).")
    ] = None,
    sha256: Annotated[
        str | None, typer.Option("--sha256", help="The artifact approved: its sha256 (a promotion counts only an "
                                 "approval of the artifact it promotes).")
    ] = None,
    plan: PlanOpt = None,
    profile: ProfileOpt = None,
    ledger_dir: LedgerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Record a manual gate approval (plan gates and manual checks) in the environment's ledger.

    Gates that block a deploy (SIT sign-off, change request before PROD) approve one release: --release TAG.
    """
    from promoter.engine.infra import record_gate_approval
    from promoter.errors import UsageError

    app = App(plan_path=plan, env_name=env, profile=profile, ledger_dir=ledger_dir)
    if not gate:
        known = ", ".join([g.id for g in app.plan.gates] + [c.id for c in app.plan.manual_checks])
        raise UsageError(f"--gate is required; the plan defines: {known}")
    from promoter.engine.approvals import caller_identity

    # who approves, as the caller identity (four eyes compares it with who started the promotion)
    identity = caller_identity(lambda: app.aws(app.env).client(
        "sts", retries={"mode": "standard", "max_attempts": 1}, connect_timeout=3, read_timeout=5))
    result = record_gate_approval(app.plan, app.ledger(), env=app.env, gate=gate, approver=approver, ref=ref,
                                  release=release, artifact_sha256=sha256, identity=identity)
    if json_output:
        print_json(result.record)
        return
    ref_text = f" ({result.ref})" if result.ref else ""
    release_text = f" release {result.release}" if result.release else ""
    typer.echo(f"recorded: {result.gate} ({result.title}) approved by {result.approver}{ref_text} for {result.env}"
               f"{release_text}")


def register(root: typer.Typer) -> None:
    root.add_typer(infra_app, name="infra")
    root.command("approve")(approve_cmd)
