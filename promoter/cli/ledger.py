"""``promoter ledger verify | migrate``: check the hash chain of an environment's ledger; copy a ledger to S3."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from promoter.cli.common import App, EnvOpt, JsonOpt, LedgerOpt, PlanOpt, ProfileOpt, StateOpt, print_json

ledger_app = typer.Typer(help="The ledger: verify its hash chain, migrate it to a shared store.",
                         no_args_is_help=True, pretty_exceptions_show_locals=False)


@ledger_app.command("verify")
def verify(
    env: EnvOpt = None,
    plan: PlanOpt = None,
    ledger_dir: LedgerOpt = None,
    state: StateOpt = None,
    profile: ProfileOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Check every record's hash and link; exit 1 naming each record that was edited, deleted or reordered."""
    app = App(plan_path=plan, env_name=env, ledger_dir=ledger_dir, state_url=state, profile=profile,
              json_output=json_output)
    ledger = app.ledger()
    report = ledger.verify(app.env)
    data = {**report.to_dict(), "store": ledger.describe(app.env)}
    if json_output:
        print_json(data)
    else:
        for problem in report.problems:
            typer.echo(f"broken: {problem}", err=True)
        for where in report.unreadable:
            typer.echo(f"warning: {where} is not a whole record and is outside the chain", err=True)
        state_word = "intact" if report.ok else f"BROKEN ({len(report.problems)} problem(s))"
        extra = f", {report.unchained} written before chaining" if report.unchained else ""
        typer.echo(f"{app.env}: {report.records} records{extra}, chain {state_word} ({data['store']})")
    if not report.ok:
        raise typer.Exit(1)


@ledger_app.command("show")
def show(
    env: EnvOpt = None,
    kind: Annotated[str | None, typer.Option("--kind", help="Only records of this kind (approval, run-end, ...).")]
    = None,
    run_id: Annotated[str | None, typer.Option("--run", help="Only the records of this run.")] = None,
    plan: PlanOpt = None,
    ledger_dir: LedgerOpt = None,
    state: StateOpt = None,
    profile: ProfileOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """The environment's records, oldest first, from whichever store is configured."""
    app = App(plan_path=plan, env_name=env, ledger_dir=ledger_dir, state_url=state, profile=profile,
              json_output=json_output)
    ledger = app.ledger()
    records = ledger.records(app.env, kind=kind, run_id=run_id)
    if json_output:
        print_json({"env": app.env, "store": ledger.describe(app.env), "records": records,
                    "warnings": ledger.warnings(app.env)})
        return
    for r in records:
        rest = {k: v for k, v in r.items() if k not in {"ts", "env", "kind", "seq", "prev", "hash"}}
        typer.echo(f"{r.get('seq', '-'):>5} {r['ts']} {r['kind']:<14} {json.dumps(rest, sort_keys=True, default=str)}")
    for line in ledger.warnings(app.env):
        typer.echo(f"warning: {line}", err=True)


@ledger_app.command("migrate")
def migrate(
    to: Annotated[str, typer.Option("--to", help="Destination store: s3://bucket/prefix or a directory.")],
    env: Annotated[list[str] | None, typer.Option(
        "--env", "-e", help="Environment to copy (repeatable). Default: every environment of the plan.")] = None,
    plan: PlanOpt = None,
    ledger_dir: LedgerOpt = None,
    state: StateOpt = None,
    profile: ProfileOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Copy the ledger (default: the local one) into another store, idempotently: records already copied are
    skipped, so running it again copies only what is new. The lock is not copied."""
    from promoter.engine.ledger import migrate_ledger

    app = App(plan_path=plan, ledger_dir=ledger_dir, state_url=state, profile=profile, json_output=json_output)
    envs = list(env) if env else sorted(app.plan.environments)
    source = app.ledger()
    destination = app.ledger_at(to)
    results = [migrate_ledger(source, destination, name) for name in envs]
    if json_output:
        print_json({"to": to, "environments": results})
        return
    for r in results:
        typer.echo(f"{r['env']}: {r['copied']} copied, {r['skipped']} already there "
                   f"({r['from']} -> {r['to']})")


def register(root: typer.Typer) -> None:
    root.add_typer(ledger_app, name="ledger")
