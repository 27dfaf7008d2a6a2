"""``promoter sandbox``: the embedded AWS look-alike on loopback (up, env, status, token, down)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from promoter.cli.common import App, EnvOpt, JsonOpt, PlanOpt, RepoOpt, console, print_json

StateDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        envvar="PROMOTER_SANDBOX",
        help="Sandbox state directory (pids, logs, env.sh). Default: <ledger home>/sandbox.",
        show_default=False,
    ),
]
DEFAULT_ENV = "sit"


def register(root: typer.Typer) -> None:
    app = typer.Typer(
        name="sandbox",
        help="Run the embedded sandbox: moto, a Lambda front and an API front on 127.0.0.1, seeded with one "
        "environment's baseline. Then `eval \"$(promoter sandbox env)\"` points AWS SDKs, the AWS CLI and every "
        "promoter command at it.",
        no_args_is_help=True,
        pretty_exceptions_show_locals=False,
    )

    @app.command("up")
    def up(
        env: EnvOpt = None,
        plan: PlanOpt = None,
        repo: RepoOpt = None,
        state_dir: StateDirOpt = None,
        timeout: Annotated[float, typer.Option("--timeout", help="Seconds each process may take to answer.")] = 30.0,
        json_output: JsonOpt = False,
    ) -> None:
        """Start the sandbox in the background and seed it (refuses if one already runs in the state dir); its
        v1.0.0 is the checkout's code, built for Lambda."""
        from promoter.plan.loader import default_plan_path
        from promoter.sandbox.manager import Sandbox

        application = App(plan_path=plan, env_name=env or DEFAULT_ENV, repo_path=repo)
        root = application.repo
        sandbox = Sandbox.up(
            plan=application.plan,
            env=application.env,
            state_dir=state_dir,
            repo=root,
            plan_path=plan or default_plan_path(root),
            ready_timeout=timeout,
            progress=lambda message: typer.echo(message, err=True),
        )
        if json_output:
            print_json({"endpoints": sandbox.endpoints, "env": sandbox.env_vars(),
                        "env_file": str(sandbox.state_dir / "env.sh"), "ready_seconds": sandbox.state["ready_seconds"]})
            return
        out = console()
        out.print(f"sandbox for {sandbox.env} is up ({sandbox.state['ready_seconds']}s), account "
                  f"{sandbox.state['account_id']}, region {sandbox.region}")
        for name, url in sandbox.endpoints.items():
            out.print(f"  {name.rstrip('_'):<7} {url}")
        out.print(f"  env     {sandbox.state_dir / 'env.sh'}")
        out.print('point your shell at it:  eval "$(promoter sandbox env)"' if state_dir is None else
                  f'point your shell at it:  eval "$(promoter sandbox env --state-dir {sandbox.state_dir})"')

    @app.command("env")
    def env_(state_dir: StateDirOpt = None, json_output: JsonOpt = False) -> None:
        """Print the shell lines that point AWS SDKs, the AWS CLI and promoter at the running sandbox.

        Use: eval "$(promoter sandbox env)". With --json, the same variables as one JSON object.
        """
        from promoter.sandbox.manager import ENV_FILE, Sandbox

        sandbox = Sandbox.attach(state_dir)
        if json_output:
            print_json(sandbox.env_vars())
            return
        path = sandbox.state_dir / ENV_FILE
        typer.echo(path.read_text() if path.exists() else sandbox.env_script(), nl=False)

    @app.command("status")
    def status(state_dir: StateDirOpt = None, json_output: JsonOpt = False) -> None:
        """Show the processes, endpoints, function versions and the alias weights (exit 1 when a process is gone)."""
        from promoter.sandbox.manager import Sandbox

        report = Sandbox.attach(state_dir).status()
        if json_output:
            print_json(report)
        else:
            _render_status(report)
        if not report["healthy"]:
            raise typer.Exit(1)  # a process of the sandbox is gone: `down`, then `up` again

    @app.command("token")
    def token(
        group: Annotated[
            str, typer.Option("--group", "-g", help="campaigns-viewer, campaigns-editor, campaigns-admin or none.")
        ] = "campaigns-admin",
        state_dir: StateDirOpt = None,
        json_output: JsonOpt = False,
    ) -> None:
        """Print a Cognito IdToken (a bearer token for the API front) of that group's test user.

        Use: curl -H "Authorization: Bearer $(promoter sandbox token -g campaigns-viewer)" "$PROMOTER_API_URL/..."
        """
        from promoter.sandbox.manager import Sandbox

        value = Sandbox.attach(state_dir).token(group)
        if json_output:
            print_json({"group": group, "token_type": "Bearer", "token": value})
            return
        typer.echo(value)

    @app.command("down")
    def down(state_dir: StateDirOpt = None, json_output: JsonOpt = False) -> None:
        """Stop every process the sandbox started (workers included); nothing to stop is not an error."""
        from promoter.sandbox.manager import Sandbox, default_state_dir

        sandbox = Sandbox.recorded(state_dir)  # running or not: down also clears a stale record
        if sandbox is None:
            directory = Path(state_dir or default_state_dir()).resolve()
            if json_output:
                print_json({"state_dir": str(directory), "stopped": []})
            console(stderr=True).print(f"no sandbox in {directory}; nothing to stop", highlight=False)
            return
        stopped = sorted(sandbox.state.get("processes", {}))
        sandbox.down()
        if json_output:
            print_json({"state_dir": str(sandbox.state_dir), "stopped": stopped})
        console(stderr=True).print(f"sandbox in {sandbox.state_dir} stopped", highlight=False)

    faults = typer.Typer(
        name="fault",
        help="Inject control-plane faults into the running sandbox: throttling, 5xx, latency, or a reply dropped "
        "after the call took effect, per service and operation, for a count of calls or a time.",
        no_args_is_help=True,
        pretty_exceptions_show_locals=False,
    )

    @faults.command("add")
    def fault_add(
        service: Annotated[str, typer.Option("--service", help="lambda, cloudwatch, sts, sqs, logs, ...")],
        kind: Annotated[str, typer.Option("--kind", help="throttle, error (5xx), latency or drop.")],
        operation: Annotated[str, typer.Option("--operation", help="UpdateAlias, GetAlias, ... or *.")] = "*",
        count: Annotated[int | None, typer.Option("--count", min=1, help="Calls it hits (default 1).")] = None,
        seconds: Annotated[float | None, typer.Option("--seconds", help="For this long from now.")] = None,
        status: Annotated[int | None, typer.Option("--status", help="The 5xx of an error fault.")] = None,
        latency_ms: Annotated[float, typer.Option("--latency-ms", help="The delay of a latency fault.")] = 0.0,
        state_dir: StateDirOpt = None,
        json_output: JsonOpt = False,
    ) -> None:
        """Add one fault rule; it ends after --count calls or --seconds, whichever comes first."""
        from promoter.sandbox.manager import Sandbox

        rule: dict = {"service": service, "operation": operation, "kind": kind, "latency_ms": latency_ms}
        rule.update({k: v for k, v in (("count", count), ("seconds", seconds), ("status", status)) if v is not None})
        added = Sandbox.attach(state_dir).add_fault(rule)
        if json_output:
            print_json(added)
            return
        typer.echo(f"fault {added['id']}: {added['kind']} on {added['service']} {added['operation']} "
                   + (f"for {added['count']} call(s)" if added.get("count") else "")
                   + (f" for {added['seconds']:g}s" if added.get("seconds") else ""))

    @faults.command("list")
    def fault_list(state_dir: StateDirOpt = None, json_output: JsonOpt = False) -> None:
        """The fault rules of the running sandbox, with how many calls each hit."""
        from promoter.sandbox.manager import Sandbox

        rules = Sandbox.attach(state_dir).faults()
        if json_output:
            print_json(rules)
            return
        for r in rules:
            typer.echo(f"{r['id']} {r['kind']:<8} {r['service']} {r['operation']} hits={r['hits']} "
                       f"{'active' if r['active'] else 'spent'}")
        if not rules:
            typer.echo("no faults")

    @faults.command("clear")
    def fault_clear(state_dir: StateDirOpt = None, json_output: JsonOpt = False) -> None:
        """Remove every fault rule."""
        from promoter.sandbox.manager import Sandbox

        cleared = Sandbox.attach(state_dir).clear_faults()
        if json_output:
            print_json({"cleared": cleared})
            return
        typer.echo(f"cleared {cleared} fault(s)")

    app.add_typer(faults, name="fault")
    root.add_typer(app, name="sandbox")


