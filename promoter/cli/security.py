"""``promoter security`` and ``promoter openapi``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from promoter.cli.common import App, EnvOpt, JsonOpt, PlanOpt, ProfileOpt, RepoOpt, console, print_json


def security(
    env: EnvOpt = None,
    report: Annotated[
        Path | None, typer.Option("--report", file_okay=False,
                                  help="Directory for the reports. Default: <ledger dir>/security/ENV/<time>.")
    ] = None,
    api_url: Annotated[
        str | None,
        typer.Option("--api-url", envvar="PROMOTER_API_URL", help="API base URL. Default: https://<domain>."),
    ] = None,
    max_examples: Annotated[
        int | None, typer.Option("--max-examples", min=1,
                                 help="Fuzzing cases per operation. Default: the plan's security.fuzz_max_examples.")
    ] = None,
    max_seconds: Annotated[
        float | None, typer.Option("--max-seconds", min=1,
                                   help="Fuzzing time budget. Default: the plan's security.fuzz_max_seconds.")
    ] = None,
    zap: Annotated[bool, typer.Option("--zap", help="Also run OWASP ZAP's API scan (needs a Docker engine).")] = False,
    sandbox_state: Annotated[
        Path | None,
        typer.Option("--sandbox", envvar="PROMOTER_SANDBOX", file_okay=False,
                     help="Take the tokens from this running sandbox's test users (set by `promoter sandbox env`)."),
    ] = None,
    plan: PlanOpt = None,
    repo: RepoOpt = None,
    profile: ProfileOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Run the security checks against ENV's API and storage (exit 1 on any high finding).

    Each check is named tests in a JUnit XML and a SARIF 2.1.0 report: the authorization matrix (every route of
    the service's route table x every group and a user in no group x no token, another key's signature, an
    expired token, alg none, another audience; expected from each route's declared permission), injection and
    stored XSS (the table compared before and after), fuzzing from the OpenAPI document with schemathesis,
    transport and storage (table SSE, bucket encryption, public access block, TLS-only policy, the function's
    logs sampled for tokens and bodies), and the Terraform scanners where installed. A `security` record with
    the verdict goes to the ledger.

    Tokens: a sandbox's test users with --sandbox (or after `eval "$(promoter sandbox env)"`), else the plan's
    security.test_users signing in to the environment's Cognito pool with $PROMOTER_SECURITY_PASSWORD.

    Examples:

    \b
        promoter sandbox up --env sit && eval "$(promoter sandbox env)"
        promoter security --env sit --max-examples 10 --json
        promoter security --env sit --report out/security --zap   # needs Docker for ZAP
    """
    from promoter.engine.ledger import default_home
    from promoter.engine.security.core import SecuritySettings, run_security
    from promoter.engine.security.tokens import CognitoTokens
    from promoter.engine.smoke import api_url_for

    app = App(plan_path=plan, env_name=env, profile=profile, repo_path=repo)
    name = app.env
    url = api_url_for(app.plan, name, api_url)
    if report is None:
        from datetime import UTC, datetime

        report = default_home() / "security" / name / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    if zap:
        from promoter.engine.security.fuzz import require_docker

        require_docker()  # refused before anything runs
    if sandbox_state is not None:
        from promoter.sandbox.tokens import SandboxTokens

        tokens = SandboxTokens(sandbox_state)
    else:
        tokens = CognitoTokens(app.aws(name), app.plan, name, app.plan.security.test_users)
    settings = SecuritySettings(plan=app.plan, env=name, repo=app.repo, api_url=url, report_dir=report,
                                max_examples=max_examples, max_seconds=max_seconds, zap=zap)
    err = console(stderr=True)
    result = run_security(settings, tokens, app.aws(name), progress=lambda m: err.print(m, markup=False,
                                                                                        highlight=False))
    data = result.to_dict()
    data["reports"] = {"dir": str(report), "junit": str(report / "security-junit.xml"),
                       "sarif": str(report / "security.sarif.json"), "json": str(report / "security.json")}
    app.ledger().append(name, "security", ok=result.ok, verdict=data["verdict"], api_url=url,
                        counts=data["counts"], findings=data["findings"], report_dir=str(report),
                        authorization=data.get("authorization"))
    if json_output:
        print_json(data)
    else:
        from rich.table import Table

        table = Table(title=f"Security: {name} ({url})", title_justify="left")
        for col in ("check", "passed", "failed", "skipped"):
            table.add_column(col, justify="left" if col == "check" else "right")
        for check in result.checks:
            mine = [r for r in result.results if r.check == check]
            table.add_row(check, *(str(sum(r.status == s for r in mine)) for s in ("passed", "failed", "skipped")))
        out = console()
        out.print(table)
        for r in result.findings:
            out.print(f"[red]{r.severity.upper()}[/] {r.check}: {r.name}: {r.message}", highlight=False)
        out.print(result.summary())
        out.print(f"reports: {report}")
    if not result.ok:
        raise typer.Exit(1)


def openapi(
    output_format: Annotated[str, typer.Option("--format", help="yaml or json.")] = "yaml",
    plan: PlanOpt = None,
    repo: RepoOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Print the service's OpenAPI document (the file the plan's security.openapi names, in the checkout).

    It describes every route of the service with its permission (x-permission) and request fields; a test of
    the service keeps it in step with the route table and the models. `promoter security` fuzzes from it.

    Examples:

    \b
        promoter openapi > openapi.yaml
        promoter openapi --format json | jq '.paths | keys'
    """
    import json

    import yaml

    from promoter.engine.security.openapi import load_document
    from promoter.errors import UsageError

    if output_format not in ("yaml", "json"):
        raise UsageError(f"--format {output_format!r}: yaml or json", hint="promoter openapi --format json")
    app = App(plan_path=plan, repo_path=repo)
    doc = load_document(app.repo / app.plan.security.openapi)
    if json_output or output_format == "json":
        print_json(doc) if json_output else typer.echo(json.dumps(doc, indent=2))
    else:
        typer.echo(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), nl=False)


def register(root: typer.Typer) -> None:
    root.command("security")(security)
    root.command("openapi")(openapi)
