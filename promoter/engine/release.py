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
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import signal
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from promoter.adapters.lambda_ import AliasState, FunctionVersion, InvokeResult, version_description
from promoter.engine import canary as canary_mod
from promoter.engine.build import git_output
from promoter.engine.canary import Observation, Thresholds, Verdict, Window
from promoter.engine.gates import refuse_missing_gates
from promoter.engine.guards import ensure_account, sts_account
from promoter.engine.ledger import Clock, Ledger, SystemClock, new_run_id
from promoter.engine.smoke_requests import PRETRAFFIC_CLAIMS, SmokeResult, run_sequence, smoke_requests, to_apigw_event
from promoter.errors import (
    AwsError,
    Interrupted,
    LockLost,
    PreconditionFailed,
    PromoterError,
    RefusedError,
    ReleaseFailed,
    RollbackFailed,
    UsageError,
)
from promoter.exitcodes import ExitCode
from promoter.plan.models import Plan

Outcome = Literal["succeeded", "rolled-back", "rollback-failed", "refused", "interrupted-hold", "aborted", "dry-run"]


# -- ports ---------------------------------------------------------------------------------------------------
class AliasRouter(Protocol):
    """Reads and moves the alias. ``set`` must fail with PreconditionFailed when ``revision`` is stale."""

    def read(self) -> AliasState: ...

    def set(self, version: str, weights: dict[str, float], revision: str | None) -> AliasState: ...


class MetricSource(Protocol):
    """The canary's and the stable version's numbers over one window, plus DLQ depth and alarms."""

    def observe(self, canary: str, stable: str | None, window: Window) -> Observation: ...

    def alarms_in_alarm(self) -> tuple[str, ...]: ...


class Invoker(Protocol):
    """Invokes one published version directly with an event (the pre-traffic gate)."""

    def invoke(self, version: str, event: dict[str, Any]) -> InvokeResult: ...


class FunctionStore(Protocol):
    """The function's code, configuration and published versions."""

    def list_versions(self) -> list[FunctionVersion]: ...

    def get_configuration(self, qualifier: str | None = None) -> dict[str, Any]: ...

    def version_environment(self, version: str) -> dict[str, str]: ...

    def update_function_code(self, zip_bytes: bytes) -> dict[str, Any]: ...

    def update_environment(self, variables: dict[str, str]) -> dict[str, Any]: ...

    def wait_updated(self, *, clock: Clock | None = None, timeout: float = 300, poll: float = 1.0) -> Any: ...

    def publish_version(self, description: str, code_sha256: str) -> FunctionVersion: ...


@dataclass(frozen=True)
class ReleaseEvent:
    kind: str  # planned, step, gate, shift, tick, verdict, rollback, end
    data: dict[str, Any]


Observer = Callable[[ReleaseEvent], None]


def _silent(_event: ReleaseEvent) -> None:
    return None


@dataclass
class Ports:
    """Everything the engine talks to, for one environment."""

    router: AliasRouter
    metrics: MetricSource
    invoker: Invoker
    functions: FunctionStore
    ledger: Ledger
    clock: Clock = field(default_factory=SystemClock)
    wall: Callable[[], float] = time.time
    identity: Callable[[], str] = field(default=lambda: "unknown")
    function: str = ""
    alias: str = ""
    region: str = ""
    # the account the plan names for the environment, and how to read the caller's: the guard against acting
    # in the wrong account (a shell still logged in to SIT cannot deploy to PROD)
    expected_account: str | None = None
    caller_account: Callable[[], str] | None = None

    def guard_account(self, env: str) -> None:
        if self.expected_account and self.caller_account is not None:
            ensure_account(env, self.expected_account, self.caller_account)

    @classmethod
    def for_aws(cls, aws: Any, plan: Plan, env: str, ledger: Ledger, *, invoker: Invoker | None = None) -> Ports:
        """Real adapters over boto3 clients made by an ``AwsSessionFactory``."""
        from promoter.adapters.lambda_ import LambdaAliasRouter, LambdaClient, LambdaInvoker
        from promoter.adapters.metrics import CloudWatchMetricSource

        names = plan.names(env)
        client = LambdaClient(aws.client("lambda"), names.function, names.alias)
        metrics = CloudWatchMetricSource(
            aws.client("cloudwatch"), aws.client("sqs"), metrics=plan.metrics, function=names.function,
            alias=names.alias, dlq=names.dlq, alarm_names=sorted(names.alarms.values()),
        )
        sts = aws.client("sts")

        def identity() -> str:
            try:
                return sts.get_caller_identity()["Arn"]
            except Exception:
                return "unknown"

        return cls(router=LambdaAliasRouter(client), metrics=metrics, invoker=invoker or LambdaInvoker(client),
                   functions=client, ledger=ledger, identity=identity, function=names.function,
                   alias=names.alias, region=plan.environment(env).region,
                   expected_account=plan.environment(env).account_id, caller_account=sts_account(aws))


