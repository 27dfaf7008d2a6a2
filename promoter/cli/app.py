"""The ``promoter`` command line: a thin Typer layer over the engine.

Every command module registers itself on the root app. Errors from the engine (``promoter.errors``) are
turned into a message on stderr and the exit code of ``promoter.exitcodes`` here, in one place.
"""

from __future__ import annotations

import sys

import click
import typer
from typer.core import TyperGroup

from promoter import __version__


class PromoterGroup(TyperGroup):
    """Maps engine exceptions to a message and an exit code, for every command and sub-command."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        from promoter.errors import PromoterError

        try:
            return super().invoke(ctx)
        except PromoterError as exc:
            _report(exc)
            raise typer.Exit(int(exc.exit_code)) from None


def _report(exc) -> None:
    from rich.markup import escape

    from promoter.cli.common import console

    # Messages quote user input (regexes with [a-z], paths): escape them; never wrap, one problem per line.
    err = console(stderr=True)
    err.print(f"[bold red]error:[/] {escape(exc.message)}", markup=True, highlight=False, soft_wrap=True)
    if exc.hint:
        err.print(f"[dim]hint:[/] {escape(exc.hint)}", markup=True, highlight=False, soft_wrap=True)


app = typer.Typer(
    cls=PromoterGroup,
    name="promoter",
    help="Promote the campaigns API through DEV, SIT and PROD: preflight, infra, deploy with canary "
    "analysis and automatic rollback, smoke tests, rollback, status. `promoter rehearse` runs the whole "
    "promotion offline against an embedded sandbox.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"promoter {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
    state: str | None = typer.Option(
        None, "--state", help="State store (ledger, lock, approvals) for this command: s3://bucket/prefix or a "
        "directory; the same as PROMOTER_STATE. Default: the plan's `state:` section, else .promoter/."),
) -> None:
    """Exit codes: 0 ok; 1 refused or check failed, nothing changed; 2 usage; 3 release failed and rolled
    back cleanly; 4 rollback failed, manual action needed."""
    if state:
        import os

        os.environ["PROMOTER_STATE"] = state  # every command's App.ledger() reads it


def _register() -> None:
    # each module imports only typer at the top; the engine, boto3 and moto load when a command runs
    from promoter.cli import build, infra, ledger, plan, preflight, rehearse, release, sandbox, smoke

    for module in (plan, preflight, infra, build, release, smoke, sandbox, rehearse, ledger):
        module.register(app)


_register()


def main() -> None:
    sys.exit(app())
