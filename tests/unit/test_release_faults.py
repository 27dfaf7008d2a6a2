"""Fault paths of the release engine on in-memory ports: every fault ends in a known state and a complete record.

The ports and the ``world`` fixture are those of ``test_release_unit``; interrupts here are real signals sent to
this process, delivered by Python's own signal machinery.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import replace

import pytest
from test_release_unit import ENV, kinds, world  # noqa: F401  (world is a fixture)

from promoter.engine import release
from promoter.errors import (
    AwsError,
    Interrupted,
    LockHeld,
    LockLost,
    PreconditionFailed,
    RefusedError,
    ReleaseFailed,
    RollbackFailed,
    UsageError,
)


def _signals(count: int, gap_s: float, sig: int = signal.SIGINT) -> None:
    """Send ``count`` signals to this process, ``gap_s`` apart, from another thread (as a terminal would)."""

    def send() -> None:
        for i in range(count):
            if i:
                time.sleep(gap_s)
            os.kill(os.getpid(), sig)

    threading.Thread(target=send, daemon=True).start()


def _slow_sets(world, seconds: float) -> None:  # noqa: F811
    """Every UpdateAlias takes ``seconds`` of real time before it applies, like a call over the network."""
    original = world.router.set

    def slow(version, weights, revision):
        time.sleep(seconds)
        return original(version, weights, revision)

    world.router.set = slow


def _complete(ledger) -> dict:
    """The run's end record, after checking every alias intent of the run has its change."""
    ends = kinds(ledger, "run-end")
    assert len(ends) == 1, ends
    intents = kinds(ledger, "alias-intent")
    outcomes = [r for r in ledger.records(ENV) if r["kind"] in ("alias-change", "alias-failed")]
    assert [i["step"] for i in intents] == [c["step"] for c in outcomes]
    return ends[0]


# -- interrupts ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gap_ms", [3, 20])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_quick_interrupts_during_a_bake_roll_back_and_end_with_a_record(world, gap_ms, sig):  # noqa: F811
    # GIVEN a canary at 10 % whose alias calls take 50 ms, and three interrupts arriving gap_ms apart mid-bake
    _slow_sets(world, 0.05)
    world.clock.hooks.append((30, lambda: (_signals(3, gap_ms / 1000, sig), time.sleep(1))))

    # WHEN the run is interrupted
    with release.sigterm_as_interrupt(), pytest.raises(Interrupted) as info:
        release.deploy(world.settings, world.ports)

    # THEN it rolled back (exit 3), the alias is on stable, and the ledger has the rollback and the end
    assert info.value.exit_code == 3
    assert world.router.read().version == "1" and world.router.read().weights == {}
    end = _complete(world.ledger)
    assert end["outcome"] == "rolled-back"
    assert kinds(world.ledger, "alias-change")[-1]["step"] == "rollback"
    assert end["interrupts"] >= 1  # signals closer together than the interpreter checks for them count once
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the run's guard is gone


def test_interrupts_during_a_verdict_rollback_do_not_stop_it(world):  # noqa: F811
    # GIVEN a failing canary whose rollback is interrupted three times while the alias call is in flight
    world.metrics.canary_error_rate = 0.3
    original = world.router.set

    def set_with_interrupts(version, weights, revision):
        if version == "1" and not weights:
            _signals(3, 0.003)
            time.sleep(0.05)
        return original(version, weights, revision)

    world.router.set = set_with_interrupts

    # WHEN the canary analysis rolls it back
    with pytest.raises(ReleaseFailed) as info:
        release.deploy(world.settings, world.ports)

    # THEN the rollback finished and the run ended as rolled back, with the interrupts on record
    assert info.value.exit_code == 3
    assert world.router.read().version == "1" and world.router.read().weights == {}
    end = _complete(world.ledger)
    assert end["outcome"] == "rolled-back" and end["interrupts"] == 3