# -- settings and records ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeploySettings:
    """One deploy, as asked for on the command line (or by the rehearsal)."""

    plan: Plan
    env: str
    release: str | None = None
    canary: bool = False
    dry_run: bool = False
    bake_seconds: float | None = None  # overrides the plan's bake times of the steps below 100 %
    analysis_interval: float | None = None
    artifact: Path | None = None
    target: str | None = None  # build target; default: the environment's build_target
    env_vars: dict[str, str] = field(default_factory=dict)
    on_interrupt: Literal["rollback", "hold"] = "rollback"
    all_at_once_reason: str | None = None  # shift straight to 100 % where the plan says canary (recorded)
    resume: bool = False
    lock_wait: float = 0
    allow_untagged: bool = False
    out_dir: Path = Path("dist")
    update_timeout: float = 300


@dataclass(frozen=True)
class Step:
    weight: int
    bake_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"weight": self.weight, "bake_seconds": self.bake_seconds}


@dataclass(frozen=True)
class PreparedArtifact:
    path: str
    release: str
    sha256: str
    code_sha256: str
    git_sha: str | None
    built: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class DeployPlan:
    """What a deploy will do, computed from read-only calls only."""

    env: str
    function: str
    alias: str
    stable: str
    artifact: PreparedArtifact
    reuse_version: str | None
    environment: dict[str, str]
    upload_code: bool
    set_environment: bool
    steps: tuple[Step, ...]
    analysis_interval: float
    noop: bool = False

    def actions(self) -> list[str]:
        out = []
        if self.noop:
            return [f"nothing to do: alias {self.alias} already serves version {self.reuse_version} at 100%"]
        if self.reuse_version:
            out.append(f"reuse version {self.reuse_version} (same artifact sha256 and environment)")
        else:
            if self.upload_code:
                out.append(f"upload code {self.artifact.sha256[:12]} to {self.function} and wait for the update")
            if self.set_environment:
                out.append("set the function environment: " + ", ".join(sorted(self.environment)))
            a = self.artifact
            out.append(f"publish a version: {version_description(a.release, a.git_sha, a.sha256)}")
        out.append("pre-traffic gate: invoke the new version with the smoke requests")
        for step in self.steps:
            bake = ""
            if step.bake_seconds:
                bake = f", bake {step.bake_seconds:g}s with analysis every {self.analysis_interval:g}s"
            out.append(f"shift alias {self.alias} to {step.weight}% on the new version{bake}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "env": self.env, "function": self.function, "alias": self.alias, "stable": self.stable,
            "artifact": self.artifact.to_dict(), "reuse_version": self.reuse_version,
            "environment_keys": sorted(self.environment), "upload_code": self.upload_code,
            "set_environment": self.set_environment, "steps": [s.to_dict() for s in self.steps],
            "analysis_interval": self.analysis_interval, "noop": self.noop, "actions": self.actions(),
        }


@dataclass
class RunRecord:
    run_id: str
    env: str
    kind: str = "deploy"
    outcome: Outcome | None = None
    reason: str = ""
    release: str | None = None
    stable_version: str | None = None
    candidate_version: str | None = None
    alias: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    pretraffic: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    alias_changes: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class InterruptGuard:
    """Ctrl-C and SIGTERM during a run: the first one stops the run (as ``KeyboardInterrupt``); every later one,
    and any that arrives once the run has begun to end (a rollback, a hold, the end record), is counted and
    otherwise ignored, so a rollback that has started always finishes and the run always ends with a record.

    Installed only in the main thread (the only one Python delivers signals to); elsewhere it only counts.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.count = 0
        self.stopping = False

    def _handle(self, _signum: int, _frame: Any) -> None:
        self.count += 1
        if not self.stopping:
            self.stopping = True
            raise KeyboardInterrupt

    def stop(self) -> None:
        """From now on interrupts are only counted: the run is ending."""
        self.stopping = True

    @contextlib.contextmanager
    def installed(self) -> Iterator[InterruptGuard]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class _Stop(Exception):
    """Internal: the bake decided to roll back."""

    def __init__(self, reason: str, verdict: Verdict | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.verdict = verdict


class _Foreign(Exception):
    """Internal: the alias is not where the engine left it."""

    def __init__(self, expected: AliasState, found: AliasState | None, detail: str) -> None:
        super().__init__(detail)
        self.expected = expected
        self.found = found
        self.detail = detail


# -- step layout (pure) ----------------------------------------------------------------------------------------
def plan_steps(plan: Plan, env: str, *, canary: bool, bake_seconds: float | None,
               all_at_once: bool = False) -> tuple[Step, ...]:
    if not plan.uses_canary(env, canary, all_at_once=all_at_once):
        return (Step(100, 0),)
    steps = []
    for s in plan.canary.steps:
        bake = s.bake_seconds if bake_seconds is None or s.weight == 100 else bake_seconds
        steps.append(Step(s.weight, bake))
    return tuple(steps)


def routing_for(stable: str, candidate: str, weight: int) -> tuple[str, dict[str, float]]:
    """Alias routing for ``weight`` % on the candidate: primary stable plus extra weight, or all candidate."""
    if weight >= 100:
        return candidate, {}
    if weight <= 0:
        return stable, {}
    return stable, {candidate: round(weight / 100.0, 4)}


def desired_environment(latest: dict[str, str], overrides: dict[str, str], release: str) -> dict[str, str]:
    """The environment of the new version: $LATEST's without leftover fault injection, plus the overrides."""
    env = {k: v for k, v in latest.items() if not k.startswith("CHAOS_")}
    if "RELEASE_VERSION" in env:
        env["RELEASE_VERSION"] = release
    env.update(overrides)
    return env


