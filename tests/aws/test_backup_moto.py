"""The backup step against moto in-process: PITR checked, CreateBackup waited for, the function snapshot saved."""

from __future__ import annotations

import boto3

from promoter.adapters.aws import AwsSessionFactory
from promoter.engine.backup import BackupStep, refuse_without_backup
from promoter.engine.ledger import Ledger
from promoter.engine.pipeline import ArtifactRef, PromoteSettings, StepContext

SHA = "d" * 64


def _ctx(plan, tmp_path, env="prod"):
    phase = plan.phase("prod-promotion")
    step = next(s for s in phase.steps if s.action == "backup")
    return StepContext(plan=plan, phase=phase, step=step, env=env, pipeline_id="p1",
                       artifact=ArtifactRef("v1.1.0", SHA, str(tmp_path / "a.zip")), inputs={}, state={},
                       ledger=Ledger(tmp_path / "home"), started_by="me",
                       settings=PromoteSettings(plan=plan, env=env))


def test_backup_records_the_arn_pitr_and_snapshot_and_lets_prod_shift(plan, account, tmp_path):
    account("prod")
    region = plan.environment("prod").region
    ctx = _ctx(plan, tmp_path)
    outcome = BackupStep(lambda _e: AwsSessionFactory(region=region)).run(ctx)

    assert outcome.status == "passed", outcome.detail
    arn = outcome.outputs["table_backup_arn"]
    backups = boto3.client("dynamodb", region_name=region).list_backups(TableName=plan.names("prod").table)
    assert [b["BackupArn"] for b in backups["BackupSummaries"]] == [arn]
    assert outcome.outputs["pitr_ok"] is True
    assert outcome.outputs["snapshot"]["function"] == plan.names("prod").function
    snapshot = outcome.files["pre-deployment-snapshot.json"]
    assert snapshot["Configuration"]["FunctionName"] == plan.names("prod").function
    assert "Location" not in snapshot.get("Code", {})  # the pre-signed URL is not kept
    records = ctx.ledger.records("prod", kind="backup")
    assert records[0]["table_backup_arn"] == arn and records[0]["artifact_sha256"] == SHA
    refuse_without_backup(plan, "prod", SHA, records)  # complete: no refusal


def test_backup_fails_in_prod_when_pitr_is_off(plan, account, tmp_path):
    account("prod")
    region = plan.environment("prod").region
    boto3.client("dynamodb", region_name=region).update_continuous_backups(
        TableName=plan.names("prod").table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False})
    ctx = _ctx(plan, tmp_path)
    outcome = BackupStep(lambda _e: AwsSessionFactory(region=region)).run(ctx)
    assert outcome.status == "failed" and "point-in-time recovery is DISABLED" in outcome.detail
    assert ctx.ledger.records("prod", kind="backup") == []
    assert boto3.client("dynamodb", region_name=region).list_backups()["BackupSummaries"] == []
