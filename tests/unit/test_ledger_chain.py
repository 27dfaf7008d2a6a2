"""The hash chain on the local store: appends link records, ``verify`` names an edited or deleted one."""

from __future__ import annotations

import json

from promoter.engine.ledger import Ledger


def _ledger_with_three(tmp_path) -> Ledger:
    ledger = Ledger(tmp_path)
    ledger.append("sit", "run-start", run_id="r1", release="v1.1.0")
    ledger.append("sit", "approval", gate="sit-signoff", approver="ana")
    ledger.append("sit", "run-end", run_id="r1", outcome="succeeded")
    return ledger


def test_records_are_chained_and_verify(tmp_path):
    ledger = _ledger_with_three(tmp_path)
    records = ledger.records("sit")
    assert [r["seq"] for r in records] == [1, 2, 3]
    assert records[0]["prev"] is None
    assert records[1]["prev"] == records[0]["hash"] and records[2]["prev"] == records[1]["hash"]
    report = ledger.verify("sit")
    assert report.ok and report.records == 3 and report.problems == []


def test_verify_names_an_edited_record(tmp_path):
    ledger = _ledger_with_three(tmp_path)
    path = ledger.path("sit")
    lines = path.read_text().splitlines()
    edited = json.loads(lines[1])
    edited["approver"] = "mallory"
    lines[1] = json.dumps(edited, sort_keys=True)
    path.write_text("\n".join(lines) + "\n")

    report = Ledger(tmp_path).verify("sit")
    assert not report.ok
    assert len(report.problems) == 1 and "line 2" in report.problems[0] and "edited" in report.problems[0]


def test_verify_names_a_deleted_record(tmp_path):
    ledger = _ledger_with_three(tmp_path)
    path = ledger.path("sit")
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[2]]) + "\n")

    report = Ledger(tmp_path).verify("sit")
    assert not report.ok
    assert "seq 3" in report.problems[0] and "records 2..2 deleted" in report.problems[0]


def test_an_edit_that_recomputes_the_hash_still_breaks_the_link(tmp_path):
    from promoter.engine.state import record_hash

    ledger = _ledger_with_three(tmp_path)
    path = ledger.path("sit")
    lines = path.read_text().splitlines()
    edited = json.loads(lines[1])
    edited["approver"] = "mallory"
    edited["hash"] = record_hash(edited)
    lines[1] = json.dumps(edited, sort_keys=True)
    path.write_text("\n".join(lines) + "\n")

    problems = Ledger(tmp_path).verify("sit").problems
    assert problems and "line 3" in problems[0] and "does not link" in problems[0]


def test_chain_continues_past_a_torn_line_and_after_legacy_records(tmp_path):
    path = tmp_path / "ledger" / "sit.jsonl"
    path.parent.mkdir(parents=True)
    legacy = {"ts": "2026-01-01T00:00:00.000Z", "env": "sit", "kind": "run-start", "run_id": "old"}
    path.write_text(json.dumps(legacy) + "\n" + '{"ts": "2026-01-01T00:00:01')  # a torn last line
    ledger = Ledger(tmp_path)
    ledger.append("sit", "run-end", run_id="old", outcome="succeeded")
    report = ledger.verify("sit")
    assert report.ok and report.unchained == 1 and report.records == 2
    assert report.unreadable == [f"{path}: line 2"]
    assert ledger.records("sit")[-1]["seq"] == 1