def test_interrupts_raised_inside_the_rollback_are_retried_until_it_is_done(world):  # noqa: F811
    # GIVEN the rollback's alias calls fail with KeyboardInterrupt five times (after applying twice)
    world.metrics.canary_error_rate = 0.3
    original = world.router.set
    failures = {"n": 0}

    def interrupted_set(version, weights, revision):
        if version == "1" and not weights and failures["n"] < 5:
            failures["n"] += 1
            if failures["n"] in (2, 4):
                original(version, weights, revision)  # applied, then the interrupt lands before the reply
            raise KeyboardInterrupt
        return original(version, weights, revision)

    world.router.set = interrupted_set

    with pytest.raises(ReleaseFailed):
        release.deploy(world.settings, world.ports)

    assert world.router.read().version == "1" and world.router.read().weights == {}
    end = _complete(world.ledger)
    assert end["outcome"] == "rolled-back"


# -- lost replies ------------------------------------------------------------------------------------------------
def _lose_reply(world, *, when, error):  # noqa: F811
    """The UpdateAlias matching ``when(version, weights)`` is applied, and then its caller gets ``error`` (what the
    SDK reports when the reply was lost and its retry, with the same RevisionId, met a 412 or timed out)."""
    original = world.router.set
    lost = {"n": 0}

    def set_then_lose(version, weights, revision):
        result = original(version, weights, revision)
        if when(version, weights) and not lost["n"]:
            lost["n"] += 1
            raise error
        return result

    world.router.set = set_then_lose
    return lost


@pytest.mark.parametrize("error", [
    PreconditionFailed("update alias: the resource changed since it was read (PreconditionFailedException)"),
    AwsError("update alias: endpoint unreachable: Read timeout", code="EndpointUnreachable"),
])
def test_a_lost_reply_to_a_shift_is_recognised_as_ours_and_the_run_carries_on(world, error):  # noqa: F811
    lost = _lose_reply(world, when=lambda v, w: w == {"2": 0.5}, error=error)
    record = release.deploy(world.settings, world.ports)
    assert lost["n"] == 1
    assert record.outcome == "succeeded"
    assert world.router.read().version == "2" and world.router.read().weights == {}
    end = _complete(world.ledger)
    assert end["outcome"] == "succeeded"
    settled = [c for c in kinds(world.ledger, "alias-change") if c.get("settled")]
    assert [c["step"] for c in settled] == [50] and settled[0]["after"]["weights"] == {"2": 0.5}


def test_a_lost_reply_to_the_rollback_is_a_clean_rollback(world):  # noqa: F811
    world.metrics.canary_error_rate = 0.3
    _lose_reply(world, when=lambda v, w: v == "1" and not w,
                error=AwsError("update alias: ServiceException: 500", code="ServiceException"))
    with pytest.raises(ReleaseFailed) as info:
        release.deploy(world.settings, world.ports)
    assert info.value.exit_code == 3
    assert world.router.read().version == "1" and world.router.read().weights == {}
    assert _complete(world.ledger)["outcome"] == "rolled-back"


def test_a_lost_reply_to_rollback_to_is_a_success(world):  # noqa: F811
    release.deploy(world.settings, world.ports)
    _lose_reply(world, when=lambda v, w: v == "1", error=PreconditionFailed("update alias: changed (412)"))
    record = release.rollback_to(release.RollbackSettings(plan=world.plan, env=ENV, to="v1.0.0"), world.ports)
    assert record.outcome == "succeeded" and world.router.read().version == "1"
    end = kinds(world.ledger, "run-end")[-1]
    assert end["outcome"] == "succeeded"
    assert kinds(world.ledger, "alias-change")[-1]["settled"]


