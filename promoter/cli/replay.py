"""``promoter replay``: a past run's recorded observations judged again, offline, with other thresholds."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from promoter.cli.common import App, EnvOpt, JsonOpt, LedgerOpt, PlanOpt, print_json


def _show(replay: dict[str, Any]) -> None:
    typer.echo(f"run {replay['run_id']} ({replay['release']}, {replay['recorded_outcome']}): {replay['summary']}")
    for i in replay["intervals"]:
        where = f"{i['step']}%" if i["source"] == "canary" else f"check {i['step']}"
        after = f" after {i['elapsed']:g}s" if i.get("elapsed") is not None else ""
        replayed = i["replayed"] or "not reached"
        mark = "" if i["replayed"] in (None, i["recorded"]) else "  <- differs"
        typer.echo(f"  {i['source']} {where}{after}: recorded {i['recorded']}, replayed {replayed}"
                   f" ({i['replayed_outcome'] or '-'}: {i['line']}){mark}")


def replay(
    run_id: Annotated[str | None, typer.Argument(help="The run to replay (see promoter history).",
                                                 show_default=False)] = None,
    threshold: Annotated[list[str] | None, typer.Option(
        "--threshold", metavar="NAME=VALUE",
        help="Judge with this threshold instead of the recorded one (repeatable): error_rate_pct, p95_duration_ms, "
        "throttles_per_minute, dlq_messages, min_invocations, compare_to_stable, relative_tolerance_pct, alpha, "
        "pass_confidence.")] = None,
    min_invocations: Annotated[int | None, typer.Option(
        "--min-invocations", help="The minimum sample for a verdict, instead of the recorded one.")] = None,
    on_inconclusive: Annotated[str | None, typer.Option(
        "--on-inconclusive", help="fail or pass: what a bake without enough evidence at its deadline does, instead "
        "of the recorded setting.")] = None,
    max_extension: Annotated[float | None, typer.Option(
        "--max-extension", help="Seconds a bake may be extended waiting for evidence, instead of the recorded "
        "setting.")] = None,
    env: EnvOpt = None,
    last: Annotated[int | None, typer.Option(
        "--last", help="Replay the last N deploy runs of --env and count the rollbacks added and avoided.")] = None,
    plan: PlanOpt = None,
    ledger_dir: LedgerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Judge a past run's recorded observations again, offline, with other thresholds: where it would have stopped.

    Every canary verdict and watch check records the observation it judged and the thresholds it used. Replay
    feeds them to the same judgement (canary.judge and the bake's next action; the watch's window rule) with
    the thresholds given, and shows per interval what would have been decided, and whether the run would have
    stopped earlier, the same, later or never. A run's data ends where it rolled back. No AWS call is made.

    Examples:

    \b
        promoter replay 20261201T120000Z-ab12cd --threshold error_rate_pct=10
        promoter replay 20261201T120000Z-ab12cd --threshold p95_duration_ms=1500 --min-invocations 100 --json
        promoter replay --env prod --last 20 --threshold error_rate_pct=2
        promoter replay 20261201T120000Z-ab12cd --min-invocations 500 --on-inconclusive pass
    """
    from promoter.engine.replay import Analysis, find_env, parse_overrides, replay_last, replay_records
    from promoter.errors import UsageError

    overrides = parse_overrides(threshold, min_invocations)
    if on_inconclusive not in (None, "fail", "pass"):
        raise UsageError(f"--on-inconclusive {on_inconclusive!r}: choose fail or pass")
    if max_extension is not None and max_extension < 0:
        raise UsageError(f"--max-extension {max_extension:g}: must be 0 or more seconds")
    analysis = Analysis(on_inconclusive, max_extension)
    app = App(plan_path=plan, env_name=env, ledger_dir=ledger_dir, json_output=json_output)
    ledger = app.ledger()
    if last is not None:
        if run_id is not None:
            raise UsageError("give a RUN_ID or --last N, not both")
        totals = replay_last(ledger, app.env, last, overrides, analysis)
        if json_output:
            print_json({"ok": True, **totals})
            return
        for run in totals["runs"]:
            _show(run)
        typer.echo(f"{totals['replayed']} runs replayed: {totals['rolled_back']} rolled back, "
                   f"{totals['would_roll_back']} would have; {totals['added']} rollbacks added, {totals['avoided']} "
                   f"avoided, {totals['earlier']} earlier, {totals['undecided']} undecided (the replay would have "
                   "waited for evidence past the run's data)")
        return
    if run_id is None:
        raise UsageError("give the RUN_ID to replay, or --env ENV --last N",
                         hint="run ids: promoter history --env ENV")
    name = app.env if env else find_env(ledger, sorted(app.plan.environments), run_id)
    result = replay_records(ledger.records(name), run_id, name, overrides, analysis).to_dict()
    if json_output:
        print_json({"ok": True, **result})
        return
    _show(result)


def register(root: typer.Typer) -> None:
    root.command("replay")(replay)
