"""``promoter build``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from promoter.cli.common import App, JsonOpt, PlanOpt, RepoOpt, console, print_json


def build(
    release: Annotated[
        str | None,
        typer.Option(help="Release tag baked into the artifact. Default: HEAD's release tag, else dev-<sha>."),
    ] = None,
    target: Annotated[
        str,
        typer.Option(help="lambda: the runtime's manylinux wheels (what AWS runs; the sandbox runs it under the same "
                     "Python); local: this interpreter's wheels, a fallback where that Python is missing."),
    ] = "lambda",
    out: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("dist"),
    repo: RepoOpt = None,
    plan: PlanOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Build the Lambda zip of the checkout's campaigns_lambda with its dependencies, byte-for-byte
    reproducible; print path, size and sha256."""
    from promoter.engine.build import build as run_build
    from promoter.engine.build import resolve_release

    app = App(plan_path=plan, repo_path=repo, json_output=json_output)
    root = app.repo
    service = app.plan.service
    err = console(stderr=True)
    artifact = run_build(
        repo=root,
        release=release or resolve_release(None, root, app.plan.code.tag_pattern),
        target=target,
        out_dir=out,
        python_version=service.python_version,
        platform=service.wheel_platform,
        progress=lambda msg: err.print(f"[dim]{msg}[/]"),
    )
    if json_output:
        print_json(artifact.to_dict())
        return
    typer.echo(f"{artifact.path}\n  release {artifact.release}  target {artifact.target}")
    typer.echo(f"  size {artifact.size} bytes  files {artifact.files}\n  sha256 {artifact.sha256}")


def register(root: typer.Typer) -> None:
    root.command("build")(build)