def test_a_failed_shift_that_did_not_apply_still_rolls_back(world):  # noqa: F811
    # GIVEN the 50 % update fails outright (nothing applied)
    original = world.router.set

    def failing(version, weights, revision):
        if weights == {"2": 0.5}:
            raise AwsError("update alias: ServiceException: 500", code="ServiceException")
        return original(version, weights, revision)

    world.router.set = failing
    with pytest.raises(ReleaseFailed):
        release.deploy(world.settings, world.ports)
    assert world.router.read().version == "1" and world.router.read().weights == {}
    assert _complete(world.ledger)["outcome"] == "rolled-back"
    assert [r["step"] for r in kinds(world.ledger, "alias-failed")] == [50]


# -- the plan's strategy -----------------------------------------------------------------------------------------
def test_the_plans_canary_strategy_is_the_default_without_the_flag(world):  # noqa: F811
    # GIVEN sit's strategy is mode: canary WHEN deploying without --canary THEN it goes 10 -> 50 -> 100 with analysis
    assert world.plan.environment(ENV).strategy.mode == "canary"
    record = release.deploy(replace(world.settings, canary=False), world.ports)
    assert record.outcome == "succeeded"
    assert world.router.sets == [("1", {"2": 0.1}), ("1", {"2": 0.5}), ("2", {})]
    assert kinds(world.ledger, "verdict")


def test_the_plans_canary_strategy_fails_a_bad_release_without_the_flag(world):  # noqa: F811
    world.metrics.canary_error_rate = 0.3
    with pytest.raises(ReleaseFailed):
        release.deploy(replace(world.settings, canary=False), world.ports)
    assert world.router.read().version == "1" and world.router.read().weights == {}


def test_all_at_once_where_the_plan_says_canary_needs_a_recorded_reason(world):  # noqa: F811
    settings = replace(world.settings, canary=False, all_at_once_reason="hotfix INC-42, approved by the lead")
    record = release.deploy(settings, world.ports)
    assert record.outcome == "succeeded" and world.router.sets == [("2", {})]
    start = kinds(world.ledger, "run-start")[-1]
    assert start["strategy"] == {"mode": "all-at-once", "plan_mode": "canary",
                                 "override": "hotfix INC-42, approved by the lead"}


def test_all_at_once_is_refused_where_the_plan_requires_the_canary(world):  # noqa: F811
    settings = replace(world.settings, env="prod", canary=False, all_at_once_reason="in a hurry")
    with pytest.raises(RefusedError, match="prod requires the canary"):
        release.deploy(settings, world.ports)
    assert world.router.sets == [] and world.functions.uploads == 0
    with pytest.raises(UsageError, match="reason"):
        release.deploy(replace(world.settings, all_at_once_reason="   "), world.ports)
    with pytest.raises(UsageError, match="--canary"):
        release.deploy(replace(world.settings, canary=True, all_at_once_reason="x"), world.ports)


# -- the lock ------------------------------------------------------------------------------------------------------
def _break_and_take(world):  # noqa: F811
    """Someone breaks the run's lock with --force and takes it (a second promoter)."""
    world.ledger.break_lock(ENV, force=True)
    taken = world.ledger.lock(ENV, purpose="deploy --resume")
    taken.__enter__()
    world.taken = taken


