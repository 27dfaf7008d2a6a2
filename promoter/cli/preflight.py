"""``promoter preflight --env ENV``: the pre-deployment checklist; exit 0 when no blocker failed, 1 otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from promoter.cli.common import App, EnvOpt, JsonOpt, LedgerOpt, PlanOpt, ProfileOpt, RepoOpt, console, print_json

if TYPE_CHECKING:
    from rich.console import Console

    from promoter.engine.preflight import PreflightReport

STATUS_STYLE = {"PASS": "green", "FAIL": "bold red", "WARN": "yellow", "MANUAL": "cyan", "SKIP": "dim"}


def _split(values: list[str] | None) -> list[str]:
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def preflight(
    env: EnvOpt = None,
    plan: PlanOpt = None,
    profile: ProfileOpt = None,
    release: Annotated[
        str | None, typer.Option("--release", help="Release tag being promoted. Default: the release tag on HEAD.")
    ] = None,
    repo: RepoOpt = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", metavar="ID,...", help="Run only these check ids or groups (comma-separated)."),
    ] = None,
    skip: Annotated[
        list[str] | None,
        typer.Option("--skip", metavar="ID,...", help="Skip these check ids or groups (comma-separated), e.g. code."),
    ] = None,
    ledger_dir: LedgerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Check that ENV is ready for a promotion: account, region, DNS, certificate, API domain, table, PITR,
    bucket, role, function, alias, logs, alarms, DLQ, DR (prod), code; list the manual sign-offs."""
    from promoter.engine.preflight import PreflightContext, checklist, run_checks, select_checks
    from promoter.errors import ConfigurationError

    app = App(plan_path=plan, env_name=env, profile=profile, ledger_dir=ledger_dir, json_output=json_output,
              repo_path=repo)
    name = app.env
    checks = select_checks(checklist(app.plan, name), _split(only), _split(skip))
    spec = app.plan.environment(name)
    if not json_output:
        console(stderr=True).print(
            f"preflight {name}: {len(checks)} checks against account {spec.account_id} in {spec.region}",
            highlight=False,
        )
    try:
        repo_root = app.repo
    except ConfigurationError:
        repo_root = Path(repo or Path.cwd())  # not a checkout: the code checks report it, the AWS checks still run
    ctx = PreflightContext(
        plan=app.plan, env=name, aws=app.aws(name), repo=repo_root, release=release, approvals=app.ledger()
    )
    report = run_checks(checks, ctx)
    if json_output:
        print_json({"plan": app.plan.id, **report.to_dict()})
    else:
        render_report(console(), report)
    if not report.ok:
        raise typer.Exit(1)


def render_report(out: Console, report: PreflightReport) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"Preflight {report.env} (account {report.account_id}, {report.region})", title_justify="left")
    table.add_column("id", no_wrap=True)
    table.add_column("severity")
    table.add_column("status")
    table.add_column("evidence", overflow="fold")
    table.add_column("remedy", overflow="fold")
    for r in report.results:
        table.add_row(
            r.id,
            str(r.severity),
            Text(str(r.status), style=STATUS_STYLE[str(r.status)]),
            Text(r.evidence),
            Text(r.remedy or ""),
        )
    out.print(table)
    counts = ", ".join(f"{n} {s}" for s, n in report.counts().items() if n)
    verdict = "READY" if report.ok else f"NOT READY: {len(report.blockers)} blocker(s) failed"
    out.print(f"{verdict} ({counts}; {report.duration_ms} ms)", highlight=False)


def register(root: typer.Typer) -> None:
    root.command("preflight")(preflight)
