"""``promoter build``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from promoter.cli.common import JsonOpt, PlanOpt, console, print_json


def build(
    release: Annotated[
        str | None, typer.Option(help="Release tag baked into the artifact. Default: HEAD's tag.")
    ] = None,
    target: Annotated[
        str, typer.Option(help="lambda: python3.12 manylinux x86_64 wheels; local: this interpreter (sandbox).")
    ] = "lambda",
    out: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("dist"),
    plan: PlanOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Build the Lambda zip of campaigns_lambda, byte-for-byte reproducible; print path, size and sha256."""
    from promoter.engine.build import build as run_build
    from promoter.plan import load_plan

    service = load_plan(plan).service
    err = console(stderr=True)
    artifact = run_build(
        release=release,
        target=target,
        out_dir=out,
        python_version=service.python_version,
        platform=f"manylinux2014_{service.architecture if service.architecture == 'x86_64' else 'aarch64'}",
        progress=lambda msg: err.print(f"[dim]{msg}[/]"),
    )
    if json_output:
        print_json(artifact.to_dict())
        return
    typer.echo(f"{artifact.path}\n  release {artifact.release}  target {artifact.target}")
    typer.echo(f"  size {artifact.size} bytes  files {artifact.files}\n  sha256 {artifact.sha256}")


def register(root: typer.Typer) -> None:
    root.command("build")(build)