@pytest.mark.parametrize("canary_error_rate", [0.0, 0.3])
def test_a_run_whose_lock_was_broken_stops_without_touching_the_alias(world, canary_error_rate):  # noqa: F811
    # GIVEN a run at 10 % whose lock is broken and taken by another promoter during the bake
    world.metrics.canary_error_rate = canary_error_rate
    world.metrics.rps = 20 if canary_error_rate == 0 else 0.1  # a failing verdict only after the lock is gone
    world.clock.hooks.append((30, lambda: _break_and_take(world)))
    if canary_error_rate:
        world.clock.hooks.append((31, lambda: setattr(world.metrics, "rps", 20)))

    # WHEN it reaches its next alias change (the 50 % shift, or the rollback of a failed verdict)
    with pytest.raises(LockLost) as info:
        release.deploy(world.settings, world.ports)

    # THEN it stopped (exit 4) with the alias where it was, and left the run to whoever holds the lock
    assert info.value.exit_code == 4
    assert world.router.sets == [("1", {"2": 0.1})]
    assert "promoter deploy --env sit --resume" in info.value.hint
    (lost,) = kinds(world.ledger, "lock-lost")
    assert lost["alias"]["weights"] == {"2": 0.1}
    assert kinds(world.ledger, "run-end") == []
    # the other promoter finishes the run (resumes the healthy one, aborts the failing one): exactly one end record
    world.taken.__exit__(None, None, None)
    if canary_error_rate:
        record = release.abort(world.plan, ENV, world.ports)
        assert world.router.read().version == "1" and world.router.read().weights == {}
    else:
        record = release.deploy(replace(world.settings, resume=True), world.ports)
        assert world.router.read().version == "2"
    assert record.run_id == lost["run_id"]
    assert len(kinds(world.ledger, "run-end")) == 1


# -- after a failed rollback ---------------------------------------------------------------------------------------
def test_abort_finishes_a_run_whose_rollback_failed_and_the_hint_names_it_first(world):  # noqa: F811
    # GIVEN a failing canary whose rollback fails (the alias call to stable fails: an outage)
    world.metrics.canary_error_rate = 0.5
    world.router.fail_when_setting = "1"
    with pytest.raises(RollbackFailed) as info:
        release.deploy(world.settings, world.ports)
    assert info.value.exit_code == 4
    assert info.value.hint.startswith("roll back with promoter abort --env sit (recorded); ")
    assert "aws lambda update-alias" in info.value.hint  # the last resort, after the recorded command
    run_id = kinds(world.ledger, "run-end")[-1]["run_id"]
    assert release.status(world.plan, ENV, world.ports)["unfinished_run"] == run_id
    # WHEN the outage is over and the operator runs the command the hint gave
    world.router.fail_when_setting = None
    record = release.abort(world.plan, ENV, world.ports)
    # THEN the same run is rolled back and closed
    assert record.run_id == run_id and record.outcome == "aborted"
    assert world.router.read().version == "1" and world.router.read().weights == {}
    assert kinds(world.ledger, "run-end")[-1]["outcome"] == "aborted"
    assert release.status(world.plan, ENV, world.ports)["unfinished_run"] is None
    # a run that failed is not resumed as if it were healthy
    with pytest.raises(RefusedError):
        release.deploy(replace(world.settings, resume=True), world.ports)


# -- refusals: checked before the build, always recorded ------------------------------------------------------------
@pytest.fixture
def building(world, monkeypatch):  # noqa: F811
    """The world deploying from source (no --artifact); the build itself is the seam: it records that it ran and
    then does what ``world.build_does`` says (by default: stop the test, since no build should run)."""
    import promoter.engine.build as build_mod

    world.builds = 0

    def build(**_kw):
        world.builds += 1
        return world.build_does()

    def no_build():
        raise AssertionError("the build ran, although a cheap refusal should have stopped the deploy first")

    world.build_does = no_build
    monkeypatch.setattr(build_mod, "build", build)
    world.settings = replace(world.settings, artifact=None)
    return world


def _refusal(world):  # noqa: F811
    (refusal,) = kinds(world.ledger, "refusal")
    run = next(r for r in world.ledger.runs(ENV) if r["run_id"] == refusal["run_id"])
    assert run["outcome"] == refusal["outcome"] and run["kind_of_run"] == "deploy"
    return refusal


def test_an_interrupt_during_the_build_says_so_and_is_recorded(building):
    def interrupted():
        raise KeyboardInterrupt

    building.build_does = interrupted
    with pytest.raises(Interrupted) as info:
        release.deploy(building.settings, building.ports)
    assert building.builds == 1
    assert info.value.exit_code == 1
    assert "interrupted before anything changed" in str(info.value)
    refusal = _refusal(building)
    assert refusal["outcome"] == "aborted" and "interrupted" in refusal["reason"]
    assert building.router.sets == [] and building.ledger.lock_holder(ENV) is None


