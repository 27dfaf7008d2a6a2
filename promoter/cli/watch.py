"""``promoter watch``: the checks after 100 %, on the plan's schedule."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from promoter.cli.common import App, EnvOpt, JsonOpt, LedgerOpt, PlanOpt, ProfileOpt, console, print_json
from promoter.cli.text import figure


def _line(check: dict[str, Any]) -> str:
    live = (check.get("observation") or {}).get("canary") or {}
    numbers = (f"n={figure(live.get('invocations'))} err={figure(live.get('error_rate_pct'), '%')} "
               f"p95={figure(live.get('p95_ms'), 'ms')}")
    fig = check.get("figures") or {}
    if fig:
        numbers += (f" concurrency={figure(fig.get('max_concurrency'))} "
                    f"ddb_throttled={figure(fig.get('dynamodb_throttled_requests'))}")
    where = "inside" if check.get("in_rollback_window") else "after"
    breaches = "; ".join(check.get("breaches") or []) or "green"
    return f"check {check['index'] + 1} ({where} the rollback window): {numbers}: {breaches} -> {check['decision']}"


def watch(
    env: EnvOpt = None,
    release_tag: Annotated[str | None, typer.Option(
        "--release", help="The release to watch. Default: the last deploy that reached 100 %.")] = None,
    once: Annotated[bool, typer.Option(
        "--once", help="Do the checks due now and exit (for a cron or an EventBridge-triggered job).")] = False,
    time_scale: Annotated[float | None, typer.Option(
        "--time-scale", help="Divide every duration of the schedule by this (rehearsals, tests): 3600 makes an "
        "hour a second. Fixed when the watch starts.")] = None,
    lock_wait: Annotated[float, typer.Option(
        "--lock-wait", help="Seconds an automatic rollback waits for another run's lock.")] = 30,
    plan: PlanOpt = None,
    profile: ProfileOpt = None,
    ledger_dir: LedgerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Watch a release after 100 % on the plan's schedule: check SLA and rollback thresholds, roll back inside the
    rollback window, page after it, record the soak.

    Each check reads the live version's numbers since the check before (p95, errors plus the service's 5xx,
    throttles, DLQ depth, the plan's alarms, peak concurrency, DynamoDB throttling), judges them against the
    rollback thresholds and the SLA, and records the verdict in the ledger. Inside the rollback window a
    rollback trigger rolls back to the release before (locked, RevisionId-guarded, recorded); after it, it
    pages and never moves traffic. An SLA breach alone is reported. The soak passes when the plan's soak
    length went by with every check green, and the passport reads that record.

    The schedule is kept in the ledger: a restarted watch continues it.

    Exit codes: 0 every check green (or none due yet); 1 a check breached and paged or reported; 3 rolled
    back; 4 the rollback failed (the manual command is printed).

    Examples:

    \b
        promoter watch --env prod                    # in the foreground to the end of the schedule (7 days)
        promoter watch --env prod --once --json      # from a cron every 30 minutes: what is due now
        promoter watch --env sit --time-scale 3600   # a rehearsal: an hour of the schedule per second
    """
    from promoter.adapters.metrics import CloudWatchServiceFigures
    from promoter.cli.release import _ports
    from promoter.engine import watch as watch_mod
    from promoter.engine.runs import sigterm_as_interrupt
    from promoter.errors import PromoterError, ReleaseFailed, RollbackFailed, UsageError

    if lock_wait < 0:
        raise UsageError(f"--lock-wait {lock_wait:g}: must be 0 or more seconds")
    app = App(plan_path=plan, env_name=env, profile=profile, ledger_dir=ledger_dir, json_output=json_output)
    name = app.env
    ports = _ports(app, name)
    names = app.plan.names(name)
    figures = CloudWatchServiceFigures(app.aws(name).client("cloudwatch"), function=names.function,
                                       table=names.table, lambda_namespace=app.plan.metrics.lambda_namespace)
    err = console(stderr=True)
    for note in ports.notifier.notes:
        err.print(f"notifications: {note}", markup=False, highlight=False)

    def show(event: Any) -> None:
        if event.kind == "verdict":
            err.print(_line(event.data), markup=False, highlight=False)
        elif event.kind == "progress":
            err.print(event.data["message"], markup=False, highlight=False)
        elif event.kind == "shift":
            err.print(f"alias moved: {event.data.get('alias')}", markup=False, highlight=False)

    settings = watch_mod.WatchSettings(plan=app.plan, env=name, release=release_tag, once=once,
                                       time_scale=time_scale, lock_wait=lock_wait)
    try:
        with sigterm_as_interrupt():
            result = watch_mod.watch(settings, ports, figures=figures, notifier=ports.notifier, observer=show)
    finally:
        ports.notifier.flush()
    ended_before = not result.checks and result.rollback is None and result.outcome in ("rolled-back",
                                                                                          "rollback-failed")
    doc = {"ok": result.outcome in ("waiting", "completed", "superseded") or ended_before,
           "ended_before": ended_before, **result.to_dict()}
    breached = [c for c in result.checks if not c.get("green")]
    rollback = result.rollback or {}
    if ended_before:  # a cron run after the run that acted: nothing to do, said once more
        console(stderr=True).print(f"the watch of {result.release} ended earlier: {result.outcome}; see promoter "
                                   f"history --env {name}", markup=False, highlight=False)
    elif result.outcome == "rolled-back":
        why = "; ".join(breached[-1]["breaches"]) if breached else "see promoter history"
        exc: PromoterError = ReleaseFailed(
            f"{result.release} (version {result.version}) breached a rollback trigger inside the rollback window and "
            f"was rolled back{' to version ' + rollback['to'] if rollback.get('to') else ''}: {why}",
            hint=f"details: promoter history --env {name}; replay it: promoter replay {result.watch_of}")
        exc.details = {"watch": doc}
        raise exc
    elif result.outcome == "rollback-failed":
        exc = RollbackFailed(f"{result.release} breached a rollback trigger and the rollback failed"
                             f"{': ' + rollback['error'] if rollback.get('error') else ''}",
                             hint=f"{rollback.get('hint') or ''} by hand: {rollback.get('manual_command') or ''}"
                             if rollback else f"see promoter history --env {name} for the manual command")
        exc.details = {"watch": doc}
        raise exc
    if json_output:
        if breached:
            doc["ok"] = False
            doc["exit_code"] = 1
        print_json(doc)
    else:
        s = result.summary or {}
        nxt = "none (the schedule is over)" if s.get("next_check_in") is None else f"in {s['next_check_in']:g}s"
        typer.echo(f"{result.release} (version {result.version}): {result.outcome}; checks {s.get('checks_green')} "
                   f"green, {s.get('checks_failed')} not, of {s.get('of_checks')}; next check {nxt}; soak "
                   f"{s.get('soak')}")
    if breached:
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    root.command("watch")(watch)
