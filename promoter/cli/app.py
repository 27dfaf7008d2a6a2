"""The ``promoter`` command line: a thin Typer layer over the engine.

Commands load lazily: ``promoter --help`` lists them from :data:`COMMANDS` without importing a single command
module, and ``promoter deploy`` imports only the module that defines ``deploy``. Each module registers its
commands with ``register(root)``; a test keeps :data:`COMMANDS` and the modules in step.

Errors from the engine (``promoter.errors``) are turned into a message on stderr and the exit code of
``promoter.exitcodes`` here, in one place. With ``--json`` the outcome is also one JSON document on stdout,
failures included: ``{"ok": false, "exit_code": 3, "error": "ReleaseFailed", "message": ..., "hint": ...}``,
with the run record when a release ended (its verdicts and numbers).
"""

from __future__ import annotations

import json
import sys
from typing import Any, NamedTuple

import typer
from typer.core import TyperGroup

from promoter import __version__


class CommandEntry(NamedTuple):
    module: str
    summary: str  # the first sentence of the command's help, shown by `promoter --help`


COMMANDS: dict[str, CommandEntry] = {
    "preflight": CommandEntry("promoter.cli.preflight", "Check that ENV is ready for a promotion: account, region, "
                              "DNS, certificate, API domain, table, PITR, bucket, role, function, alias, logs, alarms, "
                              "DLQ, DR (prod), code; list the manual sign-offs."),
    "infra": CommandEntry("promoter.cli.infra", "Terraform for one environment: plan, review, then apply exactly "
                          "the reviewed and approved plan."),
    "approve": CommandEntry("promoter.cli.infra", "Record a manual gate approval (plan gates and manual checks) in "
                            "the environment's ledger."),
    "build": CommandEntry("promoter.cli.build", "Build the Lambda zip of the checkout's campaigns_lambda with its "
                          "dependencies, byte-for-byte reproducible; print path, size and sha256."),
    "deploy": CommandEntry("promoter.cli.release", "Deploy a release: publish a version, pre-traffic gate, shift the "
                           "alias with canary analysis, roll back automatically on a failed verdict."),
    "smoke": CommandEntry("promoter.cli.smoke", "Run the runbook's six smoke tests against the environment's API "
                          "(exit 1 on any failure)."),
    "load": CommandEntry("promoter.cli.load", "Load-test the environment's API with the plan's profile and judge "
                         "it against the plan's SLA (exit 1 on a failed figure)."),
    "rollback": CommandEntry("promoter.cli.release", "Move the alias to a released version at 100 % now "
                             "(RevisionId-guarded, verified, recorded)."),
    "abort": CommandEntry("promoter.cli.release", "Roll an interrupted deploy back to its recorded stable version."),
    "status": CommandEntry("promoter.cli.release", "The alias's versions and weights with their releases, the last "
                           "runs and verdicts, the lock holder."),
    "watch": CommandEntry("promoter.cli.watch", "Watch a release after 100 % on the plan's schedule: check SLA and "
                          "rollback thresholds, roll back inside the rollback window, page after it, record the soak."),
    "replay": CommandEntry("promoter.cli.replay", "Judge a past run's recorded observations again, offline, with other "
                           "thresholds: where it would have stopped."),
    "history": CommandEntry("promoter.cli.release", "Runs and their events, from the ledger."),
    "lock": CommandEntry("promoter.cli.release", "The per-environment lock."),
    "promote": CommandEntry("promoter.cli.promote", "Run the plan's phases for ENV (dev: dev-deployment; "
                            "sit: sit-promotion, sit-validation; prod: prod-promotion) step by step."),
    "evidence": CommandEntry("promoter.cli.evidence", "The evidence packs of promotion runs: show and verify."),
    "rehearse": CommandEntry("promoter.cli.rehearse", "Run the whole promotion offline against a fresh sandbox and "
                             "report, step by step, what happened."),
    "sandbox": CommandEntry("promoter.cli.sandbox", "Run the embedded sandbox: moto, a Lambda front and an API front "
                            "on 127.0.0.1, seeded with one environment's baseline."),
    "plan": CommandEntry("promoter.cli.plan", "Validate, show and export the schema of the promotion plan."),
    "ledger": CommandEntry("promoter.cli.ledger", "The ledger: verify its hash chain, migrate it to a shared store."),
    "security": CommandEntry("promoter.cli.security", "Run the security checks against ENV's API and storage (exit 1 "
                             "on any high finding)."),
    "openapi": CommandEntry("promoter.cli.security", "Print the service's OpenAPI document (the file the plan's "
                            "security.openapi names, in the checkout)."),
    "ci": CommandEntry("promoter.cli.ci", "For CI jobs: the plan's names for a job (outputs), the GitHub reviewers' "
                       "approvals, job summaries."),
}

