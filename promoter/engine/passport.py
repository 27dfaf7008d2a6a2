"""The artifact passport: an environment with ``passport`` in the plan (PROD) accepts only an artifact, named by
its sha256, that the records of its ``proven_in`` environment (SIT) prove.

Proof, all for the same sha256, read from the ``proven_in`` environment's ledger:

1. **canary**: a deploy run of the artifact that shifted through canary steps and ended ``succeeded`` with the
   alias at 100 % on its version;
2. **smoke**: a passed smoke run against that environment for the artifact, after it reached 100 %;
3. **validation**: every step of the plan's ``validation_phase`` passed for the artifact;
4. **soak**: the version served 100 % for at least ``min_soak_minutes`` from reaching it until now (or until
   the alias moved to another version), with no ``rollback`` run meanwhile. Where ``promoter watch`` recorded
   a soak for the artifact, its outcome decides: a failed soak (a check that was not green) is a problem
   whatever the time says, and a passed one over at least ``min_soak_minutes`` proves the soak.

:func:`proof_problems` is the pure decision; :func:`admit` refuses (exit 1, nothing changed) naming every
missing piece. ``--allow-unproven`` overrides it only where the plan allows, and is recorded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from promoter.engine.backup import parse_time
from promoter.engine.ledger import Ledger
from promoter.errors import RefusedError
from promoter.plan.models import Passport, Plan


@dataclass(frozen=True)
class Proof:
    problems: tuple[str, ...]
    version: str | None = None
    reached_100: str | None = None
    soak_minutes: float | None = None

    @property
    def proven(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"proven": self.proven, "problems": list(self.problems), "version": self.version,
                "reached_100": self.reached_100, "soak_minutes": self.soak_minutes}


def _canary_run(records: list[dict[str, Any]], sha: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The last succeeded canary deploy of ``sha`` and the alias change that put it at 100 %."""
    ends = {r.get("run_id"): r for r in records if r.get("kind") == "run-end"}
    found = None
    for start in records:
        if start.get("kind") != "run-start" or start.get("kind_of_run") != "deploy":
            continue
        if (start.get("artifact") or {}).get("sha256") != sha:
            continue
        if (ends.get(start.get("run_id")) or {}).get("outcome") != "succeeded":
            continue
        if not any(int(s.get("weight", 100)) < 100 for s in start.get("steps") or []):
            continue
        full = [r for r in records if r.get("kind") == "alias-change" and r.get("run_id") == start.get("run_id")
                and not (r.get("after") or {}).get("weights")]
        if full:
            found = (start, full[-1])
    return found


def proof_problems(records: Iterable[dict[str, Any]], *, plan: Plan, passport: Passport, sha: str,
                   now: datetime) -> Proof:
    """What the ``proven_in`` environment's records lack to prove ``sha`` (pure)."""
    records = list(records)
    where = passport.proven_in
    problems: list[str] = []
    canary = _canary_run(records, sha)
    if canary is None:
        problems.append(f"no canary deploy of {sha[:12]} to 100 % in {where}")
        version, reached = None, None
    else:
        version = str((canary[1].get("after") or {}).get("version"))
        reached = canary[1]["ts"]
    smoke = [r for r in records if r.get("kind") == "smoke" and r.get("artifact_sha256") == sha and r.get("ok")
             and (reached is None or r["ts"] >= reached)]
    if not smoke:
        problems.append(f"no passed smoke run of {sha[:12]} in {where}")
    if passport.validation_phase:
        phase = plan.phase(passport.validation_phase)
        passed = {r.get("step") for r in records if r.get("kind") == "pipeline-step"
                  and r.get("phase") == phase.id and r.get("status") in ("passed", "skipped")
                  and (r.get("inputs") or {}).get("artifact_sha256") == sha}
        missing = [s.id for s in phase.steps if s.id not in passed]
        if missing:
            problems.append(f"{phase.id} steps not passed for {sha[:12]} in {where}: {', '.join(missing)}")
    soak = None
    if reached is not None:
        start = parse_time(reached)
        end, rolled = now, []
        for r in records:
            if r["ts"] <= reached:
                continue
            if r.get("kind") == "run-start" and r.get("kind_of_run") == "rollback":
                rolled.append(f"rollback run {r.get('run_id')} at {r['ts']}")
            if r.get("kind") == "alias-change" and str((r.get("after") or {}).get("version")) != version:
                end = parse_time(r["ts"])
                break
        soak = round((end - start).total_seconds() / 60, 2)
        if rolled:
            problems.append(f"rolled back in {where} during the soak: {'; '.join(rolled)}")
        watched = watched_soak(records, sha)
        if watched is not None and watched.get("outcome") == "failed":
            problems.append(f"the watch's soak failed in {where}: {watched.get('reason')}")
        elif watched is not None and float(watched.get("elapsed_minutes") or 0) >= passport.min_soak_minutes:
            soak = float(watched["elapsed_minutes"])  # the watch saw the whole soak green
        elif soak < passport.min_soak_minutes:
            problems.append(f"soaked {soak:g} minutes in {where} at 100 %, the plan asks for "
                            f"{passport.min_soak_minutes:g}")
    return Proof(tuple(problems), version, reached, soak)


def watched_soak(records: Iterable[dict[str, Any]], sha: str) -> dict[str, Any] | None:
    """The last soak outcome ``promoter watch`` recorded for artifact ``sha`` (passed or failed), or None."""
    found = None
    for r in records:
        if r.get("kind") == "watch-soak" and r.get("artifact_sha256") == sha:
            found = r
    return found


def admit(plan: Plan, env: str, sha: str, release: str, ledger: Ledger, *, allow_unproven: bool = False,
          now: datetime | None = None) -> dict[str, Any] | None:
    """Refuse an artifact ``env``'s passport does not accept; the proof (or the recorded override) otherwise."""
    passport = plan.environment(env).passport
    if passport is None:
        return None
    proof = proof_problems(ledger.records(passport.proven_in), plan=plan, passport=passport, sha=sha,
                           now=now or datetime.now(UTC))
    if proof.proven:
        return {"passport": "proven", **proof.to_dict()}
    if allow_unproven and not passport.allow_unproven:
        raise RefusedError(
            f"--allow-unproven is refused in {env}: the plan sets passport.allow_unproven: false; "
            f"{release} (sha256 {sha[:12]}) is not proven: " + "; ".join(proof.problems),
            hint=f"promote the same artifact through {passport.proven_in} first; nothing was changed",
        )
    if allow_unproven:
        ledger.append(env, "passport-override", release=release, artifact_sha256=sha, problems=list(proof.problems))
        return {"passport": "overridden (--allow-unproven)", **proof.to_dict()}
    raise RefusedError(
        f"{env} accepts only an artifact {passport.proven_in} proved; {release} (sha256 {sha[:12]}) is missing: "
        + "; ".join(proof.problems),
        hint=f"promote this artifact through {passport.proven_in} (promoter promote --env {passport.proven_in}) "
        "and let it soak; nothing was changed",
    )