def _python_text(python: dict) -> str:
    if "error" in python:
        return "no interpreter: " + python["error"]
    if not python:
        return "n/a"
    text = f"Python {python['version']} {python['path']} ({python['found_by']})"
    return text if python.get("matches_runtime") else text + " - NOT the runtime's Python"


def _render_status(report: dict) -> None:
    from rich.table import Table

    out = console()
    out.print(f"sandbox {report['env']} ({report['account_id']}, {report['region']}) in {report['state_dir']}: "
              f"{'healthy' if report['healthy'] else 'DEGRADED'}", highlight=False)
    table = Table("process", "pid", "alive", "port", "url", "log")
    for name, proc in report["processes"].items():
        table.add_row(name, str(proc["pid"]), "yes" if proc["alive"] else "NO", str(proc["port"]), proc["url"],
                      proc["log"])
    out.print(table)
    function = report.get("function", {})
    if "error" in function:
        out.print(f"function: cannot be read: {function['error']}", highlight=False)
        return
    versions = Table("version", "description", "runtime", "runs under", title=f"function {function['name']}")
    for version in function["versions"]:
        versions.add_row(version["version"], version["description"], version.get("runtime") or "n/a",
                         _python_text(version.get("python") or {}))
    out.print(versions)
    alias = function["alias"]
    weights = " / ".join(f"v{v} {w * 100:g} %" for v, w in alias["weights"].items())
    out.print(f"alias {alias['name']} -> version {alias['version']} ({weights})", highlight=False)
