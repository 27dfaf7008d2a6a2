"""``rollback --to``: move the alias to one released version at 100 %, RevisionId-guarded, verified,
recorded."""

from __future__ import annotations

from dataclasses import dataclass

from promoter.adapters.lambda_ import AliasState, FunctionVersion
from promoter.engine.deploy import (
    _Refusals,
)
from promoter.engine.ledger import Ledger, new_run_id
from promoter.engine.runs import (
    InterruptGuard,
    Observer,
    Ports,
    ReleaseEvent,
    RunRecord,
    _silent,
    manual_rollback_command,
    read_if_applied,
)
from promoter.errors import (
    AwsError,
    LockLost,
    PreconditionFailed,
    PromoterError,
    RefusedError,
    RollbackFailed,
)
from promoter.plan.models import Plan


# -- rollback --to ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RollbackSettings:
    plan: Plan
    env: str
    to: str  # release tag, "previous", or a version number
    lock_wait: float = 0
    dry_run: bool = False
    allow_failed: bool = False  # a version the ledger saw fail its canary is refused unless this is set
    acknowledge_changes: bool = False  # roll back past recorded terraform or schema changes (asked, or --yes)


def deployed_tags(versions: list[FunctionVersion]) -> dict[str, str]:
    """Release tag -> the highest version published with it."""
    tags: dict[str, str] = {}
    for v in sorted(versions, key=lambda v: int(v.version)):
        if v.release:
            tags[v.release] = v.version
    return tags


def failed_versions(ledger: Ledger, env: str) -> dict[str, str]:
    """Versions that took canary traffic and were rolled back without ever serving 100 %, with the reason."""
    canaried: dict[str, str] = {}
    full: set[str] = set()
    for record in ledger.records(env, kind="alias-change"):
        after = record.get("after") or {}
        if after.get("weights"):
            for version in after["weights"]:
                canaried.setdefault(str(version), str(record.get("run_id")))
        elif after.get("version") is not None:
            full.add(str(after["version"]))
    reasons = {r.get("run_id"): r.get("reason") or r.get("outcome") for r in ledger.records(env, kind="run-end")}
    return {v: f"run {run}: {reasons.get(run, 'no outcome recorded')}" for v, run in canaried.items() if v not in full}


def refuse_failed(target: str, failed: dict[str, str]) -> None:
    if target in failed:
        raise RefusedError(
            f"version {target} failed its canary and never served 100 % ({failed[target]})",
            hint="roll back to a release that served, or pass --allow-failed if this is really meant",
        )


def resolve_target(to: str, versions: list[FunctionVersion], current: str, ledger: Ledger, env: str,
                   *, mid_shift: bool = False) -> str:
    """``previous`` is the version before the one serving; during a canary (``mid_shift``) that is the primary,
    the stable version the canary shifts from: an operator rolling back a stuck canary means it."""
    numbers = {v.version for v in versions}
    if to == "previous" and mid_shift:
        return current
    if to == "previous":
        for record in reversed(ledger.records(env, kind="alias-change")):
            before, after = record.get("before") or {}, record.get("after") or {}
            if str(after.get("version")) == current and not after.get("weights") and \
                    str(before.get("version")) != current and str(before.get("version")) in numbers:
                return str(before["version"])
        failed = failed_versions(ledger, env)
        lower = sorted((int(n) for n in numbers if n.isdigit() and int(n) < int(current or 0) and n not in failed),
                       reverse=True)
        if lower:
            return str(lower[0])
        raise RefusedError(f"no version before {current} to roll back to")
    if to.isdigit():
        if to not in numbers:
            raise RefusedError(f"version {to} does not exist; published: {', '.join(sorted(numbers, key=int))}")
        return to
    tags = deployed_tags(versions)
    if to not in tags:
        known = ", ".join(f"{t} (version {v})" for t, v in tags.items()) or "none"
        raise RefusedError(f"release {to} was never deployed here; deployed releases: {known}")
    return tags[to]


