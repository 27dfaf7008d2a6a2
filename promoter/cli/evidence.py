"""``promoter evidence show | verify RUN_ID``: the evidence pack of a promotion run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from promoter.cli.common import App, JsonOpt, LedgerOpt, print_json

evidence_app = typer.Typer(help="The evidence packs of promotion runs: show and verify.", no_args_is_help=True,
                           pretty_exceptions_show_locals=False)
RunArg = Annotated[str, typer.Argument(help="The pipeline run id (promoter promote prints it).")]
EnvFilter = Annotated[str | None, typer.Option("--env", "-e", help="Only this environment's ledger.")]


@evidence_app.command("show")
def show(run_id: RunArg, env: EnvFilter = None, ledger_dir: LedgerOpt = None, json_output: JsonOpt = False) -> None:
    """Where the run's latest pack is, what it holds, and its report."""
    from promoter.engine.evidence import find_pack

    app = App(ledger_dir=ledger_dir)
    record = find_pack(app.ledger(), run_id, env)
    folder = Path(record["folder"])
    index = json.loads((folder / "index.json").read_text())
    if json_output:
        print_json({"pack": record, "index": index})
        return
    typer.echo(f"evidence pack {record['seq']:02d} of {run_id} ({record['env']})\n  folder  {folder}\n"
               f"  archive {record['archive']}\n  index   sha256 {record['index_sha256']}")
    for name, digest in index["files"].items():
        typer.echo(f"  {digest[:12]}  {name}")
    typer.echo("")
    typer.echo((folder / "report.md").read_text())


@evidence_app.command("verify")
def verify(run_id: RunArg, env: EnvFilter = None, ledger_dir: LedgerOpt = None, json_output: JsonOpt = False) -> None:
    """Recompute the sha256 of every file, the archive and the chain to the previous pack (exit 1 on a mismatch)."""
    from promoter.engine.evidence import verify_pack

    app = App(ledger_dir=ledger_dir)
    result = verify_pack(app.ledger(), run_id, env)
    if json_output:
        print_json(result)
        return
    chained = f"; chained to {result['previous']['pipeline_id']}" if result["previous"] else "; first of the chain"
    typer.echo(f"evidence pack of {run_id} verifies: {result['files']} files, archive and index match{chained}")


def register(root: typer.Typer) -> None:
    root.add_typer(evidence_app, name="evidence")
