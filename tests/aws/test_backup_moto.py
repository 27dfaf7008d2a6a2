"""PROD's guards against moto in-process: the backup step (PITR checked, CreateBackup waited for, the function
snapshot saved), and deploy refusing an unproven artifact or a missing backup with nothing changed."""

from __future__ import annotations

from dataclasses import replace

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


def _prod_deploy(plan, tmp_path, ledger, **extra):
    import zipfile

    from promoter.engine import release

    path = tmp_path / "campaigns_lambda-v1.1.0-lambda.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("campaigns_lambda/__init__.py", "")
    region = plan.environment("prod").region
    ports = release.Ports.for_aws(AwsSessionFactory(region=region), plan, "prod", ledger)
    settings = release.DeploySettings(plan=plan, env="prod", release="v1.1.0", canary=True, artifact=path,
                                      allow_untagged=True, **extra)
    return ports, settings


def test_deploy_to_prod_refuses_an_unproven_artifact_and_changes_nothing(plan, account, tmp_path):
    import pytest

    from promoter.engine import release
    from promoter.errors import RefusedError

    account("prod")
    ledger = Ledger(tmp_path / "home")
    for gate in ("sit-signoff", "change-request"):
        ledger.append("prod", "approval", gate=gate, release="v1.1.0", approver="A")
    ports, settings = _prod_deploy(plan, tmp_path, ledger)
    versions = ports.functions.list_versions()
    for attempt in (settings, replace(settings, dry_run=True)):
        with pytest.raises(RefusedError, match="prod accepts only an artifact sit proved"):
            release.deploy(attempt, ports)
    with pytest.raises(RefusedError, match="--allow-unproven is refused in prod"):
        release.deploy(replace(settings, allow_unproven=True), ports)
    assert ports.functions.list_versions() == versions
    # nothing changed: beside the approvals, the ledger holds only the two refusals (a dry run writes nothing)
    records = ledger.records("prod")
    assert [r["kind"] for r in records] == ["approval", "approval", "refusal", "refusal"]
    assert all("prod accepts only an artifact sit proved" in r["reason"] or "--allow-unproven" in r["reason"]
               for r in records[2:])


def test_deploy_to_prod_refuses_to_shift_traffic_without_a_backup(plan, account, tmp_path):
    import pytest

    from promoter.engine import release
    from promoter.errors import RefusedError

    account("prod")
    prod = plan.environment("prod")
    no_passport = plan.model_copy(update={"environments": {**plan.environments, "prod": prod.model_copy(
        update={"passport": None})}})
    ledger = Ledger(tmp_path / "home")
    for gate in ("sit-signoff", "change-request"):
        ledger.append("prod", "approval", gate=gate, release="v1.1.0", approver="A")
    ports, settings = _prod_deploy(no_passport, tmp_path, ledger)
    versions = ports.functions.list_versions()
    with pytest.raises(RefusedError, match="without data safety on record: no backup record"):
        release.deploy(settings, ports)
    assert ports.functions.list_versions() == versions
    assert ledger.records("prod", kind="run-start") == []