def test_a_deploy_onto_a_mid_shift_alias_is_refused_before_building_and_recorded(building):
    building.router.someone_else_sets("1", {"3": 0.5})
    with pytest.raises(RefusedError, match="mid-shift"):
        release.deploy(building.settings, building.ports)
    assert building.builds == 0
    refusal = _refusal(building)
    assert refusal["outcome"] == "refused" and "mid-shift" in refusal["reason"]
    assert "promoter deploy --env sit --resume" in refusal["hint"]


def test_a_deploy_without_its_sign_off_is_refused_before_building_and_recorded(building):
    from promoter.plan.models import Gate

    gate = Gate(id="signoff", title="Sign-off", before_env=ENV, kind="signoff", blocks_deploy=True)
    settings = replace(building.settings, plan=building.plan.model_copy(update={"gates": [gate]}))
    with pytest.raises(RefusedError, match="no approval on record"):
        release.deploy(settings, building.ports)
    assert building.builds == 0
    assert _refusal(building)["reason"].startswith("v1.1.0 cannot go to sit")


def test_a_deploy_refused_by_the_lock_or_the_account_is_recorded(building):
    with building.ledger.lock(ENV, purpose="deploy", run_id="other"), pytest.raises(LockHeld):
        release.deploy(building.settings, building.ports)
    assert "locked by" in _refusal(building)["reason"]
    ports = replace(building.ports, expected_account="815856636111", caller_account=lambda: "093646564004")
    with pytest.raises(RefusedError, match="credentials are for account 093646564004"):
        release.deploy(building.settings, ports)
    assert len(kinds(building.ledger, "refusal")) == 2
    assert building.builds == 0 and building.router.sets == []


def test_refused_deploys_do_not_hide_the_unfinished_run(world):  # noqa: F811
    world.clock.hooks.append((30, lambda: (_ for _ in ()).throw(KeyboardInterrupt)))
    with pytest.raises(Interrupted):
        release.deploy(replace(world.settings, on_interrupt="hold"), world.ports)
    held = kinds(world.ledger, "run-end")[-1]["run_id"]
    with pytest.raises(RefusedError, match="mid-shift"):
        release.deploy(world.settings, world.ports)
    assert release.status(world.plan, ENV, world.ports)["unfinished_run"] == held
    assert release.abort(world.plan, ENV, world.ports).run_id == held


# -- rollback --to previous --------------------------------------------------------------------------------------
def test_rollback_to_previous_from_a_stuck_canary_is_its_stable_version(world, tmp_path):  # noqa: F811
    # GIVEN v1.1.0 (version 2) fully deployed, then v1.2.0 (version 3) held at 10 % on top of it
    release.deploy(world.settings, world.ports)
    newer = tmp_path / "campaigns_lambda-v1.2.0.zip"
    newer.write_bytes(b"PK fake zip bytes of v1.2.0")
    world.invoker.deleted = False  # the scripted service forgets the first gate's campaign
    world.clock.hooks.append((world.clock.t + 30, lambda: (_ for _ in ()).throw(KeyboardInterrupt)))
    with pytest.raises(Interrupted):
        release.deploy(replace(world.settings, release="v1.2.0", artifact=newer, on_interrupt="hold"), world.ports)
    assert world.router.read().version == "2" and world.router.read().weights == {"3": 0.1}
    # WHEN the operator rolls back to "previous"
    record = release.rollback_to(release.RollbackSettings(plan=world.plan, env=ENV, to="previous"), world.ports)
    # THEN previous means the version the canary was shifting from, not the one before it
    assert record.candidate_version == "2"
    assert world.router.read().version == "2" and world.router.read().weights == {}


