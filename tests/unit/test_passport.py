"""The artifact passport and the data-safety guard, decided on plain ledger records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from promoter.engine.backup import backup_problems, pitr_problem, refuse_without_backup
from promoter.engine.ledger import Ledger
from promoter.engine.passport import admit, proof_problems
from promoter.errors import RefusedError
from promoter.plan import load_plan

PLAN = load_plan(Path(__file__).resolve().parents[2] / "plans" / "PROM-CAMP-001.yaml")
PASSPORT = PLAN.environment("prod").passport
SHA = "a" * 64
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def ts(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sit_records(sha: str = SHA, *, smoke_ok: bool = True, validation: tuple[str, ...] | None = None,
                rollback_at: float | None = None) -> list[dict]:
    steps = validation if validation is not None else tuple(s.id for s in PLAN.phase("sit-validation").steps)
    records = [
        {"kind": "run-start", "ts": ts(0), "run_id": "r1", "kind_of_run": "deploy", "artifact": {"sha256": sha},
         "steps": [{"weight": 10}, {"weight": 50}, {"weight": 100}]},
        {"kind": "alias-change", "ts": ts(1), "run_id": "r1", "after": {"version": "2", "weights": {"2": 0.1}}},
        {"kind": "alias-change", "ts": ts(2), "run_id": "r1", "after": {"version": "2", "weights": {}}},
        {"kind": "run-end", "ts": ts(2), "run_id": "r1", "outcome": "succeeded"},
        {"kind": "smoke", "ts": ts(3), "ok": smoke_ok, "artifact_sha256": sha},
    ]
    records += [{"kind": "pipeline-step", "ts": ts(4), "phase": "sit-validation", "step": s, "status": "passed",
                 "inputs": {"artifact_sha256": sha}} for s in steps]
    if rollback_at is not None:
        records.append({"kind": "run-start", "ts": ts(rollback_at), "run_id": "r2", "kind_of_run": "rollback"})
        records.append({"kind": "alias-change", "ts": ts(rollback_at), "run_id": "r2",
                        "after": {"version": "1", "weights": {}}})
    return records


def test_a_fully_proven_artifact_passes():
    proof = proof_problems(sit_records(), plan=PLAN, passport=PASSPORT, sha=SHA, now=T0 + timedelta(minutes=90))
    assert proof.proven and proof.version == "2" and proof.soak_minutes == 88


@pytest.mark.parametrize("records, now, missing", [
    (sit_records("b" * 64), 90, "no canary deploy of aaaaaaaaaaaa to 100 % in sit"),
    (sit_records(smoke_ok=False), 90, "no passed smoke run"),
    (sit_records(validation=("integration", "load")), 90, "sit-validation steps not passed for aaaaaaaaaaaa in sit: "
                                                          "security, signoff"),
    (sit_records(), 30, "soaked 28 minutes in sit at 100 %, the plan asks for 60"),
    (sit_records(rollback_at=20), 90, "rolled back in sit during the soak"),
])
def test_each_missing_proof_is_named(records, now, missing):
    proof = proof_problems(records, plan=PLAN, passport=PASSPORT, sha=SHA, now=T0 + timedelta(minutes=now))
    assert not proof.proven
    assert any(missing in p for p in proof.problems), proof.problems


def test_prod_refuses_an_unproven_artifact_and_refuses_the_override(tmp_path):
    ledger = Ledger(tmp_path)
    with pytest.raises(RefusedError, match="prod accepts only an artifact sit proved") as err:
        admit(PLAN, "prod", SHA, "v1.1.0", ledger)
    assert "no canary deploy" in err.value.message and "nothing was changed" in err.value.hint
    with pytest.raises(RefusedError, match="--allow-unproven is refused in prod"):
        admit(PLAN, "prod", SHA, "v1.1.0", ledger, allow_unproven=True)
    assert ledger.records("prod") == []  # nothing recorded, nothing changed
    assert admit(PLAN, "sit", SHA, "v1.1.0", ledger) is None  # sit has no passport


def test_the_override_is_recorded_where_the_plan_allows_it(tmp_path):
    prod = PLAN.environment("prod")
    lenient = PLAN.model_copy(update={"environments": {**PLAN.environments, "prod": prod.model_copy(
        update={"passport": prod.passport.model_copy(update={"allow_unproven": True})})}})
    ledger = Ledger(tmp_path)
    result = admit(lenient, "prod", SHA, "v1.1.0", ledger, allow_unproven=True)
    assert result["passport"].startswith("overridden")
    assert ledger.records("prod", kind="passport-override")[0]["problems"]


def test_pitr_must_be_on_and_recent():
    now = T0
    on = {"ContinuousBackupsDescription": {"PointInTimeRecoveryDescription": {
        "PointInTimeRecoveryStatus": "ENABLED", "LatestRestorableDateTime": T0 - timedelta(minutes=2)}}}
    assert pitr_problem(on, now, 15) is None
    stale = {"ContinuousBackupsDescription": {"PointInTimeRecoveryDescription": {
        "PointInTimeRecoveryStatus": "ENABLED", "LatestRestorableDateTime": T0 - timedelta(minutes=40)}}}
    assert "40 minutes old" in pitr_problem(stale, now, 15)
    off = {"ContinuousBackupsDescription": {"PointInTimeRecoveryDescription": {
        "PointInTimeRecoveryStatus": "DISABLED"}}}
    assert "DISABLED" in pitr_problem(off, now, 15)


def test_traffic_does_not_shift_in_prod_without_a_complete_recent_backup():
    good = {"ts": ts(0), "artifact_sha256": SHA, "table_backup_arn": "arn:backup", "pitr_ok": True,
            "snapshot": {"version": "1"}}
    assert backup_problems([good], artifact_sha256=SHA, now=T0 + timedelta(minutes=5), max_age_minutes=240) == []
    assert "no backup record" in backup_problems([good], artifact_sha256="b" * 64, now=T0, max_age_minutes=240)[0]
    partial = {**good, "table_backup_arn": None, "snapshot": None}
    assert backup_problems([partial], artifact_sha256=SHA, now=T0, max_age_minutes=240) == [
        "no on-demand table backup ARN", "no pre-deployment function snapshot"]
    old = backup_problems([good], artifact_sha256=SHA, now=T0 + timedelta(hours=5), max_age_minutes=240)
    assert old == ["the backup is 300 minutes old (at most 240)"]
    with pytest.raises(RefusedError, match="prod refuses to shift traffic without data safety"):
        refuse_without_backup(PLAN, "prod", SHA, [])
    refuse_without_backup(PLAN, "sit", SHA, [])  # sit does not require it
