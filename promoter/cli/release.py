"""``promoter deploy | rollback | status | history | abort | lock break``: thin commands over the release engine."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from promoter.cli.common import (
    AllowUntaggedOpt,
    AnalysisIntervalOpt,
    App,
    EnvOpt,
    EnvVarOpt,
    JsonOpt,
    LedgerOpt,
    LockWaitOpt,
    OnInterruptOpt,
    OutOpt,
    PlanOpt,
    ProfileOpt,
    ReleaseOpt,
    RepoOpt,
    TargetOpt,
    YesOpt,
    console,
    print_json,
)
from promoter.cli.text import figure, routing


def _parse_env_vars(values: list[str] | None) -> dict[str, str]:
    from promoter.errors import UsageError

    out: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--env-var {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def _check_numbers(*, bake: float | None = None, analysis_interval: float | None = None,
                   lock_wait: float = 0) -> None:
    """Refuse numbers that make no sense before anything is built or called."""
    from promoter.errors import UsageError

    if bake is not None and bake < 0:
        raise UsageError(f"--bake {bake:g}: must be 0 or more seconds")
    if analysis_interval is not None and analysis_interval <= 0:
        raise UsageError(f"--analysis-interval {analysis_interval:g}: must be more than 0 seconds")
    if lock_wait < 0:
        raise UsageError(f"--lock-wait {lock_wait:g}: must be 0 or more seconds")


def _confirm(app: App, env: str, lines: list[str], yes: bool) -> None:
    """Environments the plan marks ``confirm`` ask before acting; without a terminal and --yes, refuse."""
    from promoter.errors import RefusedError

    if yes or not app.plan.environment(env).confirm:
        return
    if not sys.stdin.isatty():
        raise RefusedError(f"{env} needs confirmation and there is no terminal to ask", hint="pass --yes in CI")
    err = console(stderr=True)
    for line in lines:
        err.print(line)
    if not typer.confirm(f"Proceed in {env}?", default=False, err=True):
        raise RefusedError("not confirmed; nothing changed")


class LiveDisplay:
    """Renders release events on stderr: a rich Live panel on a terminal, plain lines otherwise."""

    def __init__(self, json_output: bool) -> None:
        self.err = console(stderr=True)
        self.state: dict[str, Any] = {"step": "-", "weights": "-", "bake_left": None, "verdict": "-"}
        self.live = None
        if self.err.is_terminal and not json_output:
            from rich.live import Live

            self.live = Live(self._render(), console=self.err, refresh_per_second=4, transient=False)

    def __enter__(self) -> LiveDisplay:
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.live.__exit__(None, None, None)

    def _render(self):
        from rich.table import Table

        table = Table(show_header=False, box=None, pad_edge=False)
        s = self.state
        table.add_row("step", str(s["step"]))
        table.add_row("alias", str(s["weights"]))
        if s["bake_left"] is not None:
            table.add_row("bake left", f"{s['bake_left']:.0f}s")
        if s.get("next_analysis_in") is not None:
            every = f" (every {s['interval']:g}s)" if s.get("interval") else ""
            table.add_row("next analysis", f"in {s['next_analysis_in']:.0f}s{every}")
        if s.get("deadline_in") is not None:
            table.add_row("deadline", f"in {s['deadline_in']:.0f}s (bake plus the longest extension)")
        table.add_row("canary", str(s.get("canary", "-")))
        table.add_row("stable", str(s.get("stable", "-")))
        table.add_row("verdict", str(s["verdict"]))
        return table

    def line(self, text: str) -> None:
        if self.live:
            self.live.console.print(text, markup=False, highlight=False)
        else:
            self.err.print(text, markup=False, highlight=False)

    def __call__(self, event) -> None:
        d = event.data
        if event.kind == "progress":
            self.line(d["message"])
        elif event.kind == "planned":
            for action in d.get("actions", []):
                self.line(f"plan: {action}")
        elif event.kind == "step":
            self.state["step"] = f"{d.get('name')} {d.get('status', '')} {d.get('version', '')}".strip()
            self.line(self.state["step"])
        elif event.kind == "gate":
            for r in d["results"]:
                mark = "ok" if r["ok"] else "FAIL " + "; ".join(r["problems"])
                self.line(f"pre-traffic {r['name']:<16} {r['method']:<6} {r['path']:<48} {r['status']} {mark}")
        elif event.kind == "shift":
            self.state["weights"] = routing(d["alias"])
            self.state["step"] = f"shift {d['step']} -> {d['weight']}% on the new version"
            self.line(self.state["step"])
        elif event.kind == "tick":
            self.state["bake_left"] = d["bake_left"]
            for key in ("next_analysis_in", "deadline_in", "interval"):
                self.state[key] = d.get(key)
        elif event.kind == "verdict":
            obs = d["observation"]
            for who in ("canary", "stable"):
                m = obs.get(who)
                if m:
                    self.state[who] = (f"v{m['version']} n={m['invocations']:g} "
                                       f"err={figure(m['error_rate_pct'], '%')} p95={figure(m['p95_ms'], 'ms')}")
            self.state["verdict"] = verdict_line(d)
            self.line(f"verdict at {d['step']}% after {d['elapsed']:.0f}s: {self.state['verdict']}")
        elif event.kind == "rollback":
            self.line(f"rolling back to version {d['to']}: {d['reason']}")
        elif event.kind == "end":
            self.line(f"{d['outcome']}: {d['reason']}")
        if self.live:
            self.live.update(self._render())


def _env_of(app: App, command: str) -> str:
    """The command's environment; a plan that does not load is a refusal, recorded in that environment's ledger."""
    import re

    from promoter.errors import PlanError

    try:
        return app.env
    except PlanError as exc:
        if app.env_name and re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", app.env_name):
            from promoter.engine.ledger import new_run_id, whoami

            app.ledger().append(app.env_name, "refusal", run_id=new_run_id(), command=command, outcome="refused",
                                reason=f"the plan did not load: {exc}", error="PlanError", hint=exc.hint,
                                who=whoami(), release=None)
        raise


def verdict_line(v: dict[str, Any]) -> str:
    """One verdict as one line: the test's counts, p-value or bound, threshold and decision, then what follows."""
    text = v.get("line") or "; ".join(v.get("reasons") or []) or str(v.get("outcome"))
    extra = [f"{v.get('action')}"]
    if v.get("action") == "wait" and v.get("next_analysis") is not None:
        extra.append(f"next analysis at {v['next_analysis']:g}s, deadline {v.get('deadline', 0):g}s")
    age = (v.get("observation") or {}).get("data_age_seconds")
    if age is not None:
        extra.append(f"newest datapoint {age:.0f}s old")
    return f"{text} -> {', '.join(extra)}"


