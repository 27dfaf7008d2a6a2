"""``promoter load``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from promoter.cli.common import App, EnvOpt, JsonOpt, LedgerOpt, PlanOpt, ProfileOpt, RepoOpt, console, print_json

EXAMPLES = """\b
Examples:
  promoter load --env sit                            # the plan's profile: 100 req/s for 600 s
  promoter load --env sit --rate 50 --duration 60    # shorter, slower
  promoter load --env sit --stress                   # ramp until the SLA breaks: the failure point
  promoter load --env sit --stress --step-seconds 20 --ceiling 200 --json

\b
Against the sandbox:
  promoter sandbox up --env sit && eval "$(promoter sandbox env)"
  promoter load --env sit --token "$(promoter sandbox token)" --duration 30
"""


def load(
    env: EnvOpt = None,
    rate: Annotated[float | None, typer.Option("--rate", min=0.1, help="Requests per second (with --stress: the "
                                               "first step's). Default: the plan's load.requests_per_second.")
                    ] = None,
    duration: Annotated[float | None, typer.Option("--duration", min=1, help="Seconds of load. Default: the plan's "
                                                   "load.duration_seconds. Not with --stress.")] = None,
    stress: Annotated[bool, typer.Option("--stress", help="Ramp the rate in the plan's load.stress steps until the "
                                         "SLA breaks or errors appear; report the failure point.")] = False,
    step_seconds: Annotated[int | None, typer.Option("--step-seconds", min=1, help="With --stress: seconds per "
                                                     "step. Default: load.stress.step_seconds.")] = None,
    ceiling: Annotated[float | None, typer.Option("--ceiling", min=0.1, help="With --stress: the highest rate "
                                                  "tried. Default: load.stress.ceiling_rps.")] = None,
    report: Annotated[Path | None, typer.Option("--report", file_okay=False, help="Directory for the reports (CSV "
                                                "history, JSON result, HTML page). Default: "
                                                ".promoter/reports/load-<run id>/.")] = None,
    api_url: Annotated[str | None, typer.Option("--api-url", envvar="PROMOTER_API_URL",
                                                help="API base URL. Default: https://<domain>.")] = None,
    token: Annotated[str | None, typer.Option("--token", envvar="PROMOTER_TOKEN",
                                              help="Bearer token. Default: a Cognito test user's.")] = None,
    no_metrics: Annotated[bool, typer.Option("--no-metrics", help="Do not read CloudWatch (the function's view) "
                                             "after the run.")] = False,
    metrics_wait: Annotated[float | None, typer.Option("--metrics-wait", min=0, help="Seconds to wait for the "
                                                       "window's CloudWatch data. Default: "
                                                       "load.metrics_wait_seconds.")] = None,
    plan: PlanOpt = None,
    repo: RepoOpt = None,
    profile: ProfileOpt = None,
    ledger_dir: LedgerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Load-test the environment's API with the plan's profile and judge it against the plan's SLA (exit 1 on a
    failed figure).

    Locust drives the API in a child process with the plan's request mix (health, list, get, create, update,
    delete, by weight), the same URL and token as the smoke tests. Every figure is judged: the achieved rate,
    p95 against sla.p95_ms, the error rate against sla.error_rate_pct, and from CloudWatch in the same window
    the Lambda's throttles, Duration p95 per executed version, concurrent executions and DynamoDB's throttled
    requests. The campaigns it creates are named load.data_prefix + the run id and deleted at the end, Ctrl-C
    included. Reports (CSV, JSON, HTML) go to --report; a `load` record goes to the ledger.
    """
    from promoter.engine.load import LoadSettings, default_report_dir, ledger_fields, run_load
    from promoter.engine.smoke import api_url_for, resolve_token
    from promoter.errors import Interrupted, UsageError

    if stress and duration is not None:
        raise UsageError("--duration is for a load run; a stress run's length is its steps",
                         hint="use --step-seconds and --ceiling with --stress")
    if not stress and (step_seconds is not None or ceiling is not None):
        raise UsageError("--step-seconds and --ceiling are for --stress", hint="add --stress, or use --duration")
    app = App(plan_path=plan, env_name=env, profile=profile, repo_path=repo, ledger_dir=ledger_dir)
    name = app.env
    url = api_url_for(app.plan, name, api_url)
    bearer = resolve_token(token, app.aws, app.plan, name)
    settings = LoadSettings(plan=app.plan, env=name, api_url=url, token=bearer, rate=rate, duration=duration,
                            stress=stress, step_seconds=step_seconds, ceiling=ceiling, metrics=not no_metrics,
                            metrics_wait=metrics_wait)
    ledger = app.ledger()
    directory = report or default_report_dir(ledger.root, settings.run_id)
    err = console(stderr=True)
    live = _Live(err, settings)
    steps = settings.steps()
    what = (f"stress: {steps[0]['rate']:g} to {steps[-1]['rate']:g} req/s in steps of {steps[0]['seconds']:g} s"
            if stress else f"{steps[0]['rate']:g} req/s for {steps[0]['seconds']:g} s")
    err.print(f"load {name}: {what} against {url} (run {settings.run_id})", highlight=False, soft_wrap=True)
    try:
        result = run_load(settings, on_line=live, report_dir=directory, aws=lambda: app.aws(name))
    except Interrupted as exc:
        live.done()
        data = (exc.details or {}).get("load")
        if data:
            ledger.append(name, "load", ok=False, outcome="interrupted", mode=data["mode"], run_id=data["run_id"],
                          api_url=url, totals=data["totals"], figures=data["figures"], cleanup=data["cleanup"],
                          reports=data["reports"])
        raise
    live.done()
    ledger.append(name, "load", **ledger_fields(result))
    if json_output:
        print_json(result.to_dict())
    else:
        out = console()
        for figure in result.figures:
            out.print(("  " if figure.ok is not False else "! ") + figure.line(), highlight=False, soft_wrap=True)
        if result.stress:
            s = result.stress
            if s.get("found"):
                out.print(f"failure point: {s['highest_held_rps']} req/s held, {s['first_broken_rps']} req/s did "
                          f"not; broke first: {s['broke_first']}", highlight=False)
            else:
                out.print(f"no failure point up to {s['ceiling_rps']:g} req/s within the time limit; highest "
                          f"held: {s['highest_held_rps']}", highlight=False)
        for problem in result.problems:
            out.print(f"! {problem}", highlight=False, soft_wrap=True)
        out.print(f"load {'passed' if result.ok else 'FAILED'}; reports: {result.reports.get('html')}",
                  highlight=False, soft_wrap=True)
    if not result.ok:
        raise typer.Exit(1)


