"""Resume and abort an interrupted or failed deploy run, from what the ledger recorded."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from promoter.adapters.lambda_ import AliasState
from promoter.engine.deploy import (
    _Refusals,
    _Run,
)
from promoter.engine.ledger import Ledger, new_run_id
from promoter.engine.runs import (
    DeploySettings,
    InterruptGuard,
    Observer,
    Ports,
    ReleaseEvent,
    RunRecord,
    Step,
    _silent,
    _weight_of,
)
from promoter.errors import (
    RefusedError,
)
from promoter.plan.models import Plan


# -- resume and abort ----------------------------------------------------------------------------------------
def unfinished_run(ledger: Ledger, env: str, *, include_held: bool = True,
                   include_failed: bool = False) -> dict[str, Any] | None:
    """The last deploy run without a run-end (a crash, a lost lock), or one ended as interrupted-hold, or (with
    ``include_failed``) one whose rollback failed. Refused runs changed nothing and are passed over."""
    for run in reversed(ledger.runs(env)):
        if run.get("refusal") or run.get("outcome") == "refused":
            continue
        if run.get("kind_of_run") != "deploy":
            return None  # a later rollback supersedes any earlier unfinished deploy
        outcome = run.get("outcome")
        if outcome is None or (include_held and outcome == "interrupted-hold") or \
                (include_failed and outcome == "rollback-failed"):
            return run
        return None
    return None


def _settle_unrecorded_intent(ledger: Ledger, env: str, run_id: str, current: AliasState, by: str) -> None:
    """A run stopped (killed) between an alias change and its record leaves an intent with no outcome; the alias as
    it reads now says which it was, and that is recorded before anyone acts on the run."""
    open_intent: dict[str, Any] | None = None
    for record in ledger.records(env, run_id=run_id):
        if record["kind"] == "alias-intent":
            open_intent = record
        elif record["kind"] in ("alias-change", "alias-failed") and open_intent is not None and \
                str(record.get("step")) == str(open_intent.get("step")):
            open_intent = None
    if open_intent is None:
        return
    after = open_intent.get("after") or {}
    wanted = AliasState(str(after.get("version")), {str(k): float(v) for k, v in (after.get("weights") or {}).items()})
    if current.same_routing(wanted):
        ledger.append(env, "alias-change", run_id=run_id, step=open_intent.get("step"),
                      before=open_intent.get("before"), after=current.to_dict(),
                      settled=f"found applied by {by}: the run stopped between the change and its record")
    else:
        ledger.append(env, "alias-failed", run_id=run_id, step=open_intent.get("step"),
                      error=f"not applied (found by {by}): the run stopped before the change took effect")


def _candidate_of(ledger: Ledger, env: str, run_id: str) -> str | None:
    for record in ledger.records(env, kind="step", run_id=run_id):
        if record.get("name") == "publish" and record.get("version"):
            return str(record["version"])
    return None


def resume(settings: DeploySettings, ports: Ports, observer: Observer | None = None) -> RunRecord:
    emit = observer or _silent
    env = settings.env
    guard = InterruptGuard()
    with guard.installed(), _Refusals(ports.ledger, env, "resume", new_run_id()) as refusals:
        ports.guard_account(env)
        with ports.ledger.lock(env, purpose="resume", wait_seconds=settings.lock_wait, clock=ports.clock) as lock:
            run = unfinished_run(ports.ledger, env)
            if run is None:
                raise RefusedError(f"no interrupted deploy in {env} to resume",
                                   hint=f"see promoter history --env {env}; a failed run is rolled back with "
                                   f"promoter abort --env {env}")
            candidate = _candidate_of(ports.ledger, env, run["run_id"])
            if candidate is None:
                raise RefusedError(f"run {run['run_id']} ended before a version was published; start a new deploy")
            stable = str(run["stable_version"])
            current = ports.router.read()
            allowed = {stable, candidate}
            if current.version not in allowed or not set(current.weights) <= allowed:
                raise RefusedError(f"alias is at {current.describe()}, which run {run['run_id']} did not leave; "
                                   "refusing to resume", hint="inspect with promoter status")
            _settle_unrecorded_intent(ports.ledger, env, run["run_id"], current, "resume")
            steps = tuple(Step(int(s["weight"]), float(s["bake_seconds"])) for s in run.get("steps") or [])
            if settings.bake_seconds is not None:
                steps = tuple(Step(s.weight, s.bake_seconds if s.weight == 100 else settings.bake_seconds)
                              for s in steps)
            weight = _weight_of(current, candidate)
            remaining = tuple(s for s in steps if s.weight >= weight) or (Step(100, 0),)
            r = _Run(replace(settings, on_interrupt=settings.on_interrupt), ports, emit, run["run_id"], guard, lock)
            r.stable, r.candidate = stable, candidate
            r.interval = float(settings.analysis_interval or run.get("analysis_interval") or
                               settings.plan.canary.analysis_interval_seconds)
            r.record.release = run.get("release")
            r.record.stable_version, r.record.candidate_version = stable, candidate
            r.last_set = current
            r.preexisting_alarms = r._alarms()
            refusals.done()
            r.log("resumed", who=ports.identity(), alias=current.to_dict(), remaining=[s.to_dict() for s in remaining])
            emit(ReleaseEvent("step", {"name": "resume", "from_weight": weight, "candidate": candidate}))
            with r.record_on_error():
                return r.shift_all(remaining)


def abort(plan: Plan, env: str, ports: Ports, *, lock_wait: float = 0, observer: Observer | None = None) -> RunRecord:
    """Roll an interrupted run back to its recorded stable version."""
    emit = observer or _silent
    guard = InterruptGuard()
    with guard.installed(), _Refusals(ports.ledger, env, "abort", new_run_id()) as refusals:
        ports.guard_account(env)
        with ports.ledger.lock(env, purpose="abort", wait_seconds=lock_wait, clock=ports.clock) as lock:
            run = unfinished_run(ports.ledger, env, include_failed=True)
            if run is None:
                raise RefusedError(f"no unfinished or failed deploy in {env} to abort",
                                   hint=f"see promoter history --env {env}")
            stable = str(run["stable_version"])
            candidate = _candidate_of(ports.ledger, env, run["run_id"])
            settings = DeploySettings(plan=plan, env=env)
            r = _Run(settings, ports, emit, run["run_id"], guard, lock)
            r.stable, r.candidate = stable, candidate or stable
            r.record.stable_version, r.record.candidate_version = stable, candidate
            current = ports.router.read()
            allowed = {stable} | ({candidate} if candidate else set())
            if current.version not in allowed or not set(current.weights) <= allowed:
                raise RefusedError(f"alias is at {current.describe()}, which run {run['run_id']} did not leave; "
                                   "refusing to move it",
                                   hint=f"use promoter rollback --env {env} --to VERSION to choose explicitly")
            _settle_unrecorded_intent(ports.ledger, env, run["run_id"], current, "abort")
            r.last_set = current
            refusals.done()
            r.log("abort", who=ports.identity(), alias=current.to_dict())
            try:
                r._rollback_once_more_on_interrupt()
            except Exception as exc:
                return r._rollback_failed("abort", exc)
            return r.end("aborted", f"aborted; alias back on stable version {stable}")


