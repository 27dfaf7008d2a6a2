"""Status and history of an environment: the alias and its releases, the runs and their verdicts, the lock,
what is known locally when AWS cannot be reached."""

from __future__ import annotations

from typing import Any

from promoter.engine.ledger import Ledger
from promoter.engine.resume import (
    unfinished_run,
)
from promoter.engine.rollback import (
    deployed_tags,
)
from promoter.engine.runs import (
    Ports,
)
from promoter.errors import (
    PromoterError,
)
from promoter.plan.models import Plan


# -- status and history ----------------------------------------------------------------------------------------
def status(plan: Plan, env: str, ports: Ports, *, runs: int = 5) -> dict[str, Any]:
    """What is known locally (runs, lock, the unfinished run, the last recorded alias change, ledger warnings),
    then the alias and versions as AWS reports them; when AWS cannot be read, ``aws_error`` says why and the
    local part still stands."""
    ledger = ports.ledger
    history_runs = ledger.runs(env)[-runs:]
    for run in history_runs:
        verdicts = ledger.records(env, kind="verdict", run_id=run["run_id"])
        run["verdicts"] = [{"step": v.get("step"), "outcome": v.get("outcome"), "action": v.get("action")}
                           for v in verdicts]
    from promoter.engine.watch import ledger_summary

    changes = ledger.records(env, kind="alias-change")
    last = changes[-1] if changes else None
    data: dict[str, Any] = {
        "env": env, "function": ports.function, "alias": ports.alias, "revision": None,
        "routes": None, "deployed_releases": None,
        "runs": history_runs, "lock": ledger.lock_holder(env),
        "unfinished_run": (unfinished_run(ledger, env, include_failed=True) or {}).get("run_id"),
        "last_alias": {"version": last["after"].get("version"), "weights": last["after"].get("weights") or {},
                       "run_id": last.get("run_id")} if last and last.get("after") else None,
        "ledger_warnings": ledger.warnings(env),
        "watch": ledger_summary(ledger, env, ports.wall()),
        "aws_error": None,
    }
    try:
        alias = ports.router.read()
        versions = {v.version: v for v in ports.functions.list_versions()}
    except PromoterError as exc:
        data["aws_error"] = str(exc)
        data["aws_hint"] = exc.hint
        return data

    def describe(version: str, share: float) -> dict[str, Any]:
        v = versions.get(version)
        return {"version": version, "percent": round(share * 100, 2), "release": v.release if v else None,
                "sha256": v.sha256 if v else None}

    routes = [describe(alias.version, 1 - sum(alias.weights.values()))]
    routes += [describe(v, w) for v, w in sorted(alias.weights.items())]
    data.update(revision=alias.revision, routes=routes, deployed_releases=deployed_tags(list(versions.values())))
    data["ledger_warnings"] = ledger.warnings(env)
    return data


def history(ledger: Ledger, env: str, *, limit: int = 10) -> list[dict[str, Any]]:
    runs = ledger.runs(env)[-limit:] if limit else ledger.runs(env)
    records = ledger.records(env)
    for run in runs:  # a deploy's watch after 100 % is part of its history
        run["records"] = [r for r in records if r.get("run_id") == run["run_id"] or r.get("watch_of") == run["run_id"]]
    return runs