_json_requested = False


def _wants_json(args: list[str]) -> bool:
    return "--json" in (args[: args.index("--")] if "--" in args else args)


def error_document(exc: BaseException, exit_code: int) -> dict[str, Any]:
    """What ``--json`` prints when a command fails: the exit code, the message, the hint, and any details the
    engine attached (the run record of a release, a plan's problems)."""
    doc: dict[str, Any] = {"ok": False, "exit_code": exit_code, "error": type(exc).__name__,
                           "message": getattr(exc, "message", None) or str(exc) or type(exc).__name__,
                           "hint": getattr(exc, "hint", None)}
    problems = getattr(exc, "problems", None)
    if problems:
        doc["problems"] = list(problems)
    details = getattr(exc, "details", None)
    if details:
        doc.update(details)
    return doc


def _print_json_error(exc: BaseException, exit_code: int) -> None:
    typer.echo(json.dumps(error_document(exc, exit_code), indent=2, sort_keys=True, default=str))


class PromoterGroup(TyperGroup):
    """The root group: loads commands on demand; maps engine exceptions to a message, an exit code and, with
    ``--json``, a JSON document, for every command and sub-command."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self._load(COMMANDS[cmd_name].module)
        return self.commands.get(cmd_name)

    def _load(self, module_name: str) -> None:
        import importlib

        import typer.main

        scratch = typer.Typer(pretty_exceptions_show_locals=False, rich_markup_mode=None)
        importlib.import_module(module_name).register(scratch)
        group = typer.main.get_group(scratch)
        for name, command in group.commands.items():
            self.commands.setdefault(name, command)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, _shorten(entry.summary, limit)) for name, entry in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def main(self, args: Any = None, *pos: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        global _json_requested
        argv = list(sys.argv[1:] if args is None else args)
        _json_requested = _wants_json(argv)
        if not _json_requested:
            return super().main(argv, *pos, **kwargs)
        standalone = kwargs.pop("standalone_mode", True)
        ce = _click_exceptions()
        try:
            code = super().main(argv, *pos, standalone_mode=False, **kwargs)
        except ce.ClickException as exc:  # usage errors: unknown option, missing value
            exc.show()
            _print_json_error(exc, exc.exit_code)
            code = exc.exit_code
        except typer.Abort as exc:
            _print_json_error(exc, 1)
            code = 1
        code = code if isinstance(code, int) else 0
        if standalone:
            sys.exit(code)
        return code

    def invoke(self, ctx: Any):  # type: ignore[override]
        from promoter.errors import PromoterError

        try:
            result = super().invoke(ctx)
        except PromoterError as exc:
            _report(exc)
            if _json_requested:
                _print_json_error(exc, int(exc.exit_code))
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt as exc:
            if _json_requested:
                _print_json_error(exc, 130)
            raise
        except Exception as exc:
            if _json_requested and not _is_exit(exc):
                _print_json_error(exc, 1)  # an unexpected error still answers in JSON; the traceback follows
            raise
        return result


def _click_exceptions() -> Any:
    """The click that typer runs on: vendored as ``typer._click`` by recent typer, the click package before."""
    try:
        from typer._click import exceptions
    except ImportError:  # pragma: no cover - older typer
        from click import exceptions
    return exceptions


def _is_exit(exc: BaseException) -> bool:
    return isinstance(exc, typer.Exit | typer.Abort | _click_exceptions().ClickException)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 3, 10)].rsplit(" ", 1)[0] + "..."


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
    "promotion offline against an embedded sandbox. `promoter COMMAND --help` documents each command.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=True,
    # plain help: rendering it with rich would cost more than the rest of `promoter --help` together
    rich_markup_mode=None,
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
    back cleanly; 4 rollback failed, manual action needed; 5 waiting for approval; 130 interrupted with the alias
    held."""
    if state:
        import os

        os.environ["PROMOTER_STATE"] = state  # every command's App.ledger() reads it


def main() -> None:
    sys.exit(app())