# -- status when AWS cannot be reached ---------------------------------------------------------------------------------
def _unreachable(world):  # noqa: F811
    def read():
        raise AwsError("get alias campaigns-handler-sit:live: endpoint unreachable: Could not connect",
                       code="EndpointUnreachable")

    world.router.read = read
    world.functions.list_versions = read


def _held_run(world):  # noqa: F811
    world.clock.hooks.append((world.clock.t + 30, lambda: (_ for _ in ()).throw(KeyboardInterrupt)))
    with pytest.raises(Interrupted):
        release.deploy(replace(world.settings, on_interrupt="hold"), world.ports)
    return kinds(world.ledger, "run-end")[-1]["run_id"]


def test_status_shows_what_is_known_locally_when_aws_is_unreachable(world):  # noqa: F811
    held = _held_run(world)
    _unreachable(world)
    with world.ledger.lock(ENV, purpose="deploy", run_id="r-other"):
        data = release.status(world.plan, ENV, world.ports)
    assert data["unfinished_run"] == held
    assert data["lock"]["run_id"] == "r-other"
    assert data["runs"][-1]["run_id"] == held and data["runs"][-1]["outcome"] == "interrupted-hold"
    assert data["routes"] is None and data["deployed_releases"] is None
    assert "endpoint unreachable" in data["aws_error"]
    assert data["last_alias"] == {"version": "1", "weights": {"2": 0.1}, "run_id": held}


def test_status_command_prints_the_local_state_then_the_error(world, monkeypatch):  # noqa: F811
    from typer.testing import CliRunner

    import promoter.cli.release as cli_release
    from promoter.cli.app import app

    held = _held_run(world)
    _unreachable(world)
    monkeypatch.setattr(cli_release, "_ports", lambda _app, _env: world.ports)
    env = {"COLUMNS": "120", "NO_COLOR": "1"}
    args = ["status", "--env", ENV, "--ledger-dir", str(world.ledger.root)]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 1, result.output
    assert f"unfinished run {held}" in result.stdout and "lock: free" in result.stdout
    assert "last alias change recorded: version 1 weights {'2': 0.1}" in result.stdout
    assert "endpoint unreachable" in result.stderr
    result = CliRunner().invoke(app, [*args, "--json"], env=env)
    assert result.exit_code == 1
    import json

    data = json.loads(result.stdout)
    assert data["unfinished_run"] == held and "endpoint unreachable" in data["aws_error"]


# -- torn ledger lines are reported ------------------------------------------------------------------------------------
def test_status_and_history_say_when_a_ledger_line_was_torn(world, monkeypatch):  # noqa: F811
    import json

    from typer.testing import CliRunner

    import promoter.cli.release as cli_release
    from promoter.cli.app import app

    release.deploy(world.settings, world.ports)
    path = world.ledger.path(ENV)
    with path.open("a") as fh:
        fh.write('{"kind": "alias-chan')  # a crash in the middle of a write
    world.ledger.append(ENV, "approval", gate="x", approver="y", release="v1.1.0")  # the next append repairs it
    torn = len(path.read_text().splitlines()) - 1
    monkeypatch.setattr(cli_release, "_ports", lambda _app, _env: world.ports)
    env = {"COLUMNS": "200", "NO_COLOR": "1"}
    warning = f"line {torn} is not a whole record"
    for command in (["status"], ["history"]):
        result = CliRunner().invoke(app, [*command, "--env", ENV, "--ledger-dir", str(world.ledger.root)], env=env)
        assert result.exit_code == 0, result.output
        assert warning in result.stderr, (command, result.stderr)
    result = CliRunner().invoke(app, ["status", "--env", ENV, "--json", "--ledger-dir", str(world.ledger.root)],
                                env=env)
    assert any(warning in w for w in json.loads(result.stdout)["ledger_warnings"])


