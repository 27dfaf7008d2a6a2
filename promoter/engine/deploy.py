"""Deploy a new Lambda version behind the alias with canary analysis and automatic rollback.

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

The ports and the shared records live in :mod:`promoter.engine.runs`; the engine reports progress through an
``Observer`` callable and never prints.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from promoter.adapters.lambda_ import AliasState, version_description
from promoter.engine import canary as canary_mod
from promoter.engine.canary import Thresholds, Verdict
from promoter.engine.gates import refuse_missing_gates
from promoter.engine.ledger import Ledger, new_run_id
from promoter.engine.runs import (
    DeployPlan,
    DeploySettings,
    InterruptGuard,
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
    step_clock,
)
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


# -- artifact ------------------------------------------------------------------------------------------------
def prepare_artifact(settings: DeploySettings, progress: Callable[[str], None],
                     before_build: Callable[[str], None] = lambda _release: None) -> PreparedArtifact:
    """The artifact to deploy; ``before_build(release)`` runs once the release is known, before any build, so
    cheap refusals come before the expensive part."""
    from promoter.adapters.git import GitRepo, find_repository
    from promoter.engine.build import build, resolve_release

    plan, env = settings.plan, settings.env
    repo = find_repository(settings.repo)
    git = GitRepo(repo)
    head_tags = git.tags_at_head()
    if settings.artifact:
        path = Path(settings.artifact)
        if not path.is_file():
            raise UsageError(f"--artifact {path}: no such file")
        data = path.read_bytes()
        release = settings.release or _release_in_zip(path) or resolve_release(None, repo, plan.code.tag_pattern)
        git_sha, built = None, False
    else:
        release = settings.release or resolve_release(None, repo, plan.code.tag_pattern)
        git_sha, built = git.head_sha(), True
        data = None
    if plan.code.require_release_tag and not settings.allow_untagged:
        refuse_untagged(release, head_tags, plan.code.tag_pattern, env, git.head_sha(short=True))
    before_build(release)
    if data is None:
        service = plan.service
        target = settings.target or plan.environment(env).build_target
        art = build(repo=repo, release=release, target=target, out_dir=settings.out_dir,
                    python_version=service.python_version, platform=service.wheel_platform, progress=progress)
        return PreparedArtifact(art.path, release, art.sha256, art.code_sha256, git_sha, built)
    digest = hashlib.sha256(data).digest()
    return PreparedArtifact(str(settings.artifact), release, digest.hex(), base64.b64encode(digest).decode(),
                            git_sha, built)


def refuse_untagged(release: str, head_tags: list[str], pattern: str, env: str, head: str | None) -> None:
    """The plan promotes tagged commits: ``release`` must match the plan's pattern and be one of HEAD's tags
    (any of them: the runbook tags one commit ``v1.0.0-sit`` and later ``v1.0.0-prod``)."""
    from promoter.engine.preflight.decisions import example_tag

    example = example_tag(pattern, env)
    if not re.match(pattern, release):
        raise RefusedError(
            f"release {release!r} does not match the plan's tag pattern {pattern}",
            hint=(f"tag HEAD with a release tag such as {example} (git tag {example}) and pass --release {example}"
                  if example else "tag HEAD with a tag that matches the plan's pattern")
            + ", or, for dev and rehearsals, pass --allow-untagged",
        )
    if release not in head_tags:
        shown = ", ".join(head_tags) if head_tags else "HEAD has no tag"
        raise RefusedError(
            f"release {release!r} is not a tag on HEAD{f' ({head})' if head else ''} (tags on HEAD: {shown}); the "
            "plan requires the release tag on HEAD",
            hint=f"tag HEAD (git tag {release}), or, for dev and rehearsals, pass --allow-untagged",
        )


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
    steps = plan_steps(plan, env, canary=settings.canary, bake_seconds=settings.bake_seconds,
                       all_at_once=settings.all_at_once_reason is not None)
    baked = [s for s in steps if s.bake_seconds > 0]
    interval = step_clock(plan, baked[0], settings.analysis_interval).interval if baked else \
        settings.analysis_interval or plan.canary.analysis_interval_seconds
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
        from promoter.engine.resume import resume

        return resume(settings, ports, observer)
    if settings.dry_run:
        ports.guard_account(settings.env)
        check_strategy(settings)
        _refuse_chaos(settings)
        artifact = prepare_artifact(settings, lambda m: emit(ReleaseEvent("progress", {"message": m})))
        refuse_missing_gates(settings.plan, settings.env, artifact.release,
                             ports.ledger.records(settings.env, kind="approval"), artifact.sha256)
        refuse_unsafe(settings, ports, artifact)
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
            # the sign-offs again, now bound to the very bytes built; then the passport and the data safety
            refuse_missing_gates(settings.plan, env, artifact.release, ports.ledger.records(env, kind="approval"),
                                 artifact.sha256)
            refuse_unsafe(settings, ports, artifact)
            deploy_plan = plan_deploy(settings, ports, artifact)
            emit(ReleaseEvent("planned", deploy_plan.to_dict()))
            refusals.done()  # from here on the run records its own end
            run = _Run(settings, ports, emit, run_id, guard, lock)
            with run.record_on_error():
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


def refuse_unsafe(settings: DeploySettings, ports: Ports, artifact: PreparedArtifact) -> None:
    """Where the plan says so (PROD): only an artifact the passport's environment proved, and only with a table
    backup, PITR and a function snapshot on record for it."""
    from promoter.engine.backup import refuse_without_backup
    from promoter.engine.passport import admit

    admit(settings.plan, settings.env, artifact.sha256, artifact.release, ports.ledger,
          allow_unproven=settings.allow_unproven)
    refuse_without_backup(settings.plan, settings.env, artifact.sha256, ports.ledger.records(settings.env,
                                                                                              kind="backup"))


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
    @contextlib.contextmanager
    def record_on_error(self) -> Iterator[None]:
        """An error leaving the run carries the run's record (verdicts and the numbers they used, the alias)."""
        try:
            yield
        except PromoterError as exc:
            exc.details = {**(exc.details or {}), "run": self.record.to_dict()}
            raise

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

    def _alarms_before_traffic(self) -> tuple[str, ...]:
        """The plan's alarms in ALARM before traffic moves: reported, and a fix forward unless the plan says not."""
        firing = self._alarms()
        if firing:
            fix_forward = self.s.plan.canary.fix_forward_alarms
            self.log("alarms-before", in_alarm=list(firing), blocking=not fix_forward)
            effect = ("they do not block this release (a fix forward); an alarm entering ALARM during a bake fails "
                      "the step") if fix_forward else "the plan blocks deploys while they fire"
            self.emit(ReleaseEvent("progress", {"message": f"already in ALARM before the deploy: "
                                                           f"{', '.join(firing)}; {effect}"}))
            if not fix_forward:
                raise RefusedError(f"alarms already in ALARM before the deploy: {', '.join(firing)}; no traffic moved",
                                   hint="the plan sets canary.fix_forward_alarms: false; resolve the alarms first")
        return firing

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
            self.preexisting_alarms = self._alarms_before_traffic()
            self.last_set = self.p.router.read()
        except KeyboardInterrupt:
            self.end("aborted", "interrupted before any traffic moved; the alias was not changed")
            raise Interrupted("interrupted before any traffic moved; the alias was not changed",
                              hint=f"deploy again when ready: promoter deploy --env {self.env}",
                              exit_code=int(ExitCode.REFUSED)) from None
        except _Stop as stop:
            changed = gate_changes(dp, self.candidate)
            self.end("refused", stop.reason, changed=changed)
            raise PromoterError(
                f"pre-traffic gate failed: {stop.reason}; no traffic moved, the alias stays on version {self.stable}; "
                f"what did change: {'; '.join(changed)}",
                hint=f"each request: promoter history --env {self.env}; the new version serves no traffic and a "
                "fixed release publishes its own") from None
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
        change = {"step": step, "before": before.to_dict(), "after": after.to_dict(), **note}
        with self.guard.deferred():  # an interrupt between forgetting the intent and recording it would lose it
            self.pending = None
            self.last_set = after
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
        """Judge the canary every interval of the bake's own clock, from the first window there is to read.

        A fail rolls back at once; a pass advances once the bake is over and the metrics read reach its end;
        not enough evidence either way extends the bake up to the plan's limit, then ``on_inconclusive``.
        """
        clock = self.p.clock
        started, started_wall = clock.now(), self.p.wall()
        timing = step_clock(self.s.plan, step, self.s.analysis_interval)
        plan_canary = self.s.plan.canary
        weight = step.weight / 100.0 if step.weight < 100 else None
        self.log("step", name="bake", status="started", weight=step.weight, bake_seconds=step.bake_seconds,
                 clock=timing.to_dict())
        next_at = started + timing.first_analysis()
        while True:
            self._wait_until(next_at, step, started + step.bake_seconds, started=started, timing=timing)
            self.verify_ours()
            window = canary_mod.canary_window(started_wall, self.p.wall())
            stable = self.stable if step.weight < 100 else None
            observation = self.p.metrics.observe(self.candidate, stable, window)
            judged_with = {"preexisting_alarms": list(self.preexisting_alarms), "canary_weight": weight}
            verdict = canary_mod.judge(observation, self.thresholds, preexisting_alarms=self.preexisting_alarms,
                                       canary_weight=weight)
            self.preexisting_alarms = canary_mod.still_preexisting(self.preexisting_alarms,
                                                                   observation.alarms_in_alarm)
            elapsed = clock.now() - started
            data_seen = canary_mod.data_covers(observation, step_started=started_wall, bake_seconds=step.bake_seconds)
            action, why = canary_mod.next_action(
                verdict, elapsed=elapsed, bake_seconds=step.bake_seconds,
                max_extension_seconds=timing.extension_seconds, on_inconclusive=plan_canary.on_inconclusive,
                data_seen=data_seen,
            )
            following = timing.next_analysis(elapsed) if action == "wait" else None
            # what judged this verdict beyond the observation and thresholds, so `promoter replay` can judge it again
            judged_with.update(bake_seconds=step.bake_seconds, extension_seconds=timing.extension_seconds,
                               on_inconclusive=plan_canary.on_inconclusive, data_seen=data_seen)
            entry = {"step": step.weight, "elapsed": round(elapsed, 2), "action": action, "why": why,
                     "window": window.to_dict(), "deadline": timing.deadline,
                     "next_analysis": None if following is None else round(following, 2),
                     "judged_with": judged_with, **verdict.to_dict()}
            self.record.verdicts.append(entry)
            self.log("verdict", **entry)
            self.emit(ReleaseEvent("verdict", entry))
            if action == "rollback":
                raise _Stop(f"canary at {step.weight}%: {why}", verdict)
            if action == "advance":
                return
            next_at = started + (following if following is not None else elapsed + timing.interval)

    def _wait_until(self, deadline: float, step: Step, bake_end: float, *, started: float | None = None,
                    timing: canary_mod.BakeClock | None = None) -> None:
        clock = self.p.clock
        while True:
            now = clock.now()
            left = deadline - now
            if left <= 0:
                return
            tick: dict[str, Any] = {"step": step.weight, "bake_left": max(0.0, bake_end - now),
                                    "next_analysis_in": left}
            if started is not None and timing is not None:
                tick["deadline_in"] = max(0.0, started + timing.deadline - now)
                tick["interval"] = timing.interval
            self.emit(ReleaseEvent("tick", tick))
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
        self.p.notify("rolled-back", f"{self.record.release} rolled back to version {self.stable}: {reason}",
                      release=self.record.release, run_id=self.record.run_id, to=self.stable,
                      line=verdict.line if verdict else None,
                      numbers=verdict.observation.to_dict() if verdict else None)
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
        self.p.notify("rollback-failed", f"{self.record.release}: release failed ({reason}) and the rollback failed: "
                      f"{detail}; roll back with promoter abort --env {self.env}, or by hand: {command}",
                      release=self.record.release, run_id=self.record.run_id, manual_command=command)
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
        self.p.notify("rollback-failed", f"{self.record.release}: stopped: {foreign.detail}; promoter did not touch "
                      f"the alias after that; to return to version {self.stable}: promoter rollback --env {self.env} "
                      f"--to {self.stable}, or by hand: {command}", release=self.record.release,
                      run_id=self.record.run_id, manual_command=command)
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


def gate_changes(dp: DeployPlan, candidate: str) -> list[str]:
    """What a deploy stopped by its pre-traffic gate had changed in the account (the alias is not among them)."""
    changed = []
    if dp.upload_code:
        changed.append("$LATEST's code updated")
    if dp.set_environment:
        changed.append("$LATEST's environment updated")
    if candidate and candidate != dp.reuse_version:
        changed.append(f"version {candidate} published")
    elif candidate:
        changed.append(f"nothing: version {candidate} already existed")
    return changed or ["nothing"]


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
