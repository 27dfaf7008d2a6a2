"""The release state machine on in-memory ports and a fake clock: no AWS, no sleeping."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import replace

import pytest

from promoter.adapters.lambda_ import AliasState, FunctionVersion, InvokeResult, version_description
from promoter.engine import release
from promoter.engine.canary import Observation, VersionMetrics, Window
from promoter.engine.gates import blocking_gates, missing_gates
from promoter.engine.ledger import Ledger
from promoter.errors import (
    Interrupted,
    PreconditionFailed,
    PromoterError,
    RefusedError,
    ReleaseFailed,
    RollbackFailed,
)
from promoter.plan import load_plan
from promoter.plan.models import Gate

ENV = "sit"


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.hooks: list[tuple[float, object]] = []  # (at, callable) run once when time passes ``at``

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds
        due = [h for h in self.hooks if h[0] <= self.t]
        self.hooks = [h for h in self.hooks if h[0] > self.t]
        for _, hook in due:
            hook()

    def wall(self) -> float:
        return 1_700_000_000 + self.t


class InMemoryAliasRouter:
    def __init__(self, version: str = "1") -> None:
        self.state = AliasState(version, {}, "rev-0")
        self.revision = 0
        self.sets: list[tuple[str, dict]] = []
        self.fail_when_setting: str | None = None  # a version whose set fails (simulated outage)

    def read(self) -> AliasState:
        return self.state

    def set(self, version, weights, revision):
        if revision is not None and revision != self.state.revision:
            raise PreconditionFailed("update alias: the resource changed since it was read")
        if self.fail_when_setting == version and not weights:
            raise PromoterError("update alias: endpoint unreachable")
        self.sets.append((version, dict(weights)))
        self._write(version, weights)
        return self.state

    def _write(self, version, weights):
        self.revision += 1
        self.state = AliasState(version, dict(weights), f"rev-{self.revision}")

    def someone_else_sets(self, version, weights=None):
        self._write(version, weights or {})


class InMemoryMetricSource:
    """Traffic at ``rps`` split by the alias weights; the canary fails ``canary_error_rate`` of requests."""

    def __init__(self, router: InMemoryAliasRouter, rps: float = 20, canary_error_rate: float = 0.0,
                 stable_error_rate: float = 0.0, canary_p95: float = 100.0, alarms=()) -> None:
        self.router, self.rps = router, rps
        self.canary_error_rate, self.stable_error_rate = canary_error_rate, stable_error_rate
        self.canary_p95 = canary_p95
        self.alarms = tuple(alarms)
        self.windows: list[Window] = []

    def observe(self, canary, stable, window):
        self.windows.append(window)
        state = self.router.read()
        share = 1.0 if state.version == canary and not state.weights else state.weights.get(canary, 0.0)
        total = self.rps * window.elapsed
        c = VersionMetrics(canary, invocations=round(total * share),
                           server_errors=round(total * share * self.canary_error_rate), p95_ms=self.canary_p95)
        s = None
        if stable:
            n = round(total * (1 - share))
            s = VersionMetrics(stable, invocations=n, errors=round(n * self.stable_error_rate), p95_ms=90)
        return Observation(c, s, window.elapsed, dlq_messages=0, alarms_in_alarm=self.alarms)

    def alarms_in_alarm(self):
        return self.alarms


class InMemoryFunctions:
    def __init__(self, seeded_sha: str = "a" * 64) -> None:
        self.latest = {"CodeSha256": "seed", "Environment": {"Variables": {"CAMPAIGNS_TABLE": "campaigns-sit"}},
                       "LastUpdateStatus": "Successful"}
        self.versions = [FunctionVersion("1", version_description("v1.0.0", "abc", seeded_sha), "seed",
                                         {"CAMPAIGNS_TABLE": "campaigns-sit"})]
        self.uploads = 0

    def list_versions(self):
        return list(self.versions)

    def get_configuration(self, qualifier=None):
        return self.latest

    def version_environment(self, version):
        return next(v.environment for v in self.versions if v.version == version)

    def update_function_code(self, zip_bytes):
        self.uploads += 1
        self.latest = {**self.latest, "CodeSha256": _code_sha(zip_bytes)}
        return self.latest

    def update_environment(self, variables):
        self.latest = {**self.latest, "Environment": {"Variables": dict(variables)}}
        return self.latest

    def wait_updated(self, *, clock=None, timeout=300, poll=1.0):
        return self.latest

    def publish_version(self, description, code_sha256):
        if code_sha256 != self.latest["CodeSha256"]:
            raise PreconditionFailed("publish: CodeSha256 does not match")
        v = FunctionVersion(str(len(self.versions) + 1), description, code_sha256,
                            dict(self.latest["Environment"]["Variables"]))
        self.versions.append(v)
        return v


class ScriptedInvoker:
    """Answers each smoke request like the service would; ``crash`` makes every call a function error."""

    def __init__(self, crash: bool = False) -> None:
        self.crash = crash
        self.calls: list[tuple[str, str, str]] = []

    def invoke(self, version, event):
        self.calls.append((version, event["httpMethod"], event["path"]))
        if self.crash:
            return InvokeResult(None, {"errorMessage": "boom"}, "Unhandled")
        method, path = event["httpMethod"], event["path"]
        if path.endswith("/health"):
            return InvokeResult(200, {"status": "ok"}, None)
        if method == "GET" and path.endswith("/campaigns"):
            return InvokeResult(200, {"items": []}, None)
        if method == "POST":
            return InvokeResult(201, {"id": "c-1", "name": "Promoter Smoke Test Campaign", "status": "draft"}, None)
        if method == "PUT":
            return InvokeResult(200, {"id": "c-1", "status": "active"}, None)
        if method == "DELETE":
            self.deleted = True
            return InvokeResult(204, "", None)
        if getattr(self, "deleted", False):
            return InvokeResult(404, {"error": {"code": "not_found"}}, None)
        return InvokeResult(200, {"id": "c-1", "name": "x"}, None)


def _code_sha(data: bytes) -> str:
    import base64

    return base64.b64encode(hashlib.sha256(data).digest()).decode()


@pytest.fixture
def world(tmp_path):
    plan = load_plan()
    plan = plan.model_copy(update={"canary": plan.canary.model_copy(update={"min_invocations": 20})})
    clock = FakeClock()
    router = InMemoryAliasRouter("1")
    metrics = InMemoryMetricSource(router)
    functions = InMemoryFunctions()
    invoker = ScriptedInvoker()
    ledger = Ledger(tmp_path / "ledger")
    ports = release.Ports(router=router, metrics=metrics, invoker=invoker, functions=functions, ledger=ledger,
                          clock=clock, wall=clock.wall, identity=lambda: "arn:aws:iam::1:user/tester",
                          function="campaigns-handler-sit", alias="live", region="eu-west-1")
    artifact = tmp_path / "campaigns_lambda-v1.1.0.zip"
    artifact.write_bytes(b"PK fake zip bytes of v1.1.0")
    settings = release.DeploySettings(plan=plan, env=ENV, release="v1.1.0", canary=True, artifact=artifact,
                                      allow_untagged=True, bake_seconds=60, analysis_interval=20)

    class World:
        pass

    w = World()
    w.plan, w.clock, w.router, w.metrics, w.functions, w.invoker = plan, clock, router, metrics, functions, invoker
    w.ledger, w.ports, w.settings, w.artifact = ledger, ports, settings, artifact
    return w


def kinds(ledger, kind):
    return ledger.records(ENV, kind=kind)


def test_good_release_goes_10_50_100_and_records_every_change(world):
    events = []
    record = release.deploy(world.settings, world.ports, events.append)
    assert record.outcome == "succeeded"
    assert world.router.sets == [("1", {"2": 0.1}), ("1", {"2": 0.5}), ("2", {})]
    assert world.router.read() == AliasState("2", {}, "rev-3")
    # the version carries the release, the git sha (unknown for a given artifact) and the artifact sha256
    sha = hashlib.sha256(world.artifact.read_bytes()).hexdigest()
    assert world.functions.versions[-1].description == f"release=v1.1.0 git=unknown sha256={sha}"
    # the gate ran the whole sequence against the new version, not the alias
    assert [c[1] for c in world.invoker.calls] == ["GET", "GET", "POST", "GET", "PUT", "DELETE", "GET"]
    assert {c[0] for c in world.invoker.calls} == {"2"}
    # ledger: intent before and change after every alias move, verdicts with numbers, run-end
    intents, changes = kinds(world.ledger, "alias-intent"), kinds(world.ledger, "alias-change")
    assert len(intents) == len(changes) == 3
    assert changes[0]["before"]["version"] == "1" and changes[0]["after"]["weights"] == {"2": 0.1}
    verdicts = kinds(world.ledger, "verdict")
    # never failed; each bake advanced on a pass once the evidence was enough (2 req/s at 10 % needs 59)
    assert verdicts and not any(v["outcome"] == "fail" for v in verdicts)
    assert [v["step"] for v in verdicts if v["action"] == "advance"] == [10, 50]
    assert all(v["outcome"] == "pass" for v in verdicts if v["action"] == "advance")
    assert verdicts[0]["thresholds"]["error_rate_pct"] == 5.0
    assert verdicts[0]["line"].startswith("canary 0/") and verdicts[0]["test"]["decision"] == "inconclusive"
    assert "invocations" in verdicts[0]["observation"]["canary"]
    start = kinds(world.ledger, "run-start")[0]
    assert start["who"] == "arn:aws:iam::1:user/tester" and start["plan_id"] == "PROM-CAMP-001"
    assert start["artifact"]["sha256"] == sha
    assert kinds(world.ledger, "run-end")[0]["outcome"] == "succeeded"
    assert {e.kind for e in events} >= {"planned", "shift", "verdict", "tick", "end"}
    assert world.ledger.lock_holder(ENV) is None


def test_each_bake_is_analysed_every_interval_with_minute_periods(world):
    release.deploy(world.settings, world.ports)
    # 60 s bakes analysed every 20 s at 10 % and 50 %: 3 verdicts each
    assert [v["step"] for v in kinds(world.ledger, "verdict")] == [10, 10, 10, 50, 50, 50]
    assert all(w.period % 60 == 0 for w in world.metrics.windows)


def test_failing_canary_is_rolled_back_at_10_percent(world):
    world.metrics.canary_error_rate = 0.3
    with pytest.raises(ReleaseFailed) as info:
        release.deploy(world.settings, world.ports)
    assert info.value.exit_code == 3
    assert world.router.sets == [("1", {"2": 0.1}), ("1", {})]
    assert world.router.read().version == "1" and not world.router.read().weights
    end = kinds(world.ledger, "run-end")[-1]
    assert end["outcome"] == "rolled-back"
    assert "error_rate_pct" in end["reason"]
    assert end["verdict"]["observation"]["canary"]["error_rate_pct"] == pytest.approx(30, abs=3)


def test_pretraffic_gate_stops_a_crashing_release_with_no_traffic_moved(world):
    world.invoker.crash = True
    with pytest.raises(PromoterError) as info:
        release.deploy(world.settings, world.ports)
    assert info.value.exit_code == 1
    assert "pre-traffic gate" in str(info.value)
    # it says what did change: a version was published, though no traffic moved
    assert "no traffic moved, the alias stays on version 1" in str(info.value)
    assert "what did change:" in str(info.value) and "published" in str(info.value)
    assert world.router.sets == []
    end = kinds(world.ledger, "run-end")[-1]
    assert end["outcome"] == "refused"
    assert any("published" in item for item in end["changed"])
    assert info.value.details["run"]["outcome"] == "refused"  # --json carries the run's record
    assert kinds(world.ledger, "pretraffic")[-1]["ok"] is False


def test_rollback_failure_is_exit_4_with_the_manual_command(world):
    world.metrics.canary_error_rate = 0.5
    world.router.fail_when_setting = "1"  # every attempt to go back to stable fails
    with pytest.raises(RollbackFailed) as info:
        release.deploy(world.settings, world.ports)
    assert info.value.exit_code == 4
    assert ("aws lambda update-alias --function-name campaigns-handler-sit --name live --function-version 1"
            in info.value.hint)
    assert kinds(world.ledger, "run-end")[-1]["outcome"] == "rollback-failed"


def test_interrupt_during_bake_rolls_back_to_stable(world):
    def interrupt():
        raise KeyboardInterrupt

    world.clock.hooks.append((30, interrupt))
    with pytest.raises(Interrupted) as info:
        release.deploy(world.settings, world.ports)
    assert info.value.exit_code == 3
    assert world.router.read().version == "1" and world.router.read().weights == {}
    assert kinds(world.ledger, "run-end")[-1]["outcome"] == "rolled-back"


def test_interrupt_with_hold_leaves_the_alias_and_resume_finishes(world):
    def interrupt():
        raise KeyboardInterrupt

    world.clock.hooks.append((30, interrupt))
    with pytest.raises(Interrupted) as info:
        release.deploy(replace(world.settings, on_interrupt="hold"), world.ports)
    assert info.value.exit_code == 130
    assert world.router.read().weights == {"2": 0.1}
    assert kinds(world.ledger, "run-end")[-1]["outcome"] == "interrupted-hold"
    # a new deploy refuses while the alias is mid-shift
    with pytest.raises(RefusedError, match="mid-shift"):
        release.deploy(world.settings, world.ports)
    # resume continues the same run from 10 %
    record = release.deploy(replace(world.settings, resume=True), world.ports)
    assert record.outcome == "succeeded"
    assert world.router.read().version == "2"
    assert world.router.sets[-3:] == [("1", {"2": 0.1}), ("1", {"2": 0.5}), ("2", {})]


def test_abort_rolls_an_interrupted_run_back_to_its_stable_version(world):
    def interrupt():
        raise KeyboardInterrupt

    world.clock.hooks.append((90, interrupt))  # during the 50 % bake
    with pytest.raises(Interrupted):
        release.deploy(replace(world.settings, on_interrupt="hold"), world.ports)
    assert world.router.read().weights == {"2": 0.5}
    record = release.abort(world.plan, ENV, world.ports)
    assert record.outcome == "aborted"
    assert world.router.read().version == "1" and world.router.read().weights == {}
    with pytest.raises(RefusedError):
        release.abort(world.plan, ENV, world.ports)


def test_precondition_failure_from_a_concurrent_update_is_detected(world):
    # someone moves the alias to another version during the 10 % bake
    world.clock.hooks.append((30, lambda: world.router.someone_else_sets("1", {"2": 0.9})))
    with pytest.raises(RollbackFailed) as info:
        release.deploy(world.settings, world.ports)
    assert "changed by someone else" in str(info.value)
    assert world.router.read().weights == {"2": 0.9}  # left alone
    assert kinds(world.ledger, "run-end")[-1]["outcome"] == "rollback-failed"


def test_precondition_failed_with_routing_still_ours_rolls_back(world):
    # GIVEN someone edits the alias (not its routing) between the engine's read and its 50 % update
    def race():
        original = world.router.set

        def set_once(version, weights, revision):
            world.router.set = original
            s = world.router.state
            world.router.someone_else_sets(s.version, s.weights)  # the revision moves, the routing does not
            return original(version, weights, revision)

        world.router.set = set_once

    world.clock.hooks.append((59, race))
    # WHEN the guarded update trips THEN the run stops and, the routing still being ours, rolls back
    with pytest.raises(ReleaseFailed, match="changed since it was read"):
        release.deploy(world.settings, world.ports)
    assert world.router.read().version == "1" and world.router.read().weights == {}
    assert ("1", {"2": 0.5}) not in world.router.sets


def test_alias_changed_back_to_stable_by_an_operator_ends_as_rolled_back(world):
    world.clock.hooks.append((30, lambda: world.router.someone_else_sets("1")))
    with pytest.raises(ReleaseFailed, match="on stable version 1"):
        release.deploy(world.settings, world.ports)


def test_too_little_traffic_extends_the_bake_then_fails_as_inconclusive(world):
    world.metrics.rps = 0.1
    plan = world.plan.model_copy(update={"canary": world.plan.canary.model_copy(update={"max_extension_seconds": 40})})
    with pytest.raises(ReleaseFailed, match="inconclusive"):
        release.deploy(replace(world.settings, plan=plan), world.ports)
    verdicts = kinds(world.ledger, "verdict")
    assert all(v["outcome"] == "inconclusive" for v in verdicts)
    assert verdicts[-1]["elapsed"] >= 100  # 60 s bake + 40 s extension
    assert world.router.read().version == "1" and world.router.read().weights == {}


def test_inconclusive_passes_only_when_the_plan_says_so(world):
    world.metrics.rps = 0.1
    canary = world.plan.canary.model_copy(update={"max_extension_seconds": 0, "on_inconclusive": "pass"})
    record = release.deploy(replace(world.settings, plan=world.plan.model_copy(update={"canary": canary})),
                            world.ports)
    assert record.outcome == "succeeded"


def test_all_at_once_without_canary_in_dev(world):
    record = release.deploy(replace(world.settings, env="dev", canary=False), world.ports)
    assert record.outcome == "succeeded"
    assert world.router.sets == [("2", {})]


def test_identical_artifact_is_reused_and_never_routes_to_latest(world):
    release.deploy(world.settings, world.ports)
    uploads = world.functions.uploads
    record = release.deploy(world.settings, world.ports)
    assert record.outcome == "succeeded" and "nothing to do" in record.reason
    assert world.functions.uploads == uploads and len(world.functions.versions) == 2
    assert all(v != "$LATEST" for v, _ in world.router.sets)


def test_chaos_is_refused_where_the_plan_forbids_it(world):
    with pytest.raises(RefusedError, match="allow_chaos"):
        release.deploy(replace(world.settings, env="prod", env_vars={"CHAOS_ERROR_RATE": "0.3"}), world.ports)
    assert world.router.sets == [] and world.functions.uploads == 0


def test_chaos_left_on_latest_does_not_leak_into_the_next_release():
    env = release.desired_environment({"A": "1", "CHAOS_ERROR_RATE": "0.3", "RELEASE_VERSION": "v1"}, {}, "v2")
    assert env == {"A": "1", "RELEASE_VERSION": "v2"}


def test_dry_run_plans_with_read_only_calls(world):
    events = []
    record = release.deploy(replace(world.settings, dry_run=True), world.ports, events.append)
    assert record.outcome == "dry-run"
    assert world.router.sets == [] and world.functions.uploads == 0 and world.invoker.calls == []
    actions = record.plan["actions"]
    assert any("10%" in a for a in actions) and any("pre-traffic" in a for a in actions)
    assert world.ledger.records(ENV) == []


def test_lock_held_by_another_run_refuses(world):
    with world.ledger.lock(ENV, purpose="deploy"), pytest.raises(PromoterError, match="locked"):
        release.deploy(world.settings, world.ports)


def test_rollback_to_tag_previous_and_number(world):
    release.deploy(world.settings, world.ports)
    record = release.rollback_to(release.RollbackSettings(plan=world.plan, env=ENV, to="v1.0.0"), world.ports)
    assert record.outcome == "succeeded" and world.router.read().version == "1"
    record = release.rollback_to(release.RollbackSettings(plan=world.plan, env=ENV, to="2"), world.ports)
    assert world.router.read().version == "2"
    record = release.rollback_to(release.RollbackSettings(plan=world.plan, env=ENV, to="previous"), world.ports)
    assert world.router.read().version == "1" and record.candidate_version == "1"
    with pytest.raises(RefusedError, match=r"v9.9.9 was never deployed.*v1.0.0 \(version 1\)"):
        release.rollback_to(release.RollbackSettings(plan=world.plan, env=ENV, to="v9.9.9"), world.ports)


def test_rollback_refuses_a_version_that_failed_its_canary_unless_allowed(world):
    # GIVEN version 2 took 10 % and was rolled back by its canary analysis
    world.metrics.canary_error_rate = 0.3
    with pytest.raises(ReleaseFailed):
        release.deploy(world.settings, world.ports)
    assert release.failed_versions(world.ledger, ENV).keys() == {"2"}
    # WHEN someone asks to roll "back" to it, by tag or number, THEN it is refused with the run that failed it
    for to in ("v1.1.0", "2"):
        with pytest.raises(RefusedError, match=r"version 2 failed its canary and never served 100 %.*error_rate_pct"):
            release.rollback_to(release.RollbackSettings(plan=world.plan, env=ENV, to=to), world.ports)
    assert world.router.read().version == "1"
    # unless it is explicitly allowed
    release.rollback_to(release.RollbackSettings(plan=world.plan, env=ENV, to="2", allow_failed=True), world.ports)
    assert world.router.read().version == "2"


def _gated(world):
    """The world's plan with a gate that blocks deploys to the world's environment."""
    gate = Gate(id="signoff", title="Sign-off", before_env=ENV, kind="signoff", blocks_deploy=True,
                record_with="promoter approve --env ENV --gate signoff --approver NAME --release TAG")
    plan = world.plan.model_copy(update={"gates": [gate]})
    return replace(world.settings, plan=plan)


def test_a_release_without_its_sign_off_is_refused_before_anything_changes(world):
    settings = _gated(world)
    with pytest.raises(RefusedError, match=r"v1.1.0 cannot go to .*signoff \(Sign-off\): promoter approve --env "
                                           r"\w+ --gate signoff --approver NAME --release v1.1.0"):
        release.deploy(settings, world.ports)
    # a sign-off of another release does not count
    world.ledger.append(ENV, "approval", gate="signoff", approver="lead", release="v1.0.9")
    with pytest.raises(RefusedError):
        release.deploy(settings, world.ports)
    assert world.router.sets == [] and world.functions.uploads == 0 and len(world.functions.versions) == 1
    # the sign-off of this release lets it through
    world.ledger.append(ENV, "approval", gate="signoff", approver="lead", release="v1.1.0")
    assert release.deploy(settings, world.ports).outcome == "succeeded"


def test_missing_gates_is_a_pure_decision():
    plan = load_plan()
    assert [g.id for g in blocking_gates(plan, "prod")] == ["sit-signoff", "change-request"]
    assert blocking_gates(plan, "sit") == []
    approvals = [{"gate": "sit-signoff", "release": "v1.1.0"}, {"gate": "change-request", "release": "v1.0.0"}]
    assert [g.id for g in missing_gates(plan, "prod", "v1.1.0", approvals)] == ["change-request"]
    assert missing_gates(plan, "sit", "v1.1.0", []) == []


def test_status_reports_routes_releases_runs_and_lock(world):
    release.deploy(world.settings, world.ports)
    data = release.status(world.plan, ENV, world.ports)
    assert data["routes"] == [{"version": "2", "percent": 100.0, "release": "v1.1.0",
                               "sha256": hashlib.sha256(world.artifact.read_bytes()).hexdigest()}]
    assert data["deployed_releases"] == {"v1.0.0": "1", "v1.1.0": "2"}
    assert data["runs"][-1]["outcome"] == "succeeded"
    assert data["runs"][-1]["verdicts"][-1]["outcome"] == "pass"
    assert data["lock"] is None


# -- failures between the steps: nothing left behind, every run ends in the ledger ----------------------------
def test_gate_deletes_the_campaign_it_created_when_a_later_request_fails(world):
    # GIVEN a version whose create works but whose update answers 500
    answer = world.invoker.invoke

    def update_fails(version, event):
        if event["httpMethod"] == "PUT":
            world.invoker.calls.append((version, "PUT", event["path"]))
            return InvokeResult(500, {"error": {"code": "internal"}}, None)
        return answer(version, event)

    world.invoker.invoke = update_fails

    # WHEN it is deployed
    with pytest.raises(PromoterError) as info:
        release.deploy(world.settings, world.ports)

    # THEN the gate stops it with no traffic moved, and the campaign it created was deleted by id
    assert "pre-traffic gate" in str(info.value) and "update" in str(info.value)
    assert world.router.sets == []
    methods = [(m, p.rsplit("/", 1)[-1]) for _v, m, p in world.invoker.calls]
    assert ("POST", "campaigns") in methods
    assert ("DELETE", "c-1") in methods
    assert methods.index(("DELETE", "c-1")) > methods.index(("PUT", "c-1"))
    results = kinds(world.ledger, "pretraffic")[-1]["results"]
    assert [(r["name"], r["ok"]) for r in results][-2:] == [("update", False), ("delete", True)]


def test_alias_unreadable_after_the_gate_ends_the_run_with_no_traffic_moved(world):
    # GIVEN the alias cannot be read once the gate has passed
    reads = {"n": 0}
    read = world.router.read

    def flaky_read():
        reads["n"] += 1
        if world.invoker.calls:  # the gate has run
            raise PromoterError("get alias campaigns-handler-sit:live: endpoint unreachable")
        return read()

    world.router.read = flaky_read

    # WHEN it is deployed
    with pytest.raises(PromoterError, match="endpoint unreachable"):
        release.deploy(world.settings, world.ports)

    # THEN nothing moved and the run is closed in the ledger (not left looking interrupted)
    assert world.router.sets == []
    end = kinds(world.ledger, "run-end")[-1]
    assert end["outcome"] == "refused" and "endpoint unreachable" in end["reason"]
    assert release.unfinished_run(world.ledger, ENV) is None


def test_unexpected_error_mid_bake_rolls_back_to_stable_and_records_it(world):
    # GIVEN metrics that fail with an error no adapter foresaw
    def broken(canary, stable, window):
        raise ValueError("metric datapoint without a timestamp")

    world.metrics.observe = broken

    # WHEN it is deployed with canary steps
    with pytest.raises(ReleaseFailed) as info:
        release.deploy(world.settings, world.ports)

    # THEN the alias went back to stable (exit 3) and the ledger says why
    assert info.value.exit_code == 3
    assert world.router.read().version == "1" and world.router.read().weights == {}
    assert world.router.sets[-1] == ("1", {})
    end = kinds(world.ledger, "run-end")[-1]
    assert end["outcome"] == "rolled-back"
    assert "ValueError: metric datapoint without a timestamp" in end["reason"]


def test_interrupt_with_hold_when_the_alias_cannot_be_read_still_records_where_it_was_left(world):
    # GIVEN a hold-on-interrupt run interrupted at 10 % while the alias read fails
    settings = replace(world.settings, on_interrupt="hold")
    read = world.router.read

    def interrupt(canary, stable, window):
        def failing_read():
            raise PromoterError("get alias: endpoint unreachable")

        world.router.read = failing_read
        raise KeyboardInterrupt

    world.metrics.observe = interrupt

    # WHEN it is interrupted
    with pytest.raises(Interrupted) as info:
        release.deploy(settings, world.ports)

    # THEN the message and the ledger name the routing promoter last set
    world.router.read = read
    assert "as last set" in str(info.value)
    end = kinds(world.ledger, "run-end")[-1]
    assert end["outcome"] == "interrupted-hold"
    assert "version 1 at 90%" in end["reason"]


# -- the bake's clock and verdicts ------------------------------------------------------------------------------
def test_bake_compresses_the_analysis_interval_and_ticks_show_next_analysis_and_deadline(world):
    # GIVEN --bake 8 and no --analysis-interval: the plan's 60 s every 900 s becomes 60 * 8 / 900 s
    events = []
    release.deploy(replace(world.settings, bake_seconds=8, analysis_interval=None), world.ports, events.append)
    verdicts = kinds(world.ledger, "verdict")
    tens = [v for v in verdicts if v["step"] == 10]
    every = 60 * 8 / 900
    # THEN the first analysis comes after the first interval, and then every interval, never once a minute
    assert tens[0]["elapsed"] == pytest.approx(every, abs=0.01)
    assert all(b["elapsed"] - a["elapsed"] == pytest.approx(every, abs=0.01) for a, b in itertools.pairwise(tens))
    assert tens[0]["deadline"] == 8 + world.plan.canary.max_extension_seconds
    ticks = [e.data for e in events if e.kind == "tick"]
    assert ticks and all({"bake_left", "next_analysis_in", "deadline_in", "interval"} <= set(t) for t in ticks)
    assert kinds(world.ledger, "run-start")[0]["analysis_interval"] == pytest.approx(every, abs=0.01)


def test_gross_failure_is_rolled_back_at_the_first_analysis(world):
    world.metrics.canary_error_rate = 0.5
    with pytest.raises(ReleaseFailed, match="error_rate_pct"):
        release.deploy(replace(world.settings, bake_seconds=60, analysis_interval=5), world.ports)
    verdicts = kinds(world.ledger, "verdict")
    assert [v["outcome"] for v in verdicts] == ["fail"]  # 10 canary requests, 5 failed: no need to wait for 20
    assert verdicts[0]["observation"]["canary"]["invocations"] < world.plan.canary.min_invocations
    assert verdicts[0]["line"].endswith(": fail") and "vs stable 0/" in verdicts[0]["line"]
    assert world.router.read().version == "1" and world.router.read().weights == {}


def test_alarm_already_firing_is_reported_and_does_not_block_a_fix_forward(world):
    world.metrics.alarms = ("campaigns-sit-high-error-rate",)
    record = release.deploy(world.settings, world.ports)
    assert record.outcome == "succeeded"
    before = kinds(world.ledger, "alarms-before")
    assert before and before[0]["in_alarm"] == ["campaigns-sit-high-error-rate"] and before[0]["blocking"] is False


def test_alarm_already_firing_refuses_the_deploy_when_the_plan_says_so(world):
    world.metrics.alarms = ("campaigns-sit-high-error-rate",)
    plan = world.plan.model_copy(update={"canary": world.plan.canary.model_copy(update={"fix_forward_alarms": False})})
    with pytest.raises(RefusedError, match="already in ALARM"):
        release.deploy(replace(world.settings, plan=plan), world.ports)
    assert world.router.sets == []  # no traffic moved
    assert kinds(world.ledger, "run-end")[0]["outcome"] == "refused"


def test_alarm_entering_alarm_during_the_bake_fails_the_step(world):
    world.clock.hooks.append((30, lambda: setattr(world.metrics, "alarms", ("campaigns-sit-high-duration",))))
    with pytest.raises(ReleaseFailed, match="alarms in ALARM: campaigns-sit-high-duration"):
        release.deploy(world.settings, world.ports)
    assert world.router.read().version == "1" and world.router.read().weights == {}


def test_a_recorded_rollback_by_someone_else_mid_canary_is_named_and_left_in_place(world):
    # GIVEN another engineer's rollback (on the shared ledger) moves the alias to version 3 during the 10 % bake
    def their_rollback():
        world.ledger.append(ENV, "run-start", run_id="run-b", kind_of_run="rollback", who="bo@laptop")
        world.ledger.append(ENV, "alias-intent", run_id="run-b", step="rollback",
                            before={"version": "1", "weights": {"2": 0.1}}, after={"version": "3", "weights": {}})
        world.router.someone_else_sets("3")
        world.ledger.append(ENV, "alias-change", run_id="run-b", step="rollback",
                            before={"version": "1", "weights": {"2": 0.1}}, after={"version": "3", "weights": {}})

    world.clock.hooks.append((30, their_rollback))
    with pytest.raises(RollbackFailed) as info:
        release.deploy(world.settings, world.ports)
    # THEN the run says who moved it and that it left it there, and does not suggest undoing it
    assert "run run-b (rollback by bo@laptop" in str(info.value) and "left it there" in str(info.value)
    assert "update-alias" not in (info.value.hint or "")
    assert world.router.read().version == "3" and world.router.read().weights == {}
    end = kinds(world.ledger, "run-end")[-1]
    assert end["outcome"] == "rollback-failed" and end["moved_by"].startswith("run run-b")


def test_an_unreachable_state_store_refuses_the_deploy_with_nothing_changed(world, tmp_path):
    from promoter.adapters.state_s3 import S3StateStore
    from promoter.engine.state import StateUnavailable
    from tests.unit.inmemory_s3 import InMemoryS3

    s3 = InMemoryS3()
    s3.down = True
    shared = Ledger(tmp_path / "shared", store=S3StateStore(client=s3, bucket="team-state"))
    with pytest.raises(StateUnavailable) as info:
        release.deploy(world.settings, replace(world.ports, ledger=shared))
    assert info.value.exit_code == 1 and "nothing was changed" in (info.value.hint or "")
    assert world.router.sets == [] and world.functions.uploads == 0 and len(world.functions.versions) == 1


def test_a_state_store_lost_mid_canary_moves_the_alias_no_further(world, tmp_path):
    from promoter.adapters.state_s3 import S3StateStore
    from tests.unit.inmemory_s3 import InMemoryS3

    s3 = InMemoryS3()
    shared = Ledger(tmp_path / "shared", store=S3StateStore(client=s3, bucket="team-state"))
    world.clock.hooks.append((30, lambda: setattr(s3, "down", True)))  # during the 10 % bake
    with pytest.raises(PromoterError):
        release.deploy(world.settings, replace(world.ports, ledger=shared))
    # no alias change without its intent record: the alias stays where the last recorded change left it
    assert world.router.sets == [("1", {"2": 0.1})]
    s3.down = False
    intents = [r["after"] for r in shared.records(ENV, kind="alias-intent")]
    assert intents == [{"version": "1", "weights": {"2": 0.1}}]