def rollback_to(settings: RollbackSettings, ports: Ports, observer: Observer | None = None) -> RunRecord:
    """Move the alias to one version at 100 %, RevisionId-guarded, verified, recorded."""
    emit = observer or _silent
    env = settings.env
    run_id = new_run_id()
    record = RunRecord(run_id=run_id, env=env, kind="rollback")
    guard = InterruptGuard()
    refusals = _Refusals(ports.ledger, env, "rollback", run_id)
    refusals.armed = not settings.dry_run  # a dry run writes nothing
    with guard.installed(), refusals:
        ports.guard_account(env)
        with ports.ledger.lock(env, purpose="rollback", run_id=run_id, wait_seconds=settings.lock_wait,
                               clock=ports.clock) as lock:
            versions = ports.functions.list_versions()
            current = ports.router.read()
            target = resolve_target(settings.to, versions, current.version, ports.ledger, env,
                                    mid_shift=bool(current.weights))
            if not settings.allow_failed:
                refuse_failed(target, failed_versions(ports.ledger, env))
            from promoter.engine.rollback_guard import changes_since, refuse_older_than_changes

            if settings.dry_run:
                newer = changes_since(ports.ledger.records(env), target)
            else:
                newer = refuse_older_than_changes(ports.ledger.records(env), target, env,
                                                  acknowledged=settings.acknowledge_changes)
            record.stable_version, record.candidate_version = current.version, target
            record.release = next((v.release for v in versions if v.version == target), None)
            if settings.dry_run:
                record.outcome = "dry-run"
                record.reason = f"would move {ports.alias} from {current.describe()} to version {target}"
                if newer:
                    record.reason += "; changes made since it served: " + "; ".join(newer)
                record.alias = current.to_dict()
                return record
            refusals.done()
            ports.ledger.append(env, "run-start", run_id=run_id, kind_of_run="rollback", who=ports.identity(),
                                to=settings.to, target_version=target, release=record.release,
                                plan_id=settings.plan.id, alias=current.to_dict(), changes_since_target=newer)
            if current.version == target and not current.weights:
                record.outcome, record.alias = "succeeded", current.to_dict()
                record.reason = f"already on version {target}"
                ports.ledger.append(env, "run-end", run_id=run_id, outcome="succeeded", reason=record.reason,
                                    alias=current.to_dict())
                return record
            if not ports.ledger.holds(env, lock["token"]):
                ports.ledger.append(env, "run-end", run_id=run_id, outcome="refused", alias=current.to_dict(),
                                    reason="the lock was broken before the alias change; the alias was not touched")
                raise LockLost(f"the lock of {env} was broken before the rollback moved the alias; nothing changed",
                               hint=f"see promoter status --env {env}")
            guard.stop()  # from the intent on, the change and its record are not interruptible
            ports.ledger.append(env, "alias-intent", run_id=run_id, step="rollback", before=current.to_dict(),
                                after={"version": target, "weights": {}})
            settled: dict[str, str] = {}
            try:
                try:
                    after = ports.router.set(target, {}, current.revision)
                except AwsError as exc:
                    found = read_if_applied(ports.router, ports.clock, AliasState(target, {}))
                    if found is None:
                        raise
                    after = found
                    settled["settled"] = f"the reply was lost ({exc}); the alias reads the state asked for"
                check = ports.router.read()
            except PromoterError as exc:
                command = manual_rollback_command(ports.function, ports.alias, target, ports.region)
                ports.ledger.append(env, "alias-failed", run_id=run_id, step="rollback", error=str(exc))
                ports.ledger.append(env, "run-end", run_id=run_id, outcome="rollback-failed", reason=str(exc),
                                    manual_command=command)
                if isinstance(exc, PreconditionFailed):
                    raise RollbackFailed(
                        f"rollback to version {target} refused: the alias changed since it was read",
                        hint="inspect with promoter status and retry") from None
                raise RollbackFailed(
                    f"rollback to version {target} failed: {exc}",
                    hint=f"retry with promoter rollback --env {env} --to {target} (recorded); if promoter cannot "
                    f"reach the alias, by hand: {command}") from None
            change = {"step": "rollback", "before": current.to_dict(), "after": after.to_dict(), **settled}
            record.alias_changes.append(change)
            ports.ledger.append(env, "alias-change", run_id=run_id, **change)
            emit(ReleaseEvent("shift", {"step": "rollback", "alias": after.to_dict(), "weight": 100}))
            if check.version != target or check.weights:
                command = manual_rollback_command(ports.function, ports.alias, target, ports.region)
                ports.ledger.append(env, "run-end", run_id=run_id, outcome="rollback-failed",
                                    reason=f"alias reads {check.describe()} after the update",
                                    manual_command=command)
                raise RollbackFailed(
                    f"after the update the alias reads {check.describe()}",
                    hint=f"retry with promoter rollback --env {env} --to {target} (recorded); by hand, as a last "
                    f"resort: {command}")
            record.outcome, record.alias = "succeeded", check.to_dict()
            record.reason = f"alias {ports.alias} moved from {current.describe()} to version {target}"
            ports.ledger.append(env, "run-end", run_id=run_id, outcome="succeeded", reason=record.reason,
                                alias=check.to_dict())
            return record


