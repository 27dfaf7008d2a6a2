"""Replay: a past run's recorded observations judged again with other thresholds, offline, by canary.judge."""

from __future__ import annotations

import pytest
import test_release_unit

from promoter.engine import release
from promoter.engine.replay import Analysis, highest_canary_error_pct, parse_overrides, replay_last, replay_records
from promoter.errors import RefusedError, ReleaseFailed, UsageError

ENV = "sit"
world = test_release_unit.world  # the in-memory release world (a fixture)


def _faulty_run(world) -> str:
    world.metrics.canary_error_rate = 0.3
    with pytest.raises(ReleaseFailed):
        release.deploy(world.settings, world.ports)
    return world.ledger.runs(ENV)[-1]["run_id"]


def _good_run(world) -> str:
    world.metrics.canary_error_rate = 0.0
    release.deploy(world.settings, world.ports)
    return world.ledger.runs(ENV)[-1]["run_id"]


def test_the_same_thresholds_reach_the_same_decisions(world):
    run_id = _faulty_run(world)
    replay = replay_records(world.ledger.records(ENV), run_id, ENV, {})
    assert replay.rolled_back and replay.would_roll_back and replay.comparison == "same"
    assert [i.replayed for i in replay.intervals] == [i.recorded for i in replay.intervals]
    assert replay.intervals[-1].recorded == "rollback"


def test_a_looser_threshold_would_not_have_rolled_back_the_faulty_canary(world):
    run_id = _faulty_run(world)
    replay = replay_records(world.ledger.records(ENV), run_id, ENV, parse_overrides(["error_rate_pct=40"]))
    assert replay.rolled_back and not replay.would_roll_back
    assert replay.comparison == "never"
    assert "would not have rolled back" in replay.text()
    assert replay.intervals[-1].replayed in {"wait", "advance"}


def test_a_threshold_under_an_early_windows_rate_can_still_roll_back_and_one_above_the_highest_cannot(world):
    # GIVEN the faulty run, its first window as a 30 % fault can show early: 3 errors in 5, against 0 in 45
    import copy

    run_id = _faulty_run(world)
    records = copy.deepcopy(world.ledger.records(ENV))
    first = next(r for r in records if r.get("run_id") == run_id and r.get("kind") == "verdict")
    first["observation"]["canary"].update(invocations=5, errors=3, server_errors=0)
    first["observation"]["stable"].update(invocations=45, errors=0, server_errors=0)
    # WHEN judged again at 50 % THEN 60 % on that sample is evidence enough: it fails there, earlier than recorded
    at_50 = replay_records(records, run_id, ENV, parse_overrides(["error_rate_pct=50"]))
    assert at_50.would_roll_back and at_50.replayed_stop == 0 and at_50.intervals[0].replayed_outcome == "fail"
    # WHEN judged above the highest rate any window showed THEN no window can fail on errors
    highest = highest_canary_error_pct(records, run_id)
    assert highest == 60.0
    above = replay_records(records, run_id, ENV, parse_overrides([f"error_rate_pct={highest + 1:g}"]))
    assert above.rolled_back and not above.would_roll_back and above.comparison == "never"
    assert highest_canary_error_pct(records, "no-such-run") is None


def test_a_stricter_threshold_would_have_rolled_back_a_good_run_and_last_counts_it(world):
    # GIVEN a good run whose canary answered every request in 100 ms, and a faulty one
    good = _good_run(world)
    world.router.someone_else_sets("1")  # back on the first version for the second deploy
    world.invoker.deleted = False  # the scripted service forgets the first gate's deleted campaign
    _faulty_run(world)
    strict = parse_overrides(["p95_duration_ms=50"], min_invocations=5)
    replay = replay_records(world.ledger.records(ENV), good, ENV, strict)
    assert not replay.rolled_back and replay.would_roll_back and replay.comparison == "earlier"
    assert replay.intervals[replay.replayed_stop].replayed_outcome == "fail"
    assert all(i.replayed is None for i in replay.intervals[replay.replayed_stop + 1:])  # never reached
    totals = replay_last(world.ledger, ENV, 5, strict)
    assert totals["replayed"] == 2 and totals["added"] == 1 and totals["avoided"] == 0
    looser = replay_last(world.ledger, ENV, 5, parse_overrides(["error_rate_pct=40"]))
    assert looser["rolled_back"] == 1 and looser["avoided"] == 1 and looser["added"] == 0


def test_overrides_are_checked():
    assert parse_overrides(["compare_to_stable=false", "dlq_messages=3"]) == {"compare_to_stable": False,
                                                                             "dlq_messages": 3}
    with pytest.raises(UsageError, match="NAME one of"):
        parse_overrides(["latency=3"])
    with pytest.raises(UsageError, match="not a"):
        parse_overrides(["error_rate_pct=high"])


def test_a_run_without_verdicts_is_refused(world):
    with pytest.raises(RefusedError):
        replay_records(world.ledger.records(ENV), "nope", ENV, {})


def test_a_rolled_back_canary_is_notified_with_its_numbers(world):
    sent = []

    class Recorder:
        def notify(self, event, text, **data):
            sent.append((event, text, data))

    world.ports.notifier = Recorder()
    _faulty_run(world)
    [(event, text, data)] = sent
    assert event == "rolled-back" and "rolled back to version 1" in text
    assert data["numbers"]["canary"]["server_errors"] > 0 and "errors" in data["line"]


def test_analysis_settings_replay_too(world):
    # GIVEN a good run judged on 20 invocations a verdict; WHEN it needed far more than it got
    good = _good_run(world)
    records = world.ledger.records(ENV)
    starved = parse_overrides([], min_invocations=100_000)
    waiting = replay_records(records, good, ENV, starved)
    # the replay would have extended the first bake where the run advanced: the data cannot say what came next
    assert waiting.comparison == "undecided" and not waiting.would_roll_back
    assert waiting.intervals[waiting.undecided_at].recorded == "advance"
    assert all(i.replayed is None for i in waiting.intervals[waiting.undecided_at + 1:])
    # WHEN no extension is allowed THEN on_inconclusive decides at the bake's end
    strict = replay_records(records, good, ENV, starved, Analysis(max_extension_seconds=0))
    assert strict.would_roll_back and "inconclusive" in strict.intervals[strict.replayed_stop].line
    lenient = replay_records(records, good, ENV, starved, Analysis(on_inconclusive="pass", max_extension_seconds=0))
    assert not lenient.would_roll_back and lenient.comparison == "same"
    assert lenient.overrides == {"min_invocations": 100_000, "on_inconclusive": "pass", "max_extension_seconds": 0}
