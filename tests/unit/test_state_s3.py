"""The S3 state store on ``InMemoryS3``: ordered appends under racing writers, the lock with its lease.

Each "machine" is its own ``Ledger`` with its own ``S3StateStore`` (own caches) over one fake bucket.
"""

from __future__ import annotations

import contextlib
import json
import threading

import pytest

from promoter.adapters.state_s3 import S3StateStore, parse_s3_url
from promoter.engine.ledger import Ledger
from promoter.engine.state import StateUnavailable
from promoter.errors import LockHeld, RefusedError
from tests.unit.inmemory_s3 import InMemoryS3

BUCKET = "team-state"


class Wall:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def machine(s3: InMemoryS3, tmp_path, name: str, **kw) -> Ledger:
    store = S3StateStore(client=s3, bucket=BUCKET, prefix="promoter", caller_arn=lambda: f"arn:aws:iam::1:user/{name}")
    return Ledger(tmp_path / name, store=store, **kw)


def _race(s3: InMemoryS3, tmp_path, writers: int = 4, each: int = 25) -> list[dict]:
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(w: int) -> None:
        ledger = machine(s3, tmp_path, f"m{w}")
        barrier.wait()
        try:
            for i in range(each):
                ledger.append("sit", "step", worker=w, i=i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return machine(s3, tmp_path, "reader").records("sit")


def test_racing_writers_lose_nothing_and_keep_each_writers_order(tmp_path):
    s3 = InMemoryS3(latency=0.002, page_size=7)  # small pages: the reader must follow continuation tokens
    records = _race(s3, tmp_path)
    assert len(records) == 100
    assert [r["seq"] for r in records] == list(range(1, 101))
    for w in range(4):
        assert [r["i"] for r in records if r["worker"] == w] == list(range(25))
    report = machine(s3, tmp_path, "auditor").verify("sit")
    assert report.ok and report.records == 100


def test_the_same_race_without_conditional_writes_loses_records(tmp_path):
    # The control for the test above: when the store does not refuse a write to a key that exists (a naive
    # read-modify-write), writers overwrite each other and records are lost. The race above would fail then.
    s3 = InMemoryS3(latency=0.002, honour_conditions=False)
    records = _race(s3, tmp_path)
    assert len(records) < 100


def test_records_are_one_object_each_under_ordered_keys(tmp_path):
    s3 = InMemoryS3()
    ledger = machine(s3, tmp_path, "a")
    ledger.append("sit", "run-start", run_id="r1")
    ledger.append("sit", "run-end", run_id="r1", outcome="succeeded")
    keys = sorted(k for (_, k) in s3.objects)
    assert keys == ["promoter/ledger/sit/000000000001.json", "promoter/ledger/sit/000000000002.json"]
    assert json.loads(s3.objects[(BUCKET, keys[1])][0])["prev"] == ledger.records("sit")[0]["hash"]


def test_verify_names_an_edited_and_a_deleted_object(tmp_path):
    s3 = InMemoryS3()
    ledger = machine(s3, tmp_path, "a")
    for i in range(4):
        ledger.append("sit", "approval", gate="g", approver=f"p{i}")
    key2 = "promoter/ledger/sit/000000000002.json"
    body = json.loads(s3.objects[(BUCKET, key2)][0])
    s3.put_object(Bucket=BUCKET, Key=key2, Body=json.dumps({**body, "approver": "mallory"}).encode())
    s3.delete_object(Bucket=BUCKET, Key="promoter/ledger/sit/000000000003.json")
    problems = machine(s3, tmp_path, "auditor").verify("sit").problems
    assert any(key2 in p and "edited" in p for p in problems)
    assert any("000000000004.json" in p and "records 3..3 deleted" in p for p in problems)
    # the bucket's versions say the same, first hand
    assert any(key2 in p and "written 2 times" in p for p in problems)
    assert any("000000000003.json: deleted" in p for p in problems)


def test_verify_catches_the_deletion_of_the_last_record_from_the_versions(tmp_path):
    # the chain alone cannot see a record missing at its end; the delete marker can
    s3 = InMemoryS3()
    ledger = machine(s3, tmp_path, "a")
    for i in range(3):
        ledger.append("sit", "approval", gate="g", approver=f"p{i}")
    assert ledger.verify("sit").ok
    s3.delete_object(Bucket=BUCKET, Key="promoter/ledger/sit/000000000003.json")
    report = machine(s3, tmp_path, "auditor").verify("sit")
    assert report.problems == [f"s3://{BUCKET}/promoter/ledger/sit/000000000003.json: deleted (a delete marker "
                               "hides it; its versions are kept)"]


def test_lock_contention_between_machines_names_the_holder(tmp_path):
    s3 = InMemoryS3()
    a, b = machine(s3, tmp_path, "a"), machine(s3, tmp_path, "b")
    with a.lock("sit", purpose="deploy", run_id="run-a"):
        holder = b.lock_holder("sit")
        assert holder["run_id"] == "run-a" and holder["caller"] == "arn:aws:iam::1:user/a"
        assert holder["stale"] is False
        with pytest.raises(LockHeld), b.lock("sit", purpose="rollback", wait_seconds=3, clock=FakeClock()):
            pass
    assert b.lock_holder("sit") is None
    with b.lock("sit", purpose="rollback"):
        assert a.lock_holder("sit")["purpose"] == "rollback"


def test_only_one_of_many_racing_lockers_wins(tmp_path):
    s3 = InMemoryS3(latency=0.002)
    barrier = threading.Barrier(8)
    winners: list[int] = []
    release = threading.Event()

    def take(n: int) -> None:
        ledger = machine(s3, tmp_path, f"m{n}")
        barrier.wait()
        try:
            with ledger.lock("sit", purpose="deploy"):
                winners.append(n)
                release.wait(5)
        except LockHeld:
            pass

    threads = [threading.Thread(target=take, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    threading.Event().wait(0.5)
    release.set()
    for t in threads:
        t.join(10)
    assert len(winners) == 1


def test_an_expired_lease_is_stale_and_breakable_but_a_current_one_is_not(tmp_path):
    s3 = InMemoryS3()
    wall = Wall()
    a = machine(s3, tmp_path, "a", wall=wall, lease_seconds=30)
    b = machine(s3, tmp_path, "b", wall=wall, lease_seconds=30)
    body = {"who": "ci@runner-7", "host": "runner-7", "pid": 4242, "run_id": "run-ci", "token": "t",
            "lease_until": wall() + 30, "purpose": "deploy"}
    s3.put_object(Bucket=BUCKET, Key="promoter/locks/sit.json", Body=json.dumps(body).encode())
    with pytest.raises(RefusedError, match="still running"):
        b.break_lock("sit")  # another host, lease current: it may be alive
    wall.t += 31
    assert a.lock_holder("sit")["stale"] is True
    with pytest.raises(LockHeld), a.lock("sit", purpose="deploy"):  # never taken over silently
        pass
    broken = b.break_lock("sit")
    assert broken["run_id"] == "run-ci" and broken["lease_expired"] is True
    (record,) = b.records("sit", kind="lock-broken")
    assert record["holder"]["who"] == "ci@runner-7" and record["forced"] is False
    assert a.lock_holder("sit") is None


def test_the_lease_is_renewed_while_the_lock_is_held(tmp_path):
    s3 = InMemoryS3()
    wall = Wall()
    a = machine(s3, tmp_path, "a", wall=wall, lease_seconds=0.3)
    with a.lock("sit", purpose="deploy") as holder:
        first = a.lock_holder("sit")["lease_until"]
        wall.t += 100
        threading.Event().wait(0.5)  # the renewer runs every 0.1 s
        renewed = a.lock_holder("sit")
        assert renewed["lease_until"] > first and renewed["stale"] is False
        assert a.holds("sit", holder["token"])
    assert a.lock_holder("sit") is None


def test_a_broken_lock_is_no_longer_held_and_its_release_leaves_the_next_holder(tmp_path):
    s3 = InMemoryS3()
    a, b = machine(s3, tmp_path, "a"), machine(s3, tmp_path, "b")
    with contextlib.ExitStack() as a_stack, contextlib.ExitStack() as b_stack:
        holder = a_stack.enter_context(a.lock("sit", purpose="deploy"))
        b.break_lock("sit", force=True)
        assert not a.holds("sit", holder["token"])
        newer = b_stack.enter_context(b.lock("sit", purpose="abort"))
        a_stack.close()  # a's run ends: its release is conditional on its own ETag
        assert b.holds("sit", newer["token"]) and a.lock_holder("sit")["purpose"] == "abort"
    assert a.lock_holder("sit") is None


def test_store_unreachable_refuses_the_append(tmp_path):
    s3 = InMemoryS3()
    ledger = machine(s3, tmp_path, "a")
    ledger.append("sit", "run-start", run_id="r1")
    s3.down = True
    with pytest.raises(StateUnavailable, match="could not"):
        ledger.append("sit", "alias-intent", run_id="r1")
    s3.down = False
    assert [r["kind"] for r in ledger.records("sit")] == ["run-start"]


def test_parse_s3_url():
    assert parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b")
    assert parse_s3_url("s3://bucket") == ("bucket", "")