def _ports(app: App, env: str):
    from promoter.engine.notify import notifier_for
    from promoter.engine.release import Ports

    ledger = app.ledger()
    ports = Ports.for_aws(app.aws(env), app.plan, env, ledger)
    ports.notifier = notifier_for(app.plan, env, app.aws(env), ledger)
    return ports


def _flush_notifications(ports: Any) -> None:
    """Give the notifications under way their bounded time before the command exits (they never fail it)."""
    if getattr(ports, "notifier", None) is not None:
        ports.notifier.flush()


def deploy(
    ctx: typer.Context,
    env: EnvOpt = None,
    canary: Annotated[bool, typer.Option(
        "--canary", help="Shift by the plan's canary steps (default where its strategy is canary).")] = False,
    all_at_once: Annotated[str | None, typer.Option(
        "--all-at-once", metavar="REASON",
        help="Shift straight to 100 % where the plan says canary; the reason is recorded. Refused where the plan "
        "requires the canary.")] = None,
    release_tag: ReleaseOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan with read-only calls; change nothing.")] = False,
    yes: YesOpt = False,
    bake: Annotated[float | None, typer.Option("--bake", help="Override bake seconds (rehearsals).")] = None,
    analysis_interval: AnalysisIntervalOpt = None,
    artifact: Annotated[Path | None, typer.Option("--artifact", help="Deploy this zip instead of building.")] = None,
    target: TargetOpt = None,
    env_var: EnvVarOpt = None,
    on_interrupt: OnInterruptOpt = "rollback",
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted run from the ledger.")] = False,
    allow_untagged: AllowUntaggedOpt = False,
    lock_wait: LockWaitOpt = 0,
    out: OutOpt = Path("dist"),
    repo: RepoOpt = None,
    plan: PlanOpt = None,
    profile: ProfileOpt = None,
    ledger_dir: LedgerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Deploy a release: publish a version, pre-traffic gate, shift the alias with canary analysis, roll back
    automatically on a failed verdict. Exit 3: rolled back; 4: rollback failed."""
    from promoter.engine import release
    from promoter.errors import UsageError

    if on_interrupt not in ("rollback", "hold"):
        raise UsageError("--on-interrupt must be rollback or hold")
    _check_numbers(bake=bake, analysis_interval=analysis_interval, lock_wait=lock_wait)
    if target is not None:
        from promoter.engine.build import TARGETS

        if target not in TARGETS:
            raise UsageError(f"--target {target!r}: choose one of: {', '.join(TARGETS)}")
    app = App(plan_path=plan, env_name=env, profile=profile, ledger_dir=ledger_dir, json_output=json_output,
              repo_path=repo)
    env_name = _env_of(app, "deploy")
    settings = release.DeploySettings(
        plan=app.plan, env=env_name, release=release_tag, canary=canary, dry_run=dry_run, bake_seconds=bake,
        analysis_interval=analysis_interval, artifact=artifact, target=target, env_vars=_parse_env_vars(env_var),
        on_interrupt=on_interrupt, resume=resume, lock_wait=lock_wait, allow_untagged=allow_untagged, out_dir=out,
        all_at_once_reason=all_at_once, repo=app.repo,
    )
    release.check_strategy(settings)
    ports = _ports(app, env_name)
    if not dry_run:
        names = app.plan.names(env_name)
        steps = release.plan_steps(app.plan, env_name, canary=canary, bake_seconds=bake,
                                   all_at_once=all_at_once is not None)
        asking = app.plan.environment(env_name).confirm and not yes and sys.stdin.isatty()
        if asking:
            ports.guard_account(env_name)  # never ask about an account the credentials do not reach
        current = ports.router.read() if asking else None
        _confirm(app, env_name, [
            f"account {app.plan.environment(env_name).account_id} ({env_name}), function {names.function}, "
            f"alias {names.alias}",
            f"stable version {current.version if current else '?'}; release {release_tag or 'HEAD tag'}",
            "steps: " + " -> ".join(f"{s.weight}% (bake {s.bake_seconds:g}s)" for s in steps),
        ], yes)
    try:
        with release.sigterm_as_interrupt(), LiveDisplay(json_output) as display:
            record = release.deploy(settings, ports, display)
    finally:
        _hold_off_late_interrupts(ctx)
        _flush_notifications(ports)
    _print_record(record, json_output)


def _hold_off_late_interrupts(ctx: typer.Context) -> None:
    """Once the engine has returned or raised, the run's record is written: until the command has printed the
    outcome and exited, Ctrl-C and SIGTERM are ignored, so a late one cannot replace the run's exit code."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    if _exits_after_the_command():
        return  # the interpreter ends with the command: held off to the end, so the exit code is the run's

    def restore() -> None:  # the command runs inside another program (a test runner): give the signals back
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    ctx.find_root().call_on_close(restore)


def _exits_after_the_command() -> bool:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return (spec is not None and spec.name == "promoter.__main__") or Path(sys.argv[0]).name == "promoter"


def _print_record(record, json_output: bool) -> None:
    if json_output:
        print_json(record.to_dict())
        return
    typer.echo(f"{record.kind} {record.run_id}: {record.outcome} - {record.reason}")
    if record.plan and record.outcome == "dry-run":
        for action in record.plan["actions"]:
            typer.echo(f"  {action}")
    if record.alias:
        typer.echo(f"  alias: {routing(record.alias)}")


def rollback(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", help="Release tag (v1.0.0), 'previous', or a version number.")],
    env: EnvOpt = None,
    yes: YesOpt = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Resolve and show; change nothing.")] = False,
    allow_failed: Annotated[
        bool, typer.Option("--allow-failed", help="Allow a version that failed its canary (never served 100 %).")
    ] = False,
    lock_wait: LockWaitOpt = 0,
    plan: PlanOpt = None,
    profile: ProfileOpt = None,
    ledger_dir: LedgerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Move the alias to a released version at 100 % now (RevisionId-guarded, verified, recorded)."""
    from promoter.engine import release

    _check_numbers(lock_wait=lock_wait)

    app = App(plan_path=plan, env_name=env, profile=profile, ledger_dir=ledger_dir, json_output=json_output)
    env_name = _env_of(app, "rollback")
    ports = _ports(app, env_name)
    acknowledged = yes
    if not dry_run:
        _confirm(app, env_name, [f"roll back {app.plan.names(env_name).function} in {env_name} to {to}"], yes)
        acknowledged = yes or _acknowledge_changes(app, env_name, to, ports, allow_failed)
    try:
        record = release.rollback_to(
            release.RollbackSettings(plan=app.plan, env=env_name, to=to, lock_wait=lock_wait, dry_run=dry_run,
                                     allow_failed=allow_failed, acknowledge_changes=acknowledged), ports
        )
    finally:
        _hold_off_late_interrupts(ctx)
    _print_record(record, json_output)


def _acknowledge_changes(app: App, env: str, to: str, ports: Any, allow_failed: bool) -> bool:
    """Warn when the target is older than recorded terraform or schema changes; ask on a terminal. Without one
    (CI) the engine refuses unless --yes was given."""
    from promoter.engine import release
    from promoter.engine.rollback_guard import changes_since

    preview = release.rollback_to(release.RollbackSettings(plan=app.plan, env=env, to=to, dry_run=True,
                                                           allow_failed=allow_failed), ports)
    changes = changes_since(ports.ledger.records(env), str(preview.candidate_version))
    if not changes:
        return False
    err = console(stderr=True)
    err.print(f"warning: version {preview.candidate_version} is older than changes made since in {env}:",
              markup=False)
    for change in changes:
        err.print(f"  {change}", markup=False)
    if not sys.stdin.isatty():
        return False
    return typer.confirm("Roll back past them anyway?", default=False, err=True)


def status(
    env: EnvOpt = None,
    plan: PlanOpt = None,
    profile: ProfileOpt = None,
    ledger_dir: LedgerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """The alias's versions and weights with their releases, the last runs and verdicts, the lock holder."""
    from promoter.engine import release

    app = App(plan_path=plan, env_name=env, profile=profile, ledger_dir=ledger_dir, json_output=json_output)
    env_name = app.env
    data = release.status(app.plan, env_name, _ports(app, env_name))
    if json_output:
        print_json(data)
        if data["aws_error"]:
            raise typer.Exit(1)
        return
    from rich.table import Table

    out = console()
    out.print(f"{data['function']}:{data['alias']} in {env_name}")
    if data["routes"] is not None:
        routes = Table("version", "traffic", "release", "sha256")
        for r in data["routes"]:
            routes.add_row(r["version"], f"{r['percent']:g}%", r["release"] or "-", (r["sha256"] or "-")[:12])
        out.print(routes)
        deployed = ", ".join(f"{t}={v}" for t, v in data["deployed_releases"].items()) or "none"
        out.print(f"deployed releases: {deployed}")
    runs = Table("run", "kind", "release", "outcome", "verdicts", "reason")
    runs.columns[0].no_wrap = True  # run ids are what --resume and history need: never cut
    for run in data["runs"]:
        verdicts = " ".join(f"{v['step']}%:{v['outcome']}" for v in run.get("verdicts", []))
        runs.add_row(run["run_id"], run.get("kind_of_run", "-"), str(run.get("release") or "-"),
                     str(run.get("outcome") or "unfinished"), verdicts or "-", str(run.get("reason") or "")[:60])
    out.print(runs)
    lock = data["lock"]
    if lock and lock.get("lease_expired"):
        out.print(f"lock: {lock['who']} since {lock['since']} ({lock.get('purpose')}, pid {lock.get('pid')} on "
                  f"{lock.get('host')}), its lease ran out: promoter lock break --env {env_name}")
    elif lock and lock.get("stale"):
        out.print(f"lock: {lock['who']} since {lock['since']} ({lock.get('purpose')}), pid {lock.get('pid')} is no "
                  f"longer running: promoter lock break --env {env_name}")
    else:
        out.print(f"lock: {lock['who']} since {lock['since']} ({lock.get('purpose')}, pid {lock.get('pid')} on "
                  f"{lock.get('host')}{', ' + lock['caller'] if lock.get('caller') else ''})" if lock else "lock: free")
    if data["unfinished_run"]:
        out.print(f"unfinished run {data['unfinished_run']}: promoter deploy --env {env_name} --resume, "
                  f"or promoter abort --env {env_name}")
    if data.get("watch"):
        out.print(watch_line(data["watch"]))
    if data["routes"] is None and data["last_alias"]:
        last = data["last_alias"]
        out.print(f"last alias change recorded: version {last['version']} weights {last['weights'] or '{}'} "
                  f"(run {last['run_id']})")
    _warn(data["ledger_warnings"])
    if data["aws_error"]:
        err = console(stderr=True)
        err.print(f"error: the alias could not be read, so the above is what the ledger knows: {data['aws_error']}",
                  markup=False, highlight=False, soft_wrap=True)
        if data.get("aws_hint"):
            err.print(f"hint: {data['aws_hint']}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def watch_line(w: dict[str, Any]) -> str:
    """The watch of the last release at 100 %: checks, the next one, the soak."""
    head = f"watch of {w.get('release')} (version {w.get('version')}): {w['checks_green']} of {w['checks']} checks " \
        f"green, {w['checks_failed']} not, {w['of_checks']} scheduled"
    criteria = w.get("success_criteria") or []
    met = sum(1 for c in criteria if c["ok"])
    if criteria:
        head += f"; success criteria {met} of {len(criteria)} met (" + ", ".join(
            f"{c['criterion']}: {'yes' if c['ok'] else 'pending' if c['ok'] is None else 'NO'}" for c in criteria) + ")"
    if w.get("ended"):
        return f"{head}; ended: {w['ended']}; soak {w['soak']}"
    nxt = "now" if not w.get("next_check_in") else f"in {w['next_check_in']:g}s"
    soak = w["soak"] if w.get("soak_seconds_left") is None else f"{w['soak']}, {w['soak_seconds_left']:.0f}s left"
    window = "inside" if w.get("in_rollback_window") else "past"
    return f"{head}; next check {nxt} ({window} the rollback window); soak {soak}"


def _warn(lines: list[str]) -> None:
    err = console(stderr=True)
    for line in lines:
        err.print(f"warning: {line}", markup=False, highlight=False, soft_wrap=True)


def history(
    env: EnvOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="How many runs (0: all).")] = 10,
    plan: PlanOpt = None,
    ledger_dir: LedgerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Runs and their events, from the ledger."""
    from promoter.engine import release

    app = App(plan_path=plan, env_name=env, ledger_dir=ledger_dir, json_output=json_output)
    ledger = app.ledger()
    runs = release.history(ledger, app.env, limit=limit)
    _warn(ledger.warnings(app.env))
    if json_output:
        print_json(runs)
        return
    for run in runs:
        typer.echo(f"{run['run_id']} {run.get('kind_of_run', '-')} {run.get('release') or ''} "
                   f"{run.get('outcome') or 'unfinished'} {run.get('reason') or ''}".rstrip())
        for r in run["records"]:
            typer.echo(f"  {r['ts']} {r['kind']:<13} {_summary(r)}")


def _summary(r: dict[str, Any]) -> str:
    kind = r["kind"]
    if kind in ("alias-change", "alias-intent"):
        return f"step {r.get('step')}: {routing(r.get('before'))} -> {routing(r.get('after'))}"
    if kind == "verdict":
        c = r.get("observation", {}).get("canary", {})
        return (f"{r.get('step')}% after {r.get('elapsed', 0):g}s: {verdict_line(r)}; "
                f"canary p95={figure(c.get('p95_ms'), 'ms')}")
    if kind == "step":
        return f"{r.get('name')} {r.get('status')} {r.get('version', '')}"
    if kind == "run-end":
        return f"{r.get('outcome')}: {r.get('reason')}"
    if kind == "pretraffic":
        return f"version {r.get('version')} ok={r.get('ok')}"
    if kind == "watch-check":
        from promoter.cli.watch import _line

        return _line(r)
    if kind in ("watch-soak", "watch-end"):
        return f"{r.get('outcome')}{': ' + r['reason'] if r.get('reason') else ''}"
    return ""


def abort(
    ctx: typer.Context,
    env: EnvOpt = None,
    yes: YesOpt = False,
    lock_wait: LockWaitOpt = 0,
    plan: PlanOpt = None,
    profile: ProfileOpt = None,
    ledger_dir: LedgerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Roll an interrupted deploy back to its recorded stable version."""
    from promoter.engine import release

    _check_numbers(lock_wait=lock_wait)

    app = App(plan_path=plan, env_name=env, profile=profile, ledger_dir=ledger_dir, json_output=json_output)
    env_name = _env_of(app, "abort")
    _confirm(app, env_name, [f"abort the unfinished or failed deploy in {env_name}"], yes)
    try:
        record = release.abort(app.plan, env_name, _ports(app, env_name), lock_wait=lock_wait)
    finally:
        _hold_off_late_interrupts(ctx)
    _print_record(record, json_output)


lock_app = typer.Typer(help="The per-environment lock.", no_args_is_help=True, pretty_exceptions_show_locals=False)


@lock_app.command("break")
def lock_break(
    env: EnvOpt = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Break it even though its holder still runs on this host (recorded; that run stops at its "
        "next alias change).")] = False,
    plan: PlanOpt = None,
    ledger_dir: LedgerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Break a stale lock (a run that died holding it). Recorded in the ledger."""
    app = App(plan_path=plan, env_name=env, ledger_dir=ledger_dir, json_output=json_output)
    holder = app.ledger().break_lock(app.env, force=force)
    if json_output:
        print_json({"env": app.env, "broken": holder})
        return
    if holder is None:
        typer.echo(f"{app.env}: no lock held")
    else:
        alive = "" if holder.get("stale") else " (it may still be running; it stops at its next alias change)"
        typer.echo(f"{app.env}: broke the lock of {holder.get('who')} since {holder.get('since')}{alive}")


def register(root: typer.Typer) -> None:
    root.command("deploy")(deploy)
    root.command("rollback")(rollback)
    root.command("status")(status)
    root.command("history")(history)
    root.command("abort")(abort)
    root.add_typer(lock_app, name="lock")
