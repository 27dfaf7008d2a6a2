"""``promoter plan validate | show | schema``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from promoter.cli.common import App, EnvOpt, JsonOpt, PlanOpt, console, print_json

plan_app = typer.Typer(help="Validate, show and export the schema of the promotion plan.", no_args_is_help=True)


@plan_app.command("validate")
def validate(
    file: Annotated[Path | None, typer.Argument(help="Plan file. Default: --plan, PROMOTER_PLAN or plans/.")] = None,
    plan: PlanOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Check a plan file: one line per problem (file, line, field path, problem); exit 1 if any."""
    from promoter.errors import PlanError
    from promoter.plan import load_plan

    target = file or plan
    try:
        loaded = load_plan(target)
    except PlanError as exc:
        if json_output:
            print_json({"valid": False, "file": exc.path, "problems": exc.problems})
            raise typer.Exit(1) from None
        raise
    if json_output:
        print_json({"valid": True, "id": loaded.id, "environments": sorted(loaded.environments)})
    else:
        typer.echo(f"plan {loaded.id} is valid: environments {', '.join(sorted(loaded.environments))}")


@plan_app.command("schema")
def schema() -> None:
    """Print the plan's JSON Schema (for editors: yaml-language-server, VS Code)."""
    from promoter.plan.models import Plan

    print_json(Plan.model_json_schema())


@plan_app.command("show")
def show(env: EnvOpt = None, plan: PlanOpt = None, json_output: JsonOpt = False) -> None:
    """Render the plan: environments, phases and steps, gates, canary steps, thresholds and alarms."""
    from promoter.cli.render import render_plan

    app = App(plan_path=plan, env_name=env)
    loaded = app.plan
    chosen = app.env if env else None
    if json_output:
        data = loaded.model_dump(mode="json")
        if chosen:
            data["resolved_names"] = loaded.names(chosen).model_dump()
        print_json(data)
        return
    render_plan(console(), loaded, chosen)


def register(root: typer.Typer) -> None:
    root.add_typer(plan_app, name="plan")
