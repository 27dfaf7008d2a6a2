"""The ledger: append-only records safe against concurrent writers and torn writes; the environment lock."""

from __future__ import annotations

import json
import multiprocessing
import os

import pytest

from promoter.engine.ledger import Ledger
from promoter.errors import LockHeld


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def _writer(root: str, worker: int, count: int) -> None:
    ledger = Ledger(root)
    for i in range(count):
        ledger.append("sit", "step", worker=worker, i=i, payload="x" * 2000)


def test_append_and_read_back_in_order(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.append("sit", "run-start", run_id="r1", release="v1.1.0")
    ledger.append("sit", "alias-change", run_id="r1", before={"version": "1"}, after={"version": "2"})
    ledger.append("sit", "run-end", run_id="r1", outcome="succeeded")
    ledger.append("prod", "run-start", run_id="r2")

    records = ledger.records("sit")
    assert [r["kind"] for r in records] == ["run-start", "alias-change", "run-end"]
    assert all(r["env"] == "sit" and r["ts"].endswith("Z") for r in records)
    (run,) = ledger.runs("sit")
    assert run["outcome"] == "succeeded" and run["release"] == "v1.1.0" and run["last_alias"] == {"version": "2"}
    assert ledger.records("sit", kind="alias-change")[0]["after"] == {"version": "2"}


def test_concurrent_processes_never_interleave(tmp_path):
    # GIVEN four processes appending 50 large records each to the same environment
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 50)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    # THEN every line is a whole JSON record and none is lost
    lines = Ledger(tmp_path).path("sit").read_text().splitlines()
    assert len(lines) == 200
    parsed = [json.loads(line) for line in lines]
    for w in range(4):
        assert sorted(r["i"] for r in parsed if r["worker"] == w) == list(range(50))
    # and each was chained to the one written before it, whichever process wrote that
    assert [r["seq"] for r in parsed] == list(range(1, 201))
    assert Ledger(tmp_path).verify("sit").ok


def test_torn_last_line_is_skipped_and_repaired(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.append("sit", "run-start", run_id="r1")
    # a crash mid-write leaves half a record without its newline
    with ledger.path("sit").open("a") as fh:
        fh.write('{"kind": "alias-chan')
    ledger.append("sit", "run-end", run_id="r1", outcome="interrupted-hold")

    reader = Ledger(tmp_path)
    kinds = [r["kind"] for r in reader.records("sit")]
    assert kinds == ["run-start", "run-end"]
    assert len(reader.torn_lines) == 1


def test_lock_refuses_second_holder_and_names_the_first(tmp_path):
    ledger = Ledger(tmp_path)
    with ledger.lock("prod", purpose="deploy v1.1.0", run_id="r1"):
        with pytest.raises(LockHeld) as info, Ledger(tmp_path).lock("prod", purpose="deploy v1.2.0"):
            pass
        assert "locked by" in str(info.value) and "since" in str(info.value)
        assert info.value.holder["purpose"] == "deploy v1.1.0"
        assert ledger.lock_holder("prod")["stale"] is False
    assert ledger.lock_holder("prod") is None


def test_lock_waits_with_a_deadline(tmp_path):
    ledger = Ledger(tmp_path)
    clock = FakeClock()
    with ledger.lock("sit", purpose="a"), pytest.raises(LockHeld), ledger.lock(
        "sit", purpose="b", wait_seconds=5, clock=clock
    ):
        pass
    assert 5 <= clock.t < 7


def test_stale_lock_is_reported_and_only_broken_explicitly(tmp_path):
    ledger = Ledger(tmp_path)
    path = ledger.lock_path("sit")
    path.parent.mkdir(parents=True)
    dead = multiprocessing.get_context("fork").Process(target=os.getpid)
    dead.start()
    dead.join()
    path.write_text(json.dumps({"who": "ci@runner", "pid": dead.pid, "host": os.uname().nodename, "since": "x"}))

    assert ledger.lock_holder("sit")["stale"] is True
    with pytest.raises(LockHeld), ledger.lock("sit", purpose="deploy"):
        pass
    broken = ledger.break_lock("sit")
    assert broken["who"] == "ci@runner"
    assert ledger.records("sit", kind="lock-broken")[0]["holder"]["pid"] == dead.pid
    with ledger.lock("sit", purpose="deploy"):
        assert ledger.lock_holder("sit")["purpose"] == "deploy"
