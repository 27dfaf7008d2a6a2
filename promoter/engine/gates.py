"""Release gates: the runbook's sign-offs that must be on record before a release reaches an environment.

A plan gate with ``blocks_deploy`` (SIT sign-off and the change request, before PROD) is satisfied only by an
``approval`` record in that environment's ledger for the same gate and the same release: a sign-off of v1.1.0
does not let v1.2.0 through (the tags of one release, ``v1.1.0-sit`` and ``v1.1.0-prod``, name the same release),
nor does an approval of another artifact (``--sha256``).
``promoter approve --env prod --gate sit-signoff --approver NAME --release v1.1.0`` records one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from promoter.errors import RefusedError
from promoter.plan.models import Gate, Plan


def release_name(plan: Plan, tag: str | None) -> str | None:
    """The release a tag names: ``v1.1.0-sit`` and ``v1.1.0-prod`` are both release ``v1.1.0`` (the runbook tags
    one commit once per environment); any other tag names itself."""
    if tag is None:
        return None
    base, sep, suffix = tag.rpartition("-")
    return base if sep and base and suffix in plan.environments else tag


def blocking_gates(plan: Plan, env: str) -> list[Gate]:
    return [g for g in plan.gates if g.blocks_deploy and g.before_env in {env, "any"}]


def missing_gates(plan: Plan, env: str, release: str, approvals: Iterable[dict[str, Any]],
                  artifact_sha256: str | None = None) -> list[Gate]:
    """The blocking gates of ``env`` with no approval recorded for ``release`` (pure). An approval that names
    another artifact's sha256 does not count for this one."""
    wanted = release_name(plan, release)
    approved = {a.get("gate") for a in approvals if release_name(plan, a.get("release")) == wanted
                and (artifact_sha256 is None or a.get("artifact_sha256") in (None, artifact_sha256))}
    return [g for g in blocking_gates(plan, env) if g.id not in approved]


def refuse_missing_gates(plan: Plan, env: str, release: str, approvals: Iterable[dict[str, Any]],
                         artifact_sha256: str | None = None) -> None:
    missing = missing_gates(plan, env, release, approvals, artifact_sha256)
    if not missing:
        return
    lines = [
        f"{g.id} ({g.title}): "
        + (g.record_with or f"promoter approve --env {env} --gate {g.id} --approver NAME --release TAG")
        .replace("ENV", env).replace("TAG", release)
        for g in missing
    ]
    raise RefusedError(
        f"{release} cannot go to {env}: no approval on record for " + "; ".join(lines),
        hint="record each approval once it is given; nothing was changed",
    )