def manual_rollback_command(function: str, alias: str, version: str, region: str) -> str:
    region_opt = f" --region {region}" if region else ""
    return (f"aws lambda update-alias --function-name {function} --name {alias} --function-version {version} "
            f"--routing-config AdditionalVersionWeights={{}}{region_opt}")


SETTLE_SECONDS = 10.0


def read_if_applied(router: AliasRouter, clock: Clock, wanted: AliasState) -> AliasState | None:
    """After a failed or ambiguous UpdateAlias: the alias as read now when it is exactly the routing that was asked
    for (the change was applied and its reply lost, or the SDK's retry of it met its own RevisionId), else None.
    A failing read is retried on ``clock`` for up to ``SETTLE_SECONDS``."""
    deadline = clock.now() + SETTLE_SECONDS
    while True:
        try:
            found = router.read()
        except AwsError:
            if clock.now() >= deadline:
                return None
            clock.sleep(1.0)
            continue
        return found if found.same_routing(wanted) else None


# -- artifact ------------------------------------------------------------------------------------------------
def prepare_artifact(settings: DeploySettings, progress: Callable[[str], None],
                     before_build: Callable[[str], None] = lambda _release: None) -> PreparedArtifact:
    """The artifact to deploy; ``before_build(release)`` runs once the release is known, before any build, so
    cheap refusals come before the expensive part."""
    from promoter.engine import build as build_mod
    from promoter.engine.build import resolve_release, source_root

    plan, env = settings.plan, settings.env
    repo = source_root()
    head_tag = git_output(repo, "describe", "--tags", "--exact-match", "HEAD")
    if settings.artifact:
        path = Path(settings.artifact)
        if not path.is_file():
            raise UsageError(f"--artifact {path}: no such file")
        data = path.read_bytes()
        release = settings.release or _release_in_zip(path) or resolve_release(None, repo)
        git_sha, built = None, False
    else:
        release = settings.release or resolve_release(None, repo)
        git_sha, built = git_output(repo, "rev-parse", "HEAD"), True
        data = None
    if plan.code.require_release_tag and not settings.allow_untagged:
        if head_tag != release:
            raise RefusedError(
                f"release {release!r} is not HEAD's tag ({head_tag or 'HEAD has no tag'}); the plan requires the "
                "release tag on HEAD",
                hint=f"tag HEAD (git tag {release}) or, for dev and rehearsals, pass --allow-untagged",
            )
        if not re.match(plan.code.tag_pattern, release):
            raise RefusedError(f"release {release!r} does not match the plan's tag pattern {plan.code.tag_pattern}")
    before_build(release)
    if data is None:
        service = plan.service
        target = settings.target or plan.environment(env).build_target
        arch = "x86_64" if service.architecture == "x86_64" else "aarch64"
        art = build_mod.build(release=release, target=target, out_dir=settings.out_dir,
                              python_version=service.python_version, platform=f"manylinux2014_{arch}",
                              progress=progress)
        return PreparedArtifact(art.path, release, art.sha256, art.code_sha256, git_sha, built)
    digest = hashlib.sha256(data).digest()
    return PreparedArtifact(str(settings.artifact), release, digest.hex(), base64.b64encode(digest).decode(),
                            git_sha, built)


