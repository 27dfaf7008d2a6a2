"""Rich renderings of plan data. Kept apart from the commands so they are testable on plain data."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from promoter.plan.models import Plan


def render_plan(out: Console, plan: Plan, env: str | None = None) -> None:
    out.print(f"[bold]{plan.id}[/]: {plan.title}  (project {plan.project}, owner {plan.owner})")

    envs = Table(title="Environments", title_justify="left")
    for col in ("env", "account", "region", "domain", "profile", "workspace", "strategy", "DR"):
        envs.add_column(col)
    for name, spec in plan.environments.items():
        if env and name != env:
            continue
        strategy = spec.strategy.mode + (" (required)" if spec.strategy.canary_required else "")
        dr = f"{spec.dr.primary_region} -> {spec.dr.failover_region}" if spec.dr else "-"
        envs.add_row(name, spec.account_id, spec.region, spec.domain, spec.profile, spec.terraform_workspace,
                     strategy, dr)
    out.print(envs)

    if env:
        names = plan.names(env)
        res = Table(title=f"Resources in {env}", title_justify="left")
        res.add_column("resource")
        res.add_column("name")
        for key, value in names.model_dump().items():
            if key in {"env", "alarms"}:
                continue
            res.add_row(key, str(value))
        owners = {d.resource: d.owner for d in plan.dependencies}
        for key in owners:
            res.add_row(f"  ({key} owned by)", owners[key])
        out.print(res)

    phases = Table(title="Phases", title_justify="left")
    for col in ("phase", "env", "step", "action", "kind"):
        phases.add_column(col)
    for phase in plan.phases:
        if env and phase.env != env:
            continue
        for i, step in enumerate(phase.steps):
            phases.add_row(phase.title if i == 0 else "", phase.env if i == 0 else "", step.title,
                           _action(step), "manual" if step.manual else "automated")
    out.print(phases)

    gates = Table(title="Gates and approvals", title_justify="left")
    for col in ("gate", "before", "approvers", "record with"):
        gates.add_column(col)
    for gate in plan.gates:
        if env and gate.before_env not in {env, "any"}:
            continue
        gates.add_row(gate.title, gate.before_env, ", ".join(gate.approvers), gate.record_with)
    out.print(gates)

    canary = Table(title="Canary steps", title_justify="left")
    canary.add_column("weight %", justify="right")
    canary.add_column("bake", justify="right")
    for step in plan.canary.steps:
        canary.add_row(str(step.weight), f"{step.bake_seconds}s")
    out.print(canary)
    c = plan.canary
    out.print(
        f"analysis every {c.analysis_interval_seconds}s, at least {c.min_invocations} invocations per verdict, "
        f"extend up to {c.max_extension_seconds}s then {c.on_inconclusive}; "
        f"compared to stable: {'yes' if c.compare_to_stable else 'no'}"
    )

    thr = Table(title="Rollback thresholds and SLA", title_justify="left")
    thr.add_column("measure")
    thr.add_column("rollback when", justify="right")
    thr.add_column("SLA", justify="right")
    t, s = plan.rollback_thresholds, plan.sla
    thr.add_row("error rate", f"> {t.error_rate_pct} %", f"< {s.error_rate_pct} %")
    thr.add_row("p95 duration", f"> {t.p95_duration_ms:g} ms", f"< {s.p95_ms:g} ms")
    thr.add_row("throttles", f"> {t.throttles_per_minute:g} /min", "-")
    thr.add_row("DLQ messages", f"> {t.dlq_messages}", "-")
    out.print(thr)

    alarms = Table(title="CloudWatch alarms", title_justify="left")
    for col in ("alarm", "metric", "threshold", "actions"):
        alarms.add_column(col)
    for alarm in plan.alarms:
        name = alarm.name.replace("{env}", env) if env else alarm.name
        alarms.add_row(name, f"{alarm.metric} ({alarm.statistic})", f"{alarm.comparison} {alarm.threshold:g}",
                       ", ".join(alarm.actions))
    out.print(alarms)


def _action(step) -> str:
    params = [f"{k}={v}" for k, v in (("gate", step.gate), ("env", step.env)) if v]
    if step.canary:
        params.append("canary")
    return step.action + (f" ({', '.join(params)})" if params else "")
