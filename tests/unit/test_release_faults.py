"""Fault paths of the release engine on in-memory ports: every fault ends in a known state and a complete record.

The ports and the ``world`` fixture are those of ``test_release_unit``; interrupts here are real signals sent to
this process, delivered by Python's own signal machinery.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from test_release_unit import ENV, kinds, world  # noqa: F401  (world is a fixture)

from promoter.engine import release
from promoter.errors import (
    Interrupted,
    ReleaseFailed,
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
    intents, changes = kinds(ledger, "alias-intent"), kinds(ledger, "alias-change")
    assert [i["step"] for i in intents] == [c["step"] for c in changes]
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
    assert end["interrupts"] >= 3
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
