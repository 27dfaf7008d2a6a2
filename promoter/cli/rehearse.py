"""``promoter rehearse``."""

from __future__ import annotations

from typing import Annotated

import typer

from promoter.cli.common import App, JsonOpt, LedgerOpt, PlanOpt, RepoOpt, console, print_json


def rehearse(
    env: Annotated[
        str | None, typer.Option("--env", "-e", help="Rehearse one environment's phases in one sandbox. Default: "
                                 "SIT's phases, then PROD's, in two sandbox accounts.")
    ] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the sandbox running afterwards (promoter sandbox down "
                                       "--state-dir DIR stops it).")] = False,
    bake: Annotated[float, typer.Option("--bake", help="Seconds each canary step bakes (compressed).")] = 8.0,
    rate: Annotated[float, typer.Option("--rate", help="Synthetic requests per second during the deploys.")] = 30.0,
    repo: RepoOpt = None,
    state_backend: Annotated[str, typer.Option(
        "--state-backend", help="Where the rehearsal's ledger and lock live: s3, the sandbox's seeded state "
        "bucket (default), or local, a directory under the ledger directory.")] = "s3",
    plan: PlanOpt = None,
    ledger_dir: LedgerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Run the whole promotion offline against a fresh sandbox and report, step by step, what happened.

    `promoter promote` for sit-promotion and sit-validation in a sandbox playing SIT's account (canary deploy
    of v1.1.0 under synthetic traffic, smoke, the sign-offs missing: paused with exit 5, then resumed), a faulty
    release the canary must roll back, then prod-promotion in a sandbox playing PROD's account (an unproven
    artifact refused, the change request missing then resumed, backup, canary, smoke: PROD serves SIT's sha256),
    rollback --to v1.0.0, every evidence pack verified. Exit 0 only when every expectation held. The report
    (the evidence packs' reports) lands in .promoter/reports/.
    """
    from rich.markup import escape
    from rich.table import Table

    from promoter.engine.ledger import default_home
    from promoter.engine.rehearse import RehearsalSettings, run_rehearsal
    from promoter.errors import UsageError
    from promoter.plan import default_plan_path

    if state_backend not in ("s3", "local"):
        raise UsageError("--state-backend must be s3 or local")
    app = App(plan_path=plan, env_name=env, ledger_dir=ledger_dir, repo_path=repo)
    envs = [app.env] if env else ["sit", "prod"]
    name = "+".join(envs)
    root = app.repo
    plan_path = (plan or default_plan_path(root)).resolve()
    settings = RehearsalSettings(plan=app.plan, plan_path=plan_path, env=envs[0], keep=keep, bake_seconds=bake,
                                 traffic_rate=rate, home=ledger_dir or default_home(), repo=root,
                                 state_backend=state_backend)
    err = console(stderr=True)
    marks = {"passed": "[green]ok[/]", "failed": "[red]FAILED[/]", "skipped": "[yellow]skipped[/]"}

    def observe(kind, step) -> None:
        if kind == "start":
            err.print(f"[bold]>> {step.title}[/] [dim](expect: {step.expected})[/]")
        elif kind == "note":
            err.print(f"   [dim]{escape(step)}[/]", soft_wrap=True)
        else:
            err.print(f"   {marks.get(step.outcome, step.outcome)} in {step.duration_s:.1f}s  {step.detail}",
                      markup=True, highlight=False, soft_wrap=True)

    result = run_rehearsal(settings, observe, envs)
    if json_output:
        print_json(result.to_dict())
    else:
        out = console()
        table = Table(title=f"Rehearsal {result.rehearsal_id} ({name})", title_justify="left")
        for col in ("step", "outcome", "time", "what happened"):
            table.add_column(col, justify="right" if col == "time" else "left", overflow="fold")
        for s in result.steps:
            table.add_row(s.title, marks.get(s.outcome, s.outcome), f"{s.duration_s:.1f}s", s.detail)
        out.print(table)
        f = result.figures
        if "first_faulty_request_to_stable_s" in f:
            out.print(f"faulty version: first request to alias back on stable {f['first_faulty_request_to_stable_s']}"
                      f" s; requests it served {f.get('faulty_requests_served')}")
        out.print(f"report: {result.report_path}")
        if keep and result.sandbox_dir:
            out.print(f"the sandbox is still up: eval \"$(promoter sandbox env --state-dir {result.sandbox_dir})\"; "
                      f"stop it with: promoter sandbox down --state-dir {result.sandbox_dir}")
        verdict = "every expectation held" if result.ok else "FAILED"
        out.print(f"rehearsal {verdict} in {result.duration_s:.0f} s")
    if not result.ok:
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    root.command("rehearse")(rehearse)