class _Live:
    """The live line on stderr: achieved rate, p50/p95/p99, error rate, time left (a plain line every 10 s
    without a terminal)."""

    def __init__(self, err: Any, settings: Any) -> None:
        self.err = err
        self.tty = err.is_terminal
        self.total = sum(s["seconds"] for s in settings.steps())
        self.last_plain = 0.0
        self.width = 0

    def __call__(self, line: dict[str, Any], result: Any) -> None:
        from promoter.engine.load import Span

        kind = line.get("type")
        if kind == "cleanup":
            self._print(f"clean-up: {line.get('created', 0)} created, {line.get('deleted', 0)} deleted, "
                        f"{line.get('swept', 0)} swept, {len(line.get('left') or [])} left", final=True)
            return
        if kind == "step" and result.mode == "stress":
            self._print(f"step {line['step'] + 1}: {line['target_rps']:g} req/s ({line['users']} users)", final=True)
            return
        if kind != "interval" or line.get("tail"):
            return
        recent = Span.of(result.intervals[-10:])
        elapsed = float(line.get("elapsed") or 0)
        text = (f"{elapsed:5.0f} s  {line.get('requests', 0):4d} req/s (target {line.get('target_rps', 0):g})  "
                f"p50 {recent.p(50) or 0:.0f} p95 {recent.p(95) or 0:.0f} p99 {recent.p(99) or 0:.0f} ms  "
                f"errors {recent.error_rate_pct:.2f} %  {max(self.total - elapsed, 0):.0f} s left")
        if self.tty:
            self._print(text)
        elif time.monotonic() - self.last_plain >= 10:
            self.last_plain = time.monotonic()
            self._print(text, final=True)

    def _print(self, text: str, final: bool = False) -> None:
        if self.tty:
            pad = " " * max(self.width - len(text), 0)
            sys.stderr.write("\r" + text + pad + ("\n" if final else ""))
            sys.stderr.flush()
            self.width = 0 if final else len(text)
        else:
            self.err.print(text, highlight=False, soft_wrap=True)

    def done(self) -> None:
        if self.tty and self.width:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.width = 0


def register(root: typer.Typer) -> None:
    root.command("load", epilog=EXAMPLES)(load)
