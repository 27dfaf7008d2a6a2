"""The lock and the ledger when holders die, live holders are broken, or a record is torn."""

from __future__ import annotations

import json
import multiprocessing
import os

import pytest

from promoter.engine.ledger import Ledger
from promoter.errors import LockHeld, RefusedError


def _dead_pid() -> int:
    proc = multiprocessing.get_context("fork").Process(target=os.getpid)
    proc.start()
    proc.join()
    return proc.pid


def test_breaking_a_lock_whose_holder_is_alive_on_this_host_is_refused(tmp_path):
    ledger = Ledger(tmp_path)
    with ledger.lock("sit", purpose="deploy", run_id="r1") as holder:
        with pytest.raises(RefusedError, match=rf"pid {os.getpid()} .* is still running") as info:
            ledger.break_lock("sit")
        assert "--force" in info.value.hint
        assert ledger.lock_holder("sit")["token"] == holder["token"]  # untouched
        assert ledger.records("sit", kind="lock-broken") == []
        assert ledger.holds("sit", holder["token"])
        # --force breaks it, and says so in the ledger
        broken = ledger.break_lock("sit", force=True)
        assert broken["pid"] == os.getpid()
        assert not ledger.holds("sit", holder["token"])
    (record,) = ledger.records("sit", kind="lock-broken")
    assert record["forced"] is True and record["holder_alive"] is True and record["holder"]["run_id"] == "r1"


def test_a_lock_of_a_dead_holder_says_it_is_dead_and_names_the_unfinished_run(tmp_path):
    # GIVEN a deploy killed with -9 at 10 %: its run has no end and its lock names a dead pid on this host
    ledger = Ledger(tmp_path)
    ledger.append("sit", "run-start", run_id="r9", kind_of_run="deploy", stable_version="1")
    path = ledger.lock_path("sit")
    path.parent.mkdir(parents=True)
    pid = _dead_pid()
    path.write_text(json.dumps({"who": "ci@runner", "pid": pid, "host": os.uname().nodename, "since": "t0",
                                "purpose": "deploy", "run_id": "r9", "token": "x"}))
    # WHEN any command wants the lock
    with pytest.raises(LockHeld) as info, ledger.lock("sit", purpose="rollback"):
        pass
    # THEN it says the holder is dead, and what to do, naming the run
    message, hint = str(info.value), info.value.hint
    assert f"pid {pid}" in message and "no longer running" in message and "run r9" in message
    assert hint == ("promoter lock break --env sit, then continue the run with promoter deploy --env sit --resume "
                    "or roll it back with promoter abort --env sit")
    # and breaking it needs no --force
    assert ledger.break_lock("sit")["pid"] == pid
    assert ledger.records("sit", kind="lock-broken")[0]["forced"] is False


def test_torn_lines_are_reported_once_each(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.append("sit", "run-start", run_id="r1")
    with ledger.path("sit").open("a") as fh:
        fh.write('{"kind": "alias-chan')
    ledger.append("sit", "run-end", run_id="r1", outcome="succeeded")
    reader = Ledger(tmp_path)
    reader.records("sit")
    reader.runs("sit")
    assert reader.torn_lines == [(str(ledger.path("sit")), 2)]
    assert reader.warnings("sit") == [f"{ledger.path('sit')}: line 2 is not a whole record (a write was cut "
                                      "short, for example by a crash) and was skipped"]


def test_lock_break_command_refuses_a_live_holder_and_records_force(tmp_path):
    from typer.testing import CliRunner

    from promoter.cli.app import app

    ledger = Ledger(tmp_path)
    env = {"COLUMNS": "120", "NO_COLOR": "1"}
    with ledger.lock("sit", purpose="deploy", run_id="r1"):
        result = CliRunner().invoke(app, ["lock", "break", "--env", "sit", "--ledger-dir", str(tmp_path)], env=env)
        assert result.exit_code == 1 and "still running" in result.output and "--force" in result.output
        assert ledger.lock_holder("sit") is not None
        result = CliRunner().invoke(app, ["lock", "break", "--env", "sit", "--force", "--ledger-dir", str(tmp_path)],
                                    env=env)
        assert result.exit_code == 0, result.output
        assert ledger.lock_holder("sit") is None
    assert ledger.records("sit", kind="lock-broken")[0]["forced"] is True


def test_waiting_for_a_dead_holders_lock_is_not_attempted(tmp_path):
    class Clock:
        t = 0.0

        def now(self):
            return self.t

        def sleep(self, seconds):
            self.t += seconds

    ledger = Ledger(tmp_path)
    path = ledger.lock_path("sit")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"who": "ci", "pid": _dead_pid(), "host": os.uname().nodename, "since": "t0"}))
    clock = Clock()
    with pytest.raises(LockHeld, match="no longer running"), ledger.lock("sit", purpose="deploy", wait_seconds=300,
                                                                         clock=clock):
        pass
    assert clock.t == 0  # it would never be released: refused at once