def test_interrupts_during_the_pre_traffic_gate_end_the_run_with_nothing_moved(world):  # noqa: F811
    # GIVEN three interrupts arriving while the new version answers the gate's requests
    answer = world.invoker.invoke

    def slow(version, event):
        if len(world.invoker.calls) == 2:
            _signals(3, 0.003)
            time.sleep(0.5)
        return answer(version, event)

    world.invoker.invoke = slow
    late = []
    previous = signal.signal(signal.SIGINT, lambda *_: late.append(1))  # any arriving after the run ended
    try:
        with pytest.raises(Interrupted) as info:
            release.deploy(world.settings, world.ports)
        time.sleep(0.05)
    finally:
        signal.signal(signal.SIGINT, previous)
    # THEN no traffic moved, the exit is 1 (nothing changed for users; 130 is for --on-interrupt hold), on record
    assert info.value.exit_code == 1
    assert world.router.sets == []
    end = _complete(world.ledger)
    assert end["outcome"] == "aborted" and "before any traffic moved" in end["reason"]


@pytest.mark.parametrize("on_interrupt", ["hold", "rollback"])
def test_an_interrupt_while_an_alias_change_is_recorded_does_not_lose_the_record(world, on_interrupt):  # noqa: F811
    # GIVEN Ctrl-C delivered while the 10 % change, applied, is being written to the ledger
    append = world.ledger.append

    def append_interrupted(env, kind, **data):
        if kind == "alias-change" and data.get("step") == 10:
            os.kill(os.getpid(), signal.SIGINT)  # delivered at once, in the middle of the bookkeeping
            time.sleep(0.01)
        return append(env, kind, **data)

    world.ledger.append = append_interrupted
    with pytest.raises(Interrupted):
        release.deploy(replace(world.settings, on_interrupt=on_interrupt), world.ports)
    # THEN the change is on record once, and the run ended where the alias is
    changes = kinds(world.ledger, "alias-change")
    assert [c["step"] for c in changes].count(10) == 1
    end = _complete(world.ledger)
    if on_interrupt == "hold":
        assert end["outcome"] == "interrupted-hold"
        assert changes[-1]["after"]["weights"] == {"2": 0.1} == world.router.read().weights
    else:
        assert end["outcome"] == "rolled-back"
        assert changes[-1]["step"] == "rollback" and world.router.read().weights == {}


# -- a run killed between an alias change and its record ------------------------------------------------------------
class _Killed(BaseException):
    """The process dies (kill -9) at this point: nothing after it runs."""


def _killed_before_recording_the_10_percent_change(world):  # noqa: F811
    append = world.ledger.append

    def append_or_die(env, kind, **data):
        if kind == "alias-change" and data.get("step") == 10:
            world.ledger.append = append
            raise _Killed
        return append(env, kind, **data)

    world.ledger.append = append_or_die
    with pytest.raises(_Killed):
        release.deploy(world.settings, world.ports)
    assert world.router.read().weights == {"2": 0.1}  # applied, never recorded


@pytest.mark.parametrize("then", ["resume", "abort"])
def test_a_change_applied_but_never_recorded_is_settled_by_resume_or_abort(world, then):  # noqa: F811
    _killed_before_recording_the_10_percent_change(world)
    if then == "resume":
        record = release.deploy(replace(world.settings, resume=True), world.ports)
        assert record.outcome == "succeeded" and world.router.read().version == "2"
    else:
        record = release.abort(world.plan, ENV, world.ports)
        assert record.outcome == "aborted" and world.router.read().version == "1"
    intents = kinds(world.ledger, "alias-intent")
    outcomes = [r for r in world.ledger.records(ENV) if r["kind"] in ("alias-change", "alias-failed")]
    assert sorted(str(i["step"]) for i in intents) == sorted(str(o["step"]) for o in outcomes)
    first = outcomes[0]
    assert first["step"] == 10 and first["kind"] == "alias-change" and "found applied" in first["settled"]
