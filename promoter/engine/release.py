"""The release engine: deploy a new Lambda version behind the alias with canary analysis and automatic rollback.

Stages of :func:`deploy` (the runbook's "Deploy Lambda Code", "Traffic Shifting (Gradual)" and "Rollback
Triggers", done as progressive delivery):

1. **lock**: take the environment's lock in the ledger (a second run waits ``lock_wait`` seconds or refuses
   naming the holder);
2. **artifact**: build the zip for the environment's target, or take ``--artifact``; check the release tag
   against HEAD's tag when the plan requires one;
3. **plan** (read-only): read the alias (refuse when it is mid-shift), list the versions, decide whether an
   identical version (same artifact sha256 and environment) can be reused, and lay out the steps. A dry run
   stops here and shows the steps: the same planner, a display-only executor;
4. **publish**: upload the code, wait for the update with a deadline, set the environment, publish a
   version described ``release=<tag> git=<sha> sha256=<hex>`` guarded by ``CodeSha256``;
5. **pre-traffic gate**: invoke the new version directly with the smoke requests as API Gateway events;
   any failure stops the release before any user traffic moves;
6. **shift and bake**: move the alias step by step (RevisionId-guarded, each change recorded before and
   after), and during each bake judge the canary against the stable version every analysis interval
   (:mod:`promoter.engine.canary`);
7. **end**: on a failed verdict, an interrupt or a foreign change, roll back to the stable version (or hold,
   when asked) and record the outcome with every number used. The first Ctrl-C or SIGTERM stops the run; any
   later one is counted in the end record and never stops a rollback that has begun (:class:`InterruptGuard`).

Ports (small protocols, so the state machine runs on fakes in unit tests): :class:`AliasRouter`,
:class:`MetricSource`, :class:`Invoker`, :class:`FunctionStore`, and the ledger's ``Clock``. The engine
reports progress through an ``Observer`` callable and never prints.

This module gathers the release operations, each in a module of its own: :mod:`.runs` (ports, settings,
records, shared helpers), :mod:`.deploy`, :mod:`.resume` (resume, abort), :mod:`.rollback` (``rollback --to``)
and :mod:`.status` (status, history).
"""

from __future__ import annotations

from promoter.engine.deploy import (
    _Refusals,
    _refuse_chaos,
    _refuse_mid_shift,
    _release_in_zip,
    _Run,
    _strategy_record,
    check_strategy,
    deploy,
    gate_changes,
    plan_deploy,
    prepare_artifact,
    refuse_unsafe,
    refuse_untagged,
    who_moved,
)
from promoter.engine.resume import (
    _candidate_of,
    _settle_unrecorded_intent,
    abort,
    resume,
    unfinished_run,
)
from promoter.engine.rollback import (
    RollbackSettings,
    deployed_tags,
    failed_versions,
    refuse_failed,
    resolve_target,
    rollback_to,
)
from promoter.engine.runs import (
    SETTLE_SECONDS,
    AliasRouter,
    DeployPlan,
    DeploySettings,
    FunctionStore,
    InterruptGuard,
    Invoker,
    MetricSource,
    Observer,
    Outcome,
    Ports,
    PreparedArtifact,
    ReleaseEvent,
    RunRecord,
    Step,
    _describe,
    _Foreign,
    _silent,
    _Stop,
    _weight_of,
    desired_environment,
    manual_rollback_command,
    plan_steps,
    read_if_applied,
    routing_for,
    sigterm_as_interrupt,
    step_clock,
)
from promoter.engine.status import (
    history,
    status,
)

__all__ = [
    "SETTLE_SECONDS",
    "AliasRouter",
    "DeployPlan",
    "DeploySettings",
    "FunctionStore",
    "InterruptGuard",
    "Invoker",
    "MetricSource",
    "Observer",
    "Outcome",
    "Ports",
    "PreparedArtifact",
    "ReleaseEvent",
    "RollbackSettings",
    "RunRecord",
    "Step",
    "_Foreign",
    "_Refusals",
    "_Run",
    "_Stop",
    "_candidate_of",
    "_describe",
    "_refuse_chaos",
    "_refuse_mid_shift",
    "_release_in_zip",
    "_settle_unrecorded_intent",
    "_silent",
    "_strategy_record",
    "_weight_of",
    "abort",
    "check_strategy",
    "deploy",
    "deployed_tags",
    "desired_environment",
    "failed_versions",
    "gate_changes",
    "history",
    "manual_rollback_command",
    "plan_deploy",
    "plan_steps",
    "prepare_artifact",
    "read_if_applied",
    "refuse_failed",
    "refuse_unsafe",
    "refuse_untagged",
    "resolve_target",
    "resume",
    "rollback_to",
    "routing_for",
    "sigterm_as_interrupt",
    "status",
    "step_clock",
    "unfinished_run",
    "who_moved",
]
