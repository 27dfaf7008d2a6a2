"""The promotion pipeline: the plan's phases for one environment, run step by step, every step in the ledger.

Stages of :func:`promote`:

1. **artifact**: build the release once (reproducible: the same commit gives the same sha256) or take
   ``--artifact``; its sha256 is the release's identity in every account;
2. **admission**: an environment with a ``passport`` (PROD) refuses an artifact its ``proven_in`` environment's
   records do not prove (:mod:`promoter.engine.passport`), before any step runs and before anything changes;
3. **run**: a new pipeline run, or with ``--resume`` the last unfinished one of the same phases; a finished
   promotion of the same release and artifact is a no-op that says so;
4. **steps**, in order, through one planner (:func:`decide`): a step that passed in this run with the same
   inputs (release, artifact sha256, terraform plan sha256, the step's own parameters) is skipped, anything
   else runs. The executor calls the operation the step's action names; a dry run asks each operation what it
   would do (``probe``) instead, so the two paths share every decision;
5. **end**: the run ends ``succeeded``, ``waiting`` (a manual step without its approval: exit 5 with the
   exact ``promoter approve`` command), or ``failed`` (the step's own error and exit code).

Records, in the phase environment's ledger, all keyed by ``pipeline_id`` (never ``run_id``, which names the
deploy and rollback runs the steps start): ``pipeline-start``, ``pipeline-step`` (status started, then passed,
failed, waiting or skipped, with inputs and outputs), ``pipeline-end``.

Ports: an :class:`Operation` per action (``run`` acts, ``probe`` only reads), the ledger, a wall clock and an
``Observer`` for progress. The engine never prints.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from promoter.engine.ledger import Ledger, new_run_id
from promoter.errors import LockHeld, PromoterError, RefusedError, UsageError, WaitingForApproval
from promoter.plan.models import Phase, PhaseStep, Plan

StepStatus = Literal["passed", "failed", "waiting", "skipped"]
Decision = Literal["run", "skip"]


# -- records and ports ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArtifactRef:
    """The artifact a pipeline promotes: its release tag, path and sha256 (the release's identity)."""

    release: str
    sha256: str
    path: str
    code_sha256: str = ""
    git_sha: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class StepOutcome:
    status: StepStatus
    detail: str
    outputs: dict[str, Any] = field(default_factory=dict)
    command: str | None = None  # waiting: the command that records the missing approval
    files: dict[str, Any] = field(default_factory=dict)  # evidence: file name -> text, bytes or JSON data


@dataclass(frozen=True)
class Probe:
    """What a step would do, from read-only calls: run, or wait for an approval (with the command)."""

    would: Literal["run", "wait", "skip"]
    detail: str = ""
    command: str | None = None


@dataclass
class StepContext:
    """Everything an operation needs for one step."""

    plan: Plan
    phase: Phase
    step: PhaseStep
    env: str  # the environment the step acts on (the phase's, or the step's own ``env``)
    pipeline_id: str
    artifact: ArtifactRef
    inputs: dict[str, Any]
    state: dict[str, dict[str, Any]]  # outputs of earlier steps, by "phase/step"
    ledger: Ledger
    started_by: str  # caller identity that started the promotion (four eyes)
    settings: PromoteSettings
    note: Callable[[str], None] = lambda _m: None


class Operation(Protocol):
    """One action of the plan's steps. ``run`` acts and records; ``probe`` only reads (dry runs)."""

    def run(self, ctx: StepContext) -> StepOutcome: ...

    def probe(self, ctx: StepContext) -> Probe: ...


@dataclass(frozen=True)
class PipelineEvent:
    kind: str  # start, noop, step-start, step-end, note, end
    data: dict[str, Any]


Observer = Callable[[PipelineEvent], None]


@dataclass(frozen=True)
class PromoteSettings:
    """One ``promoter promote``: which phases, which release, how."""

    plan: Plan
    env: str
    phase: str | None = None
    release: str | None = None
    artifact: Path | None = None
    allow_untagged: bool = False
    allow_unproven: bool = False
    resume: bool = False
    dry_run: bool = False
    repo: Path | None = None
    out_dir: Path = Path("dist")
    # deploy's options for the deploy steps
    bake_seconds: float | None = None
    analysis_interval: float | None = None
    env_vars: dict[str, str] = field(default_factory=dict)
    on_interrupt: Literal["rollback", "hold"] = "rollback"
    lock_wait: float = 0
    target: str | None = None
    security_max_examples: int | None = None  # the security step's fuzzing bound (None: the plan's)
    # the load step's profile, compressed for a rehearsal (None: the plan's load.requests_per_second and
    # load.duration_seconds)
    load_rate: float | None = None
    load_duration: float | None = None

    def phases(self) -> list[Phase]:
        if self.phase:
            phase = self.plan.phase(self.phase)
            if phase.env != self.env:
                raise UsageError(f"phase {phase.id} runs in {phase.env}, not {self.env}",
                                 hint=f"promoter promote --env {phase.env} --phase {phase.id}")
            return [phase]
        phases = self.plan.phases_of(self.env)
        if not phases:
            raise UsageError(f"the plan has no phase for {self.env}; phases: "
                             + ", ".join(f"{p.id} ({p.env})" for p in self.plan.phases))
        return phases


@dataclass
class PipelineRun:
    """The pipeline run record: what ``--json`` prints, on success and failure alike."""

    pipeline_id: str
    env: str
    phases: list[str]
    release: str
    artifact_sha256: str
    started_by: str
    outcome: str | None = None  # succeeded | waiting | failed | refused | noop | dry-run
    reason: str = ""
    resumed: bool = False
    steps: list[dict[str, Any]] = field(default_factory=list)
    waiting_for: dict[str, Any] | None = None
    evidence: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# -- the planner (pure) ----------------------------------------------------------------------------------------
def step_key(phase: Phase | str, step: PhaseStep | str) -> str:
    return f"{getattr(phase, 'id', phase)}/{getattr(step, 'id', step)}"


def step_inputs(step: PhaseStep, artifact: ArtifactRef, state: Mapping[str, Mapping[str, Any]],
                phase: Phase) -> dict[str, Any]:
    """What a step's result depends on: the release, the artifact's sha256, the step's parameters and, from the
    infra-plan step of the same phase onwards, the terraform plan's sha256."""
    inputs: dict[str, Any] = {"release": artifact.release, "artifact_sha256": artifact.sha256,
                              "step": step.model_dump(mode="json")}
    ids = [s.id for s in phase.steps]
    for earlier in phase.steps[: ids.index(step.id)]:
        if earlier.action == "infra-plan":
            inputs["plan_sha256"] = (state.get(step_key(phase, earlier)) or {}).get("plan_sha256")
    return inputs


def decide(key: str, inputs: Mapping[str, Any], history: list[dict[str, Any]]) -> tuple[Decision, str]:
    """Run or skip one step, given the ``pipeline-step`` records of the run being resumed (pure)."""
    ends = [r for r in history if r.get("step_key") == key and r.get("status") != "started"]
    if not ends:
        return "run", "not run yet"
    last = ends[-1]
    if last.get("status") not in ("passed", "skipped"):
        return "run", f"its last outcome was {last.get('status')}"
    if _canonical(last.get("inputs")) != _canonical(inputs):
        changed = sorted(k for k in set(inputs) | set(last.get("inputs") or {})
                         if _canonical((last.get("inputs") or {}).get(k)) != _canonical(inputs.get(k)))
        return "run", f"its inputs changed since it {last.get('status')} ({', '.join(changed)})"
    return "skip", f"{last.get('status')} at {last.get('ts')} with the same inputs"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def resumable_run(ledger: Ledger, env: str, phases: list[str]) -> dict[str, Any] | None:
    """The last pipeline run of ``phases`` in ``env`` that did not succeed, or None."""
    for start in reversed(ledger.records(env, kind="pipeline-start")):
        if start.get("phases") != phases:
            continue
        end = _end_of(ledger, env, start["pipeline_id"])
        if end is None or end.get("outcome") != "succeeded":
            return start
        return None
    return None


def finished_run(ledger: Ledger, env: str, phases: list[str], artifact: ArtifactRef) -> dict[str, Any] | None:
    """The last run of ``phases`` when it succeeded for this very release and artifact."""
    for start in reversed(ledger.records(env, kind="pipeline-start")):
        if start.get("phases") != phases:
            continue
        end = _end_of(ledger, env, start["pipeline_id"])
        if (end is not None and end.get("outcome") == "succeeded" and start.get("release") == artifact.release
                and start.get("artifact_sha256") == artifact.sha256):
            return {**start, "ended": end.get("ts")}
        return None
    return None


def _end_of(ledger: Ledger, env: str, pipeline_id: str) -> dict[str, Any] | None:
    ends = [r for r in ledger.records(env, kind="pipeline-end") if r.get("pipeline_id") == pipeline_id]
    return ends[-1] if ends else None


def pipeline_records(ledger: Ledger, env: str, pipeline_id: str) -> list[dict[str, Any]]:
    return [r for r in ledger.records(env) if r.get("pipeline_id") == pipeline_id]


# -- the executor --------------------------------------------------------------------------------------------
ArtifactSource = Callable[[PromoteSettings, Callable[[str], None]], ArtifactRef]
Admission = Callable[[PromoteSettings, ArtifactRef, Ledger], dict[str, Any] | None]
EvidenceWriter = Callable[[Ledger, str, str], dict[str, Any]]


@dataclass
class PipelinePorts:
    operations: Mapping[str, Operation]
    ledger: Ledger
    identity: Callable[[], str]
    artifact: ArtifactSource
    admission: Admission | None = None  # refuses an artifact the environment does not accept (the passport)
    evidence: EvidenceWriter | None = None  # writes the run's evidence pack at its end
    wall: Callable[[], float] = time.time
    notify: Observer | None = None  # hears every event too (notifications); must return at once and never raise


def _silent(_event: PipelineEvent) -> None:
    return None


def _also(observer: Observer, notify: Observer | None) -> Observer:
    if notify is None:
        return observer

    def both(event: PipelineEvent) -> None:
        observer(event)
        with contextlib.suppress(Exception):  # a notification never fails a promotion
            notify(event)

    return both


def promote(settings: PromoteSettings, ports: PipelinePorts, observer: Observer | None = None) -> PipelineRun:
    """Run the selected phases; raise WaitingForApproval (exit 5), the failed step's error, or a refusal."""
    emit = _also(observer or _silent, ports.notify)
    env = settings.env
    phases = settings.phases()
    phase_ids = [p.id for p in phases]
    missing = sorted({s.action for p in phases for s in p.steps} - set(ports.operations))
    if missing:
        raise UsageError(f"no operation for the step actions {', '.join(missing)}")
    ledger = ports.ledger
    artifact = ports.artifact(settings, lambda m: emit(PipelineEvent("note", {"message": m})))
    who = ports.identity()
    admitted = ports.admission(settings, artifact, ledger) if ports.admission else None

    done = finished_run(ledger, env, phase_ids, artifact)
    if done is not None:
        run = PipelineRun(pipeline_id=done["pipeline_id"], env=env, phases=phase_ids, release=artifact.release,
                          artifact_sha256=artifact.sha256, started_by=who, outcome="noop",
                          reason=f"{' + '.join(phase_ids)} already succeeded for {artifact.release} (sha256 "
                          f"{artifact.sha256[:12]}) in run {done['pipeline_id']} at {done['ended']}: nothing to do")
        emit(PipelineEvent("noop", {"reason": run.reason}))
        return run

    previous = resumable_run(ledger, env, phase_ids)
    if settings.dry_run:
        return _dry_run(settings, ports, phases, artifact, who, previous, emit)
    if previous is not None and not settings.resume and previous.get("release") == artifact.release \
            and previous.get("artifact_sha256") == artifact.sha256:
        raise RefusedError(
            f"run {previous['pipeline_id']} of {' + '.join(phase_ids)} for {artifact.release} is unfinished",
            hint=f"continue it: promoter promote --env {env}{_phase_opt(settings)} --release {artifact.release} "
            "--resume",
        )
    if settings.resume and previous is None:
        raise RefusedError(f"no unfinished run of {' + '.join(phase_ids)} in {env} to resume",
                           hint=f"start one: promoter promote --env {env}{_phase_opt(settings)}")

    with _pipeline_lock(ledger, env, settings.lock_wait):
        resumed = settings.resume and previous is not None
        pipeline_id = previous["pipeline_id"] if resumed else new_run_id()
        history = pipeline_records(ledger, env, pipeline_id) if resumed else []
        started_by = str(previous.get("who")) if resumed else who
        run = PipelineRun(pipeline_id=pipeline_id, env=env, phases=phase_ids, release=artifact.release,
                          artifact_sha256=artifact.sha256, started_by=started_by, resumed=resumed)

        def log(kind: str, **data: Any) -> dict[str, Any]:
            return ledger.append(env, kind, pipeline_id=pipeline_id, **data)

        log("pipeline-resumed" if resumed else "pipeline-start", kind_of_pipeline="promote", phases=phase_ids,
            release=artifact.release, artifact_sha256=artifact.sha256, artifact=artifact.to_dict(), who=who,
            plan_id=settings.plan.id, allow_unproven=settings.allow_unproven, admission=admitted)
        emit(PipelineEvent("start", {"pipeline_id": pipeline_id, "phases": phase_ids, "resumed": resumed,
                                     "release": artifact.release, "artifact_sha256": artifact.sha256}))
        state: dict[str, dict[str, Any]] = {}
        for r in history:  # outputs of steps that passed before: later steps' inputs depend on them
            if r.get("status") in ("passed", "skipped") and r.get("step_key"):
                state[r["step_key"]] = r.get("outputs") or {}
        try:
            for phase in phases:
                for step in phase.steps:
                    _execute(settings, ports, run, phase, step, artifact, state, history, started_by, log, emit)
        except WaitingForApproval as exc:
            return _end(run, ports, log, emit, "waiting", exc.message, exc)
        except PromoterError as exc:
            return _end(run, ports, log, emit, "failed", exc.message, exc)
        except KeyboardInterrupt:
            _end(run, ports, log, emit, "failed", "interrupted", None)
            raise
        except Exception as exc:  # an unforeseen error still ends the run on record
            _end(run, ports, log, emit, "failed", f"{type(exc).__name__}: {exc}", None)
            raise
        return _end(run, ports, log, emit, "succeeded",
                    f"{' + '.join(phase_ids)} done for {artifact.release} (sha256 {artifact.sha256[:12]})", None)


@contextlib.contextmanager
def _pipeline_lock(ledger: Ledger, env: str, wait: float) -> Iterator[None]:
    """One promotion at a time per environment; its own lock, since the deploy step takes the environment's."""
    name = f"{env}-pipeline"
    try:
        with ledger.lock(name, purpose="promote", wait_seconds=wait):
            yield
    except LockHeld as exc:
        raise RefusedError(
            f"another promotion of {env} is running: {exc.message}",
            hint=f"wait for it (--lock-wait SECONDS); if its process is dead, remove {ledger.lock_path(name)}",
        ) from None


def _phase_opt(settings: PromoteSettings) -> str:
    return f" --phase {settings.phase}" if settings.phase else ""


def _context(settings, ledger, phase, step, artifact, state, pipeline_id, started_by, emit) -> StepContext:
    inputs = step_inputs(step, artifact, state, phase)
    return StepContext(plan=settings.plan, phase=phase, step=step, env=step.env or phase.env,
                       pipeline_id=pipeline_id, artifact=artifact, inputs=inputs, state=state, ledger=ledger,
                       started_by=started_by, settings=settings,
                       note=lambda m: emit(PipelineEvent("note", {"step": step.id, "message": m})))


def _execute(settings, ports, run, phase, step, artifact, state, history, started_by, log, emit) -> None:
    key = step_key(phase, step)
    ctx = _context(settings, ports.ledger, phase, step, artifact, state, run.pipeline_id, started_by, emit)
    decision, why = decide(key, ctx.inputs, history)
    base = {"step_key": key, "phase": phase.id, "step": step.id, "action": step.action, "target_env": ctx.env,
            "inputs": ctx.inputs}
    if decision == "skip":
        previous = [r for r in history if r.get("step_key") == key and r.get("status") in ("passed", "skipped")][-1]
        entry = {**base, "status": "skipped", "detail": f"already {why}", "outputs": previous.get("outputs") or {}}
        state[key] = entry["outputs"]
        log("pipeline-step", **entry, resumed_from=previous.get("ts"))
        run.steps.append(entry)
        emit(PipelineEvent("step-end", {**entry, "title": step.title}))
        return
    log("pipeline-step", **base, status="started", why=why)
    emit(PipelineEvent("step-start", {"key": key, "title": step.title, "action": step.action, "why": why}))
    started = ports.wall()
    try:
        outcome = ports.operations[step.action].run(ctx)
    except PromoterError as exc:
        entry = {**base, "status": "failed", "detail": exc.message, "error": type(exc).__name__,
                 "exit_code": int(exc.exit_code), "outputs": _outputs_of_error(exc),
                 "duration_s": round(ports.wall() - started, 2)}
        log("pipeline-step", **entry)
        run.steps.append(entry)
        emit(PipelineEvent("step-end", {**entry, "title": step.title}))
        raise
    except BaseException as exc:
        entry = {**base, "status": "failed", "detail": f"{type(exc).__name__}: {exc}",
                 "duration_s": round(ports.wall() - started, 2)}
        log("pipeline-step", **entry)
        run.steps.append(entry)
        raise
    files = _store_files(ports.ledger, settings.env, run.pipeline_id, key, outcome.files)
    entry = {**base, "status": outcome.status, "detail": outcome.detail, "outputs": outcome.outputs,
             "files": files, "duration_s": round(ports.wall() - started, 2)}
    if outcome.command:
        entry["command"] = outcome.command
    log("pipeline-step", **entry)
    run.steps.append(entry)
    emit(PipelineEvent("step-end", {**entry, "title": step.title}))
    if outcome.status in ("passed", "skipped"):
        state[key] = outcome.outputs
        return
    if outcome.status == "waiting":
        run.waiting_for = {"step": key, "title": step.title, "command": outcome.command, "detail": outcome.detail}
        raise WaitingForApproval(
            f"{key} ({step.title}) waits for an approval: {outcome.detail}",
            command=outcome.command or "",
            hint=f"record it: {outcome.command}; then: promoter promote --env {settings.env}{_phase_opt(settings)} "
            f"--release {artifact.release} --resume",
        )
    raise RefusedError(f"{key} ({step.title}) failed: {outcome.detail}")


def _outputs_of_error(exc: PromoterError) -> dict[str, Any]:
    details = exc.details or {}
    run = details.get("run") or {}
    return {"run_id": run.get("run_id"), "outcome": run.get("outcome")} if run else {}


def _store_files(ledger: Ledger, env: str, pipeline_id: str, key: str, files: Mapping[str, Any]) -> list[str]:
    """Keep each step's evidence files beside the ledger until the run's evidence pack collects them."""
    if not files:
        return []
    base = staging_dir(ledger, env, pipeline_id)
    base.mkdir(parents=True, exist_ok=True)
    names = []
    for name, content in files.items():
        target = base / f"{key.replace('/', '--')}--{name}"
        if isinstance(content, bytes):
            target.write_bytes(content)
        elif isinstance(content, str):
            target.write_text(content, encoding="utf-8")
        else:
            target.write_text(json.dumps(content, indent=2, sort_keys=True, default=str), encoding="utf-8")
        names.append(target.name)
    return names


def staging_dir(ledger: Ledger, env: str, pipeline_id: str) -> Path:
    return Path(ledger.root) / "pipelines" / env / pipeline_id


def _end(run: PipelineRun, ports: PipelinePorts, log, emit, outcome: str, reason: str,
         exc: PromoterError | None) -> PipelineRun:
    run.outcome, run.reason = outcome, reason
    log("pipeline-end", outcome=outcome, reason=reason, waiting_for=run.waiting_for)
    if ports.evidence is not None:
        try:
            run.evidence = ports.evidence(ports.ledger, run.env, run.pipeline_id)
        except (OSError, PromoterError) as error:  # the run's outcome stands; say the pack is missing
            run.evidence = {"error": f"evidence pack not written: {error}"}
    emit(PipelineEvent("end", {"outcome": outcome, "reason": reason, "pipeline_id": run.pipeline_id,
                               "waiting_for": run.waiting_for, "evidence": run.evidence}))
    if exc is not None:
        exc.details = {**(exc.details or {}), "pipeline": run.to_dict()}
        raise exc
    return run


def _dry_run(settings, ports, phases, artifact, who, previous, emit) -> PipelineRun:
    """The same planner as a real run, with a display-only executor: each step says run, skip or wait."""
    resumed = settings.resume and previous is not None
    pipeline_id = previous["pipeline_id"] if resumed else "dry-run"
    history = pipeline_records(ports.ledger, settings.env, pipeline_id) if resumed else []
    state: dict[str, dict[str, Any]] = {}
    for r in history:
        if r.get("status") in ("passed", "skipped") and r.get("step_key"):
            state[r["step_key"]] = r.get("outputs") or {}
    run = PipelineRun(pipeline_id=pipeline_id, env=settings.env, phases=[p.id for p in phases],
                      release=artifact.release, artifact_sha256=artifact.sha256, started_by=who, outcome="dry-run",
                      resumed=resumed, reason="dry run: nothing changed")
    for phase in phases:
        for step in phase.steps:
            ctx = _context(settings, ports.ledger, phase, step, artifact, state, pipeline_id,
                           str(previous.get("who")) if resumed else who, emit)
            decision, why = decide(step_key(phase, step), ctx.inputs, history)
            if decision == "skip":
                entry = {"step_key": step_key(phase, step), "would": "skip", "detail": why}
            else:
                probe = ports.operations[step.action].probe(ctx)
                entry = {"step_key": step_key(phase, step), "would": probe.would, "detail": probe.detail or why}
                if probe.command:
                    entry["command"] = probe.command
            entry.update(title=step.title, action=step.action)
            run.steps.append(entry)
            emit(PipelineEvent("step-end", {**entry, "status": f"would {entry['would']}"}))
    return run


__all__ = [
    "ArtifactRef", "Operation", "PipelineEvent", "PipelinePorts", "PipelineRun", "Probe", "PromoteSettings",
    "StepContext", "StepOutcome", "decide", "finished_run", "promote", "resumable_run", "step_inputs",
]
