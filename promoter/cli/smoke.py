"""``promoter smoke``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from promoter.cli.common import App, EnvOpt, JsonOpt, PlanOpt, ProfileOpt, RepoOpt, console, print_json


def smoke(
    env: EnvOpt = None,
    token: Annotated[
        str | None, typer.Option(envvar="PROMOTER_TOKEN", help="Bearer token. Default: a Cognito test user's.")
    ] = None,
    api_url: Annotated[
        str | None,
        typer.Option("--api-url", envvar="PROMOTER_API_URL", help="API base URL. Default: https://<domain>."),
    ] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Also write a JUnit XML report here.")] = None,
    latency_budget: Annotated[
        float | None, typer.Option("--latency-budget", help="Per-request budget in ms. Default: the plan's SLA.")
    ] = None,
    plan: PlanOpt = None,
    repo: RepoOpt = None,
    profile: ProfileOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Run the runbook's six smoke tests against the environment's API (exit 1 on any failure).

    Health; list; create; get by id; update to active; delete, confirmed by a 404. Each checks status, body
    shape and latency. What the run created is deleted even when a test fails. Without --token, a token is
    obtained from the environment's Cognito pool with PROMOTER_SMOKE_USERNAME / PROMOTER_SMOKE_PASSWORD.
    """
    from rich.table import Table

    from promoter.adapters.http import HttpClient
    from promoter.engine.smoke import api_url_for, resolve_token, run_smoke

    app = App(plan_path=plan, env_name=env, profile=profile, repo_path=repo)
    name = app.env
    url = api_url_for(app.plan, name, api_url)
    bearer = resolve_token(token, app.aws, app.plan, name)
    client = HttpClient(url, token=bearer, timeout=15)
    try:
        report = run_smoke(app.plan, name, client, latency_budget_ms=latency_budget)
    finally:
        client.close()
    if junit:
        junit.parent.mkdir(parents=True, exist_ok=True)
        junit.write_text(report.to_junit(), encoding="utf-8")
    app.ledger().append(name, "smoke", ok=report.ok, api_url=url, tests=report.to_dict()["tests"])
    if json_output:
        print_json(report.to_dict())
    else:
        table = Table(title=f"Smoke tests: {name} ({url})", title_justify="left")
        for col in ("#", "test", "request", "status", "time", "result"):
            table.add_column(col, justify="right" if col in {"#", "status", "time"} else "left")
        for case in report.cases:
            r = case.result
            verdict = "[green]PASS[/]" if case.ok else "[red]FAIL[/] " + "; ".join(case.problems)
            table.add_row(str(r.test), r.name, f"{r.method} {r.path}", str(r.status or "-"),
                          f"{r.duration_ms:.0f} ms", verdict)
        for skipped in report.skipped:
            table.add_row("", skipped, "", "", "", "[yellow]SKIP[/] an earlier test failed")
        out = console()
        out.print(table)
        passed = sum(c.ok for c in report.cases)
        total = len(report.cases) + len(report.skipped)
        out.print(f"smoke {'passed' if report.ok else 'FAILED'}: {passed} of {total} tests passed")
    if not report.ok:
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    root.command("smoke")(smoke)
