"""What every release operation shares: the ports, the settings and run records, the interrupt guard,
the step layout and the helpers of alias changes. The operations live in :mod:`.deploy`, :mod:`.resume`,
:mod:`.rollback` and :mod:`.status`; :mod:`promoter.engine.release` gathers them."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from promoter.adapters.lambda_ import AliasState, FunctionVersion, InvokeResult, version_description
from promoter.engine import canary as canary_mod
from promoter.engine.canary import Observation, Verdict, Window
from promoter.engine.guards import ensure_account, sts_account
from promoter.engine.ledger import Clock, Ledger, SystemClock
from promoter.errors import (
    AwsError,
)
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
    # told of rollbacks and failed rollbacks (promoter.engine.notify.Notifier); sending never blocks or fails a run
    notifier: Any = None

    def notify(self, event: str, text: str, **data: Any) -> None:
        if self.notifier is not None:
            with contextlib.suppress(Exception):
                self.notifier.notify(event, text, **data)

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
    repo: Path | None = None  # the checkout to build and read tags from; default: the working directory's
    allow_unproven: bool = False  # deploy an artifact the plan's passport does not prove (recorded; refused where
    # the plan says so)


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
        self._deferring = 0
        self._deferred = False

    def _handle(self, _signum: int, _frame: Any) -> None:
        self.count += 1
        if self.stopping:
            return
        if self._deferring:
            self._deferred = True  # raised when the bookkeeping under way is done
            return
        self.stopping = True
        raise KeyboardInterrupt

    def stop(self) -> None:
        """From now on interrupts are only counted: the run is ending."""
        self.stopping = True

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Bookkeeping that must not be cut in half (an alias change done and its record written): an interrupt
        that arrives inside is raised as the block ends."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
        if not self._deferring and self._deferred:
            self._deferred = False
            if not self.stopping:
                self.stopping = True
                raise KeyboardInterrupt

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


def step_clock(plan: Plan, step: Step, interval: float | None = None) -> canary_mod.BakeClock:
    """When ``step``'s bake is analysed: the plan's interval compressed with the bake unless one is given."""
    c = plan.canary
    plan_bake = next((s.bake_seconds for s in c.steps if s.weight == step.weight), step.bake_seconds)
    return canary_mod.bake_clock(step.bake_seconds, plan_bake_seconds=plan_bake,
                                 plan_interval=c.analysis_interval_seconds,
                                 extension_seconds=c.max_extension_seconds, interval=interval)


def routing_for(stable: str, candidate: str, weight: int) -> tuple[str, dict[str, float]]:
    """Alias routing for ``weight`` % on the candidate: primary stable plus extra weight, or all candidate."""
    if weight >= 100:
        return candidate, {}
    if weight <= 0:
        return stable, {}
    return stable, {candidate: round(weight / 100.0, 4)}


def desired_environment(latest: dict[str, str], overrides: dict[str, str], release: str) -> dict[str, str]:
    """The environment of the new version: $LATEST's without leftover fault injection, the release tag in
    ``RELEASE_VERSION`` (the tag lives in the configuration, never in the artifact: one artifact, many tags),
    plus the overrides."""
    env = {k: v for k, v in latest.items() if not k.startswith("CHAOS_")}
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




def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _weight_of(state: AliasState, candidate: str) -> float:
    if state.version == candidate and not state.weights:
        return 100.0
    return round(state.weights.get(candidate, 0.0) * 100, 2)




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

