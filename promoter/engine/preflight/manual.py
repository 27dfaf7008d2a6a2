"""The checklist items no machine can check (gates and manual checks of the plan), with their ledger records."""

from __future__ import annotations

from collections.abc import Callable

from promoter.engine.preflight.core import Finding, PreflightContext, manual
from promoter.plan.models import Plan

APPROVAL_KIND = "approval"


def applicable(plan: Plan, env: str) -> list[tuple[str, str, str, bool]]:
    """``(id, title, record_with, is_gate)`` of every gate and manual check that applies to ``env``."""
    items = [(g.id, g.title, g.record_with, True) for g in plan.gates if g.before_env in {env, "any"}]
    items += [(m.id, m.title, m.record_with, False) for m in plan.manual_checks if env in m.envs]
    return items


def latest_approval(ctx: PreflightContext, gate_id: str) -> dict | None:
    """The newest ``approval`` record for ``gate_id`` in this environment's ledger, if any."""
    if ctx.approvals is None:
        return None
    records = [r for r in ctx.approvals.records(ctx.env, kind=APPROVAL_KIND) if r.get("gate") == gate_id]
    return records[-1] if records else None


def manual_check(gate_id: str, record_with: str) -> Callable[[PreflightContext], Finding]:
    def run(ctx: PreflightContext) -> Finding:
        how = record_with.replace("ENV", ctx.env) if record_with else f"record it in the ledger ({gate_id})"
        record = latest_approval(ctx, gate_id)
        if record is None:
            return manual("not recorded", f"confirm, then: {how}")
        who = record.get("approver") or record.get("who") or record.get("by") or "unknown"
        ref = f" (ref {record['ref']})" if record.get("ref") else ""
        shown = {k: record.get(k) for k in ("approver", "who", "ts", "ref") if record.get(k)}
        return manual(f"recorded: {who} at {record.get('ts', '?')}{ref}", None, shown)

    return run