def _release_in_zip(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.read("campaigns_lambda/RELEASE").decode().strip() or None
    except (KeyError, zipfile.BadZipFile, OSError):
        return None


# -- the planner (read-only) ---------------------------------------------------------------------------------
def _refuse_mid_shift(ports: Ports, env: str) -> AliasState:
    alias = ports.router.read()
    if alias.weights:
        raise RefusedError(
            f"alias {ports.alias} is mid-shift ({alias.describe()}); another release is in flight or was interrupted",
            hint=f"continue it with `promoter deploy --env {env} --resume` or roll it back with "
            f"`promoter abort --env {env}`",
        )
    return alias


def plan_deploy(settings: DeploySettings, ports: Ports, artifact: PreparedArtifact) -> DeployPlan:
    plan, env = settings.plan, settings.env
    _refuse_chaos(settings)
    alias = _refuse_mid_shift(ports, env)
    latest = ports.functions.get_configuration()
    latest_env = dict((latest.get("Environment") or {}).get("Variables") or {})
    environment = desired_environment(latest_env, settings.env_vars, artifact.release)
    reuse = None
    for version in reversed(ports.functions.list_versions()):
        if version.sha256 == artifact.sha256 and ports.functions.version_environment(version.version) == environment:
            reuse = version.version
            break
    interval = settings.analysis_interval or plan.canary.analysis_interval_seconds
    steps = plan_steps(plan, env, canary=settings.canary, bake_seconds=settings.bake_seconds,
                       all_at_once=settings.all_at_once_reason is not None)
    return DeployPlan(
        env=env, function=ports.function, alias=ports.alias, stable=alias.version, artifact=artifact,
        reuse_version=reuse, environment=environment,
        upload_code=reuse is None and latest.get("CodeSha256") != artifact.code_sha256,
        set_environment=reuse is None and latest_env != environment,
        steps=steps, analysis_interval=float(interval), noop=reuse is not None and reuse == alias.version,
    )


def check_strategy(settings: DeploySettings) -> None:
    """Flags may make the plan's strategy stricter; relaxing it takes a reason, and never where it is required."""
    reason = settings.all_at_once_reason
    if reason is None:
        return
    if not reason.strip():
        raise UsageError("--all-at-once needs a reason, which is recorded with the run")
    if settings.canary:
        raise UsageError("--canary and --all-at-once contradict each other; choose one")
    if settings.plan.environment(settings.env).strategy.canary_required:
        raise RefusedError(f"{settings.env} requires the canary (strategy.canary_required: true); an all-at-once "
                           "deploy is refused", hint=f"deploy with the plan's canary steps: promoter deploy --env "
                           f"{settings.env}")


def _strategy_record(settings: DeploySettings, steps: tuple[Step, ...]) -> dict[str, Any]:
    return {"mode": "canary" if len(steps) > 1 else "all-at-once",
            "plan_mode": settings.plan.environment(settings.env).strategy.mode,
            "override": settings.all_at_once_reason}


def _refuse_chaos(settings: DeploySettings) -> None:
    chaos = sorted(k for k in settings.env_vars if k.startswith("CHAOS_"))
    if chaos and not settings.plan.environment(settings.env).allow_chaos:
        raise RefusedError(
            f"fault injection ({', '.join(chaos)}) is refused in {settings.env}: the plan sets allow_chaos: false",
            hint="rehearse fault injection in dev or sit, or in the sandbox",
        )


# -- deploy --------------------------------------------------------------------------------------------------
def deploy(settings: DeploySettings, ports: Ports, observer: Observer | None = None) -> RunRecord:
    """Run one deploy end to end; raise ReleaseFailed (rolled back), RollbackFailed, Interrupted or a refusal."""
    emit = observer or _silent
    if settings.resume:
        return resume(settings, ports, observer)
    if settings.dry_run:
        ports.guard_account(settings.env)
        check_strategy(settings)
        _refuse_chaos(settings)
        artifact = prepare_artifact(settings, lambda m: emit(ReleaseEvent("progress", {"message": m})))
        refuse_missing_gates(settings.plan, settings.env, artifact.release,
                             ports.ledger.records(settings.env, kind="approval"))
        deploy_plan = plan_deploy(settings, ports, artifact)
        emit(ReleaseEvent("planned", deploy_plan.to_dict()))
        return RunRecord(run_id="dry-run", env=settings.env, outcome="dry-run", release=artifact.release,
                         stable_version=deploy_plan.stable, candidate_version=deploy_plan.reuse_version,
                         plan=deploy_plan.to_dict(), reason="dry run: nothing changed")
    run_id = new_run_id()
    guard = InterruptGuard()
    env = settings.env
    with guard.installed(), _Refusals(ports.ledger, env, "deploy", run_id, settings.release) as refusals:
        # the cheap refusals first: account, strategy, fault injection, lock, alias mid-shift, sign-offs
        ports.guard_account(env)
        check_strategy(settings)
        _refuse_chaos(settings)
        with ports.ledger.lock(env, purpose="deploy", run_id=run_id, wait_seconds=settings.lock_wait,
                               clock=ports.clock) as lock:
            _refuse_mid_shift(ports, env)

            def gates(release: str) -> None:
                refusals.release = release
                refuse_missing_gates(settings.plan, env, release, ports.ledger.records(env, kind="approval"))

            artifact = prepare_artifact(settings, lambda m: emit(ReleaseEvent("progress", {"message": m})), gates)
            deploy_plan = plan_deploy(settings, ports, artifact)
            emit(ReleaseEvent("planned", deploy_plan.to_dict()))
            refusals.done()  # from here on the run records its own end
            run = _Run(settings, ports, emit, run_id, guard, lock)
            return run.start(deploy_plan)


class _Refusals:
    """Records a command refused before it changed anything (a lock held, the wrong account, an alias mid-shift,
    a missing sign-off, an interrupt during the build), so every refusal is in the ledger. An interrupt before
    anything changed becomes :class:`Interrupted` with exit 1."""

    def __init__(self, ledger: Ledger, env: str, command: str, run_id: str, release: str | None = None) -> None:
        self.ledger, self.env, self.command, self.run_id, self.release = ledger, env, command, run_id, release
        self.armed = True

    def done(self) -> None:
        self.armed = False

    def __enter__(self) -> _Refusals:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: Any) -> bool:
        if not self.armed or exc is None:
            return False
        if isinstance(exc, KeyboardInterrupt):
            reason = f"interrupted before anything changed; the {self.command} was stopped and nothing was changed"
            self._record("aborted", reason, "Interrupted", None)
            raise Interrupted(reason, exit_code=int(ExitCode.REFUSED)) from None
        if isinstance(exc, PromoterError) and not isinstance(exc, UsageError):
            self._record("refused", str(exc), type(exc).__name__, exc.hint)
        return False

    def _record(self, outcome: str, reason: str, error: str, hint: str | None) -> None:
        from promoter.engine.ledger import whoami

        with contextlib.suppress(OSError, PromoterError):
            self.ledger.append(self.env, "refusal", run_id=self.run_id, command=self.command, outcome=outcome,
                               reason=reason, error=error, hint=hint, who=whoami(), release=self.release)


