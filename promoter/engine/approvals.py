"""Approvals bound to what they approve, and the pipeline's approval step.

An approval record (``promoter approve ... --release TAG --sha256 HEX``) names the gate, the release tag and
the artifact's sha256 (terraform approvals name the plan file's sha256, :mod:`promoter.engine.infra`). For a
pipeline, an approval counts only when all of them match the release being promoted: an approval of another
artifact, even under the same tag, does not. Where the plan sets ``four_eyes`` the approver's caller identity
must differ from the identity that started the promotion.

:func:`find_approval` is the pure decision; :class:`ApprovalStep` is the operation of ``action: approval``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from promoter.engine.gates import release_name
from promoter.engine.ledger import whoami
from promoter.engine.pipeline import Probe, StepContext, StepOutcome
from promoter.plan.models import Gate, ManualCheck, Plan


@dataclass(frozen=True)
class ApprovalMatch:
    record: dict[str, Any] | None
    rejected: tuple[str, ...]  # why other approvals of the same gate do not count


def gate_spec(plan: Plan, gate: str) -> Gate | ManualCheck:
    for g in plan.gates:
        if g.id == gate:
            return g
    for c in plan.manual_checks:
        if c.id == gate:
            return c
    raise KeyError(gate)


def approval_env(plan: Plan, gate: str, phase_env: str) -> str:
    """The ledger an approval of ``gate`` lives in: the gate's ``before_env`` (sign-offs before PROD are
    recorded in PROD's), else the environment the phase runs in."""
    spec = gate_spec(plan, gate)
    if isinstance(spec, Gate) and spec.before_env != "any":
        return spec.before_env
    return phase_env


def find_approval(
    records: Iterable[dict[str, Any]], *, gate: str, release: str, artifact_sha256: str, four_eyes: bool,
    started_by: str, name: Callable[[str | None], str | None] = lambda tag: tag,
) -> ApprovalMatch:
    """The latest approval of ``gate`` bound to this release (compared by ``name``: the tags of one release
    name the same release) and artifact, and by another identity under four eyes, with the reasons the others
    were not counted (pure)."""
    rejected: list[str] = []
    for record in reversed([r for r in records if r.get("gate") == gate]):
        who = f"{record.get('approver')} at {record.get('ts')}"
        if name(record.get("release")) != name(release):
            rejected.append(f"{who} approved release {record.get('release')}, not {release}")
            continue
        sha = record.get("artifact_sha256")
        if sha != artifact_sha256:
            what = f"artifact {str(sha)[:12]}" if sha else "no artifact sha256"
            rejected.append(f"{who} approved {what}, not {artifact_sha256[:12]}")
            continue
        if four_eyes and record.get("identity") == started_by:
            rejected.append(f"{who} approved as {started_by}, who started the promotion (four eyes)")
            continue
        return ApprovalMatch(record, tuple(rejected))
    return ApprovalMatch(None, tuple(rejected))


def approve_command(plan: Plan, gate: str, env: str, release: str, artifact_sha256: str) -> str:
    """The exact ``promoter approve`` command that records what the step waits for."""
    spec = gate_spec(plan, gate)
    needs_ref = "--ref" in (spec.record_with or "") or (isinstance(spec, Gate) and spec.kind == "change-request")
    ref = " --ref REF" if needs_ref else ""
    return (f"promoter approve --env {env} --gate {gate} --approver NAME{ref} --release {release} "
            f"--sha256 {artifact_sha256}")


def caller_identity(sts_client_factory: Callable[[], Any] | None) -> str:
    """Who is calling: in a GitHub Actions job the GitHub user who triggered it (``github:LOGIN``: every job
    assumes the same CI role, so its AWS ARN names no person); else the AWS caller identity's ARN when
    credentials answer; else ``user@host``."""
    github = github_actor()
    if github:
        return github
    if sts_client_factory is not None:
        try:
            return str(sts_client_factory().get_caller_identity()["Arn"])
        except Exception:  # no credentials here: the local user is the best identity there is
            pass
    return whoami()


def github_actor(environ: Mapping[str, str] | None = None) -> str | None:
    """``github:LOGIN`` of the user who triggered this GitHub Actions run (a re-run: who re-ran it), else None."""
    env = os.environ if environ is None else environ
    if env.get("GITHUB_ACTIONS") != "true":
        return None
    login = env.get("GITHUB_TRIGGERING_ACTOR") or env.get("GITHUB_ACTOR")
    return f"github:{login}" if login else None


class ApprovalStep:
    """``action: approval``: passes when the gate's approval for this release and artifact is recorded, else
    waits (exit 5) with the command that records it."""

    def _match(self, ctx: StepContext) -> tuple[ApprovalMatch, str, str]:
        gate = ctx.step.gate or ""
        env = approval_env(ctx.plan, gate, ctx.phase.env)
        spec = gate_spec(ctx.plan, gate)
        match = find_approval(ctx.ledger.records(env, kind="approval"), gate=gate, release=ctx.artifact.release,
                              artifact_sha256=ctx.artifact.sha256, four_eyes=spec.four_eyes,
                              started_by=ctx.started_by, name=lambda tag: release_name(ctx.plan, tag))
        return match, env, approve_command(ctx.plan, gate, env, ctx.artifact.release, ctx.artifact.sha256)

    def probe(self, ctx: StepContext) -> Probe:
        match, _env, command = self._match(ctx)
        if match.record is not None:
            return Probe("run", f"approved by {match.record.get('approver')} at {match.record.get('ts')}")
        return Probe("wait", "no approval on record" + _why(match), command)

    def run(self, ctx: StepContext) -> StepOutcome:
        match, env, command = self._match(ctx)
        if match.record is None:
            return StepOutcome("waiting", f"no approval of {ctx.step.gate} for {ctx.artifact.release} (sha256 "
                               f"{ctx.artifact.sha256[:12]}) on record in {env}" + _why(match), command=command,
                               outputs={"rejected": list(match.rejected)})
        r = match.record
        outputs = {"gate": ctx.step.gate, "approver": r.get("approver"), "identity": r.get("identity"),
                   "ts": r.get("ts"), "ref": r.get("ref"), "env": env}
        return StepOutcome("passed", f"approved by {r.get('approver')} ({r.get('identity') or 'identity unknown'}) "
                           f"at {r.get('ts')}" + (f", ref {r.get('ref')}" if r.get("ref") else ""),
                           outputs=outputs, files={"approval.json": r})


def _why(match: ApprovalMatch) -> str:
    return f"; not counted: {'; '.join(match.rejected)}" if match.rejected else ""