class _Run:
    """One run's state machine: publish, gate, shift and bake, end. Every transition is in the ledger."""

    def __init__(self, settings: DeploySettings, ports: Ports, emit: Observer, run_id: str,
                 guard: InterruptGuard | None = None, lock: dict[str, Any] | None = None) -> None:
        self.s = settings
        self.p = ports
        self.emit = emit
        self.env = settings.env
        self.thresholds = Thresholds.from_plan(settings.plan)
        self.record = RunRecord(run_id=run_id, env=settings.env)
        self.stable = ""
        self.candidate = ""
        self.last_set: AliasState | None = None  # where the engine left the alias
        # the alias change asked for and not yet confirmed: (step, state before, state asked for)
        self.pending: tuple[int | str, AliasState, AliasState] | None = None
        self.preexisting_alarms: tuple[str, ...] = ()
        self.interval = 60.0
        self.guard = guard or InterruptGuard()
        self.lock_token: str | None = (lock or {}).get("token")

    # -- ledger helpers ----------------------------------------------------------------------------------
    def log(self, kind: str, **data: Any) -> None:
        self.p.ledger.append(self.env, kind, run_id=self.record.run_id, **data)

    def end(self, outcome: Outcome, reason: str, **data: Any) -> RunRecord:
        self.guard.stop()  # an interrupt now must not cost the run its end record
        self.record.outcome = outcome
        self.record.reason = reason
        try:
            self.record.alias = self.p.router.read().to_dict()
        except (PromoterError, KeyboardInterrupt):
            self.record.alias = self.last_set.to_dict() if self.last_set else None
        if self.guard.count:
            data["interrupts"] = self.guard.count
        self.log("run-end", outcome=outcome, reason=reason, alias=self.record.alias, **data)
        self.emit(ReleaseEvent("end", {"outcome": outcome, "reason": reason, "alias": self.record.alias}))
        return self.record

    def _alarms(self) -> tuple[str, ...]:
        """Alarms already in ALARM before traffic moves: not the canary's doing."""
        try:
            return tuple(self.p.metrics.alarms_in_alarm())
        except AwsError:
            return ()

    # -- start ---------------------------------------------------------------------------------------------
    def start(self, dp: DeployPlan) -> RunRecord:
        self.stable = dp.stable
        self.interval = dp.analysis_interval
        self.record.release = dp.artifact.release
        self.record.stable_version = dp.stable
        self.record.plan = dp.to_dict()
        self.log("run-start", kind_of_run="deploy", who=self.p.identity(), release=dp.artifact.release,
                 stable_version=dp.stable,
                 artifact=dp.artifact.to_dict(), plan_id=self.s.plan.id, function=dp.function, alias=dp.alias,
                 steps=[s.to_dict() for s in dp.steps], analysis_interval=dp.analysis_interval,
                 env_vars=self.s.env_vars, allow_untagged=self.s.allow_untagged, on_interrupt=self.s.on_interrupt,
                 reuse_version=dp.reuse_version, strategy=_strategy_record(self.s, dp.steps))
        if dp.noop:
            self.candidate = dp.reuse_version or dp.stable
            self.record.candidate_version = self.candidate
            return self.end("succeeded", dp.actions()[0])
        try:
            self.candidate = self.publish(dp)
            self.record.candidate_version = self.candidate
            if self.candidate == self.stable:
                return self.end("succeeded", f"version {self.candidate} is already live at 100%")
            self.gate()
            self.preexisting_alarms = self._alarms()
            self.last_set = self.p.router.read()
        except KeyboardInterrupt:
            self.end("aborted", "interrupted before any traffic moved; the alias was not changed")
            raise Interrupted("interrupted before any traffic moved; the alias was not changed",
                              hint=f"deploy again when ready: promoter deploy --env {self.env}",
                              exit_code=int(ExitCode.REFUSED)) from None
        except _Stop as stop:
            self.end("refused", stop.reason)
            raise PromoterError(f"pre-traffic gate failed, no traffic moved: {stop.reason}",
                                hint="see `promoter history --env " + self.env + "` for each request") from None
        except PromoterError as exc:
            self.end("refused", str(exc))
            raise
        except Exception as exc:  # record the run's end before the error reaches the operator
            self.end("refused", f"stopped by an unexpected error before any traffic moved: {_describe(exc)}")
            raise
        return self.shift_all(dp.steps)

    # -- publish -------------------------------------------------------------------------------------------
    def publish(self, dp: DeployPlan) -> str:
        if dp.reuse_version:
            self.log("step", name="publish", status="reused", version=dp.reuse_version)
            self.emit(ReleaseEvent("step", {"name": "publish", "status": "reused", "version": dp.reuse_version}))
            return dp.reuse_version
        fn = self.p.functions
        if dp.upload_code:
            self.emit(ReleaseEvent("step", {"name": "upload", "status": "started"}))
            fn.update_function_code(Path(dp.artifact.path).read_bytes())
            fn.wait_updated(clock=self.p.clock, timeout=self.s.update_timeout)
        if dp.set_environment:
            self.emit(ReleaseEvent("step", {"name": "environment", "status": "started"}))
            fn.update_environment(dp.environment)
            fn.wait_updated(clock=self.p.clock, timeout=self.s.update_timeout)
        description = version_description(dp.artifact.release, dp.artifact.git_sha, dp.artifact.sha256)
        version = fn.publish_version(description, dp.artifact.code_sha256)
        if version.code_sha256 and version.code_sha256 != dp.artifact.code_sha256:
            raise PreconditionFailed(
                f"published version {version.version} has code {version.code_sha256}, not the artifact's "
                f"{dp.artifact.code_sha256}: the function's code changed meanwhile"
            )
        self.log("step", name="publish", status="published", version=version.version, description=description,
                 code_sha256=version.code_sha256, environment_keys=sorted(dp.environment))
        self.emit(ReleaseEvent("step", {"name": "publish", "status": "published", "version": version.version}))
        return version.version

    # -- pre-traffic gate ----------------------------------------------------------------------------------
    def gate(self) -> None:
        version = self.candidate
        self.emit(ReleaseEvent("step", {"name": "pretraffic", "status": "started", "version": version}))

        def send(request, _path, variables):
            result = self.p.invoker.invoke(version, to_apigw_event(request, PRETRAFFIC_CLAIMS, variables))
            if result.function_error:
                raise RuntimeError(f"function error {result.function_error}: {str(result.body)[:200]}")
            return result.status_code, result.body

        results: list[SmokeResult] = run_sequence(smoke_requests(self.s.plan), send)
        summary = [r.to_dict() for r in results]
        self.record.pretraffic = summary
        failed = [r for r in results if not r.ok]
        incomplete = len(results) < len(smoke_requests(self.s.plan))
        self.log("pretraffic", version=version, ok=not failed and not incomplete, results=summary)
        self.emit(ReleaseEvent("gate", {"version": version, "results": summary, "ok": not failed}))
        if failed or incomplete:
            first = failed[0] if failed else None
            why = f"{first.name}: {'; '.join(first.problems)}" if first else "sequence incomplete"
            raise _Stop(f"version {version} failed the pre-traffic gate at {why}")

    # -- shifting ----------------------------------------------------------------------------------------------
    def shift_all(self, steps: tuple[Step, ...]) -> RunRecord:
        try:
            for step in steps:
                self.shift_to(step.weight)
                if step.bake_seconds > 0:
                    self.bake(step)
        except LockLost:
            raise
        except _Stop as stop:
            return self.rollback_and_end("rolled-back", stop.reason, stop.verdict)
        except _Foreign as foreign:
            return self.foreign_change(foreign)
        except PreconditionFailed as exc:
            return self.foreign_change(_Foreign(self.last_set or AliasState(self.stable), None, str(exc)))
        except PromoterError as exc:  # an AWS error mid-run: get back to stable
            return self.rollback_and_end("rolled-back", f"stopped by an error: {exc}")
        except KeyboardInterrupt:
            return self.interrupted()
        except Exception as exc:  # anything unforeseen mid-shift: the canary must not keep its traffic
            return self.rollback_and_end("rolled-back", f"stopped by an unexpected error: {_describe(exc)}")
        return self.end("succeeded", f"version {self.candidate} serves 100% of {self.p.alias}")

    def verify_ours(self) -> AliasState:
        current = self.p.router.read()
        if self.last_set is not None and not current.same_routing(self.last_set):
            raise _Foreign(self.last_set, current, f"alias {self.p.alias} was changed by someone else: "
                                                   f"expected {self.last_set.describe()}, found {current.describe()}")
        return current

    def shift_to(self, weight: int) -> AliasState:
        current = self.verify_ours()
        version, weights = routing_for(self.stable, self.candidate, weight)
        return self._change(current, version, weights, step=weight)

    def _check_lock(self, current: AliasState) -> None:
        """Before any alias change: stop, without touching the alias, when the lock is no longer this run's."""
        if self.lock_token is None or self.p.ledger.holds(self.env, self.lock_token):
            return
        holder = self.p.ledger.lock_holder(self.env)
        broken = self.p.ledger.records(self.env, kind="lock-broken")
        by = broken[-1].get("by") if broken else "someone"
        self.log("lock-lost", alias=current.to_dict(), holder=holder, pid=os.getpid(),
                 reason=f"the lock was broken by {by} while this run held it")
        raise LockLost(
            f"the lock of {self.env} was broken by {by} while run {self.record.run_id} held it; the run stopped "
            f"without touching the alias, which is at {current.describe()}",
            hint=f"the run is unfinished: whoever holds the lock now continues it with promoter deploy --env "
            f"{self.env} --resume or rolls it back with promoter abort --env {self.env}; see promoter status --env "
            f"{self.env}",
        )

    def _change(self, current: AliasState, version: str, weights: dict[str, float], *, step: int | str) -> AliasState:
        self._check_lock(current)
        wanted = AliasState(version, dict(weights))
        if self.pending is None or self.pending[0] != step or not self.pending[2].same_routing(wanted):
            # a retried change (the same step, asked again after an interrupt) keeps its first intent
            self.log("alias-intent", step=step, before=current.to_dict(), after={"version": version,
                                                                                 "weights": weights})
            self.pending = (step, current, wanted)
        try:
            after = self.p.router.set(version, weights, current.revision)
        except AwsError as exc:
            found = self._read_after_failure(exc)
            if found is None:
                self.log("alias-failed", step=step, error=str(exc))  # the intent's outcome: not applied
                self.pending = None
                raise
            return self._changed(found, settled=f"the reply was lost ({exc}); the alias reads the state asked for")
        return self._changed(after)

    def _changed(self, after: AliasState, **note: Any) -> AliasState:
        """Record the pending change as done, with the state the alias is in now."""
        step, before, _wanted = self.pending or ("?", self.last_set or after, after)
        self.pending = None
        self.last_set = after
        change = {"step": step, "before": before.to_dict(), "after": after.to_dict(), **note}
        self.record.alias_changes.append(change)
        self.log("alias-change", **change)
        weight = _weight_of(after, self.candidate)
        self.emit(ReleaseEvent("shift", {"step": step, "alias": after.to_dict(), "weight": weight}))
        return after

    def _read_after_failure(self, exc: AwsError) -> AliasState | None:
        if self.pending is None:
            return None
        return read_if_applied(self.p.router, self.p.clock, self.pending[2])

    def _adopt_pending(self, current: AliasState) -> bool:
        """True (and the change recorded) when ``current`` is the change this run asked for and never saw done."""
        if self.pending is not None and current.same_routing(self.pending[2]):
            self._changed(current, settled="the change was applied but its reply never arrived")
            return True
        return False

    def bake(self, step: Step) -> None:
        clock = self.p.clock
        started, started_wall = clock.now(), self.p.wall()
        bake_end = started + step.bake_seconds
        next_at = started + min(self.interval, step.bake_seconds)
        plan_canary = self.s.plan.canary
        self.log("step", name="bake", status="started", weight=step.weight, bake_seconds=step.bake_seconds)
        while True:
            self._wait_until(next_at, step, bake_end)
            self.verify_ours()
            window = canary_mod.query_window(started_wall, self.p.wall())
            stable = self.stable if step.weight < 100 else None
            observation = self.p.metrics.observe(self.candidate, stable, window)
            verdict = canary_mod.judge(observation, self.thresholds, preexisting_alarms=self.preexisting_alarms)
            elapsed = clock.now() - started
            action, why = canary_mod.next_action(
                verdict, elapsed=elapsed, bake_seconds=step.bake_seconds,
                max_extension_seconds=plan_canary.max_extension_seconds, on_inconclusive=plan_canary.on_inconclusive,
            )
            entry = {"step": step.weight, "elapsed": round(elapsed, 2), "action": action, "why": why,
                     "window": window.to_dict(), **verdict.to_dict()}
            self.record.verdicts.append(entry)
            self.log("verdict", **entry)
            self.emit(ReleaseEvent("verdict", entry))
            if action == "rollback":
                raise _Stop(f"canary at {step.weight}%: {why}", verdict)
            if action == "advance":
                return
            now = clock.now()
            next_at = now + self.interval if now >= bake_end else min(now + self.interval, bake_end)

    def _wait_until(self, deadline: float, step: Step, bake_end: float) -> None:
        clock = self.p.clock
        while True:
            left = deadline - clock.now()
            if left <= 0:
                return
            self.emit(ReleaseEvent("tick", {"step": step.weight, "bake_left": max(0.0, bake_end - clock.now())}))
            clock.sleep(min(1.0, left))

    # -- endings -------------------------------------------------------------------------------------------
    def rollback_and_end(self, outcome: Outcome, reason: str, verdict: Verdict | None = None) -> RunRecord:
        self.guard.stop()
        self.emit(ReleaseEvent("rollback", {"reason": reason, "to": self.stable}))
        try:
            self._rollback_once_more_on_interrupt()
        except Exception as exc:
            return self._rollback_failed(reason, exc)
        self.end(outcome, reason, verdict=verdict.to_dict() if verdict else None)
        raise ReleaseFailed(f"rolled back to version {self.stable}: {reason}",
                            hint=f"details: promoter history --env {self.env}")

    def _rollback_once_more_on_interrupt(self) -> None:
        """Roll back to stable; an interrupt that still reaches the rollback only makes it start over."""
        self.guard.stop()
        while True:
            try:
                self._rollback()
                return
            except KeyboardInterrupt:
                continue

    def _rollback(self) -> None:
        current = self.p.router.read()
        self._adopt_pending(current)
        if current.version == self.stable and not current.weights:
            self.last_set = current
            return
        if self.last_set is not None and not current.same_routing(self.last_set):
            raise _Foreign(self.last_set, current, f"alias changed by someone else to {current.describe()}")
        self._change(current, self.stable, {}, step="rollback")
        check = self.p.router.read()
        if check.version != self.stable or check.weights:
            raise RollbackFailed(f"after the rollback the alias shows {check.describe()}")

    def _rollback_failed(self, reason: str, exc: BaseException) -> RunRecord:
        if isinstance(exc, LockLost):
            raise exc
        command = manual_rollback_command(self.p.function, self.p.alias, self.stable, self.p.region)
        detail = exc.detail if isinstance(exc, _Foreign) else str(exc)
        self.end("rollback-failed", f"{reason}; rollback failed: {detail}", manual_command=command)
        raise RollbackFailed(f"release failed ({reason}) and the rollback failed: {detail}",
                             hint=f"roll back with promoter abort --env {self.env} (recorded); if promoter cannot "
                             f"reach the alias, by hand: {command}")

    def foreign_change(self, foreign: _Foreign) -> RunRecord:
        self.guard.stop()
        found = foreign.found
        try:
            found = self.p.router.read()
        except PromoterError:
            pass
        mover = who_moved(self.p.ledger, self.env, self.record.run_id, found) if found is not None else None
        if mover:
            foreign = _Foreign(foreign.expected, foreign.found, f"{foreign.detail}, by {mover}")
        if found is not None and self.last_set is not None and found.same_routing(self.last_set):
            # only the revision moved (e.g. a description edit): the routing is still ours, roll it back
            self.last_set = found
            return self.rollback_and_end("rolled-back", f"stopped: {foreign.detail}")
        if found is not None and found.version == self.stable and not found.weights:
            self.end("rolled-back", f"stopped: {foreign.detail}; the alias is on stable version {self.stable}")
            raise ReleaseFailed(f"stopped: {foreign.detail}; the alias is on stable version {self.stable}")
        command = manual_rollback_command(self.p.function, self.p.alias, self.stable, self.p.region)
        if mover:
            self.end("rollback-failed", f"stopped: {foreign.detail}; promoter left it there", moved_by=mover)
            raise RollbackFailed(
                f"stopped: {foreign.detail}; promoter left it there and did not touch the alias after that",
                hint=f"that change is on record ({mover}); see promoter status --env {self.env} and "
                f"promoter history --env {self.env}, and agree with whoever made it before moving the alias again",
            )
        self.end("rollback-failed", f"stopped: {foreign.detail}; promoter left the alias alone",
                 manual_command=command)
        raise RollbackFailed(
            f"stopped: {foreign.detail}; promoter did not touch the alias after that",
            hint=f"find out who changed it; to return to stable version {self.stable}: promoter rollback --env "
            f"{self.env} --to {self.stable} (recorded); by hand, as a last resort: {command}",
        )

    def interrupted(self) -> RunRecord:
        self.guard.stop()
        if self.s.on_interrupt == "hold":
            try:
                current = self.p.router.read()
                self._adopt_pending(current)
                where = current.describe()
            except PromoterError as exc:
                where = (f"{self.last_set.describe()} as last set" if self.last_set else "an unknown state") + \
                    f" (reading it failed: {exc})"
            self.end("interrupted-hold", f"interrupted; alias held at {where}")
            raise Interrupted(
                f"interrupted; the alias stays at {where}",
                hint=f"continue: promoter deploy --env {self.env} --resume; undo: promoter abort --env {self.env}",
            )
        self.emit(ReleaseEvent("rollback", {"reason": "interrupted", "to": self.stable}))
        try:
            self._rollback_once_more_on_interrupt()
        except Exception as exc:
            return self._rollback_failed("interrupted", exc)
        self.end("rolled-back", f"interrupted; rolled back to version {self.stable}")
        raise Interrupted(f"interrupted; rolled back to stable version {self.stable}",
                          exit_code=int(ReleaseFailed.exit_code))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _weight_of(state: AliasState, candidate: str) -> float:
    if state.version == candidate and not state.weights:
        return 100.0
    return round(state.weights.get(candidate, 0.0) * 100, 2)


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


# -- rollback --to ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RollbackSettings:
    plan: Plan
    env: str
    to: str  # release tag, "previous", or a version number
    lock_wait: float = 0
    dry_run: bool = False
    allow_failed: bool = False  # a version the ledger saw fail its canary is refused unless this is set


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
            record.stable_version, record.candidate_version = current.version, target
            record.release = next((v.release for v in versions if v.version == target), None)
            if settings.dry_run:
                record.outcome = "dry-run"
                record.reason = f"would move {ports.alias} from {current.describe()} to version {target}"
                record.alias = current.to_dict()
                return record
            refusals.done()
            ports.ledger.append(env, "run-start", run_id=run_id, kind_of_run="rollback", who=ports.identity(),
                                to=settings.to, target_version=target, release=record.release,
                                plan_id=settings.plan.id, alias=current.to_dict())
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


def who_moved(ledger: Ledger, env: str, own_run_id: str, found: AliasState) -> str | None:
    """The run of someone else that the ledger shows moving the alias to ``found``, described, or ``None``."""
    for record in reversed(ledger.records(env)):
        if record.get("kind") not in {"alias-change", "alias-intent"} or record.get("run_id") in {None, own_run_id}:
            continue
        after = record.get("after") or {}
        if AliasState(str(after.get("version")), dict(after.get("weights") or {})).same_routing(found):
            run = next((r for r in ledger.runs(env) if r["run_id"] == record["run_id"]), {})
            return (f"run {record['run_id']} ({run.get('kind_of_run') or 'a run'} by {run.get('who') or 'unknown'}, "
                    f"{record.get('ts')})")
    return None


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
    for run in runs:
        run["records"] = [r for r in ledger.records(env, run_id=run["run_id"])]
    return runs


# -- interrupts ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C for the duration, so a CI cancellation rolls back like an operator would."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


__all__ = [
    "AliasRouter", "DeployPlan", "DeploySettings", "FunctionStore", "Invoker", "MetricSource", "Observer", "Ports",
    "ReleaseEvent", "RollbackSettings", "RunRecord", "Step", "abort", "deploy", "history", "plan_deploy",
    "plan_steps", "resume", "rollback_to", "routing_for", "sigterm_as_interrupt", "status",
]
