"""Data safety before traffic moves: the runbook's "Data Migration" and "Create deployment snapshot".

Stages of :class:`BackupStep` (``action: backup``):

1. **PITR**: point-in-time recovery of the table must be on and its latest restorable time recent (the plan's
   ``data_safety.max_pitr_lag_minutes``) where the plan requires PITR or backups;
2. **backup**: an on-demand ``CreateBackup`` of the table, waited for (with a clock and a deadline) until it is
   ``AVAILABLE``; its ARN is recorded;
3. **snapshot**: the function's configuration as ``GetFunction`` returns it for the alias (the runbook's
   ``pre-deployment-snapshot.json``), without the short-lived code download URL;
4. **record**: one ``backup`` record in the ledger, bound to the release and the artifact's sha256.

:func:`refuse_without_backup` is the guard ``deploy`` calls where the plan sets ``data_safety.require_backup``:
no traffic shifts without a complete, recent backup record for the artifact being deployed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from promoter.engine.ledger import Clock, SystemClock
from promoter.engine.pipeline import Probe, StepContext, StepOutcome
from promoter.errors import AwsError, RefusedError
from promoter.plan.models import Plan


def parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def pitr_problem(description: dict[str, Any], now: datetime, max_lag_minutes: float) -> str | None:
    """Why the table's point-in-time recovery is not good enough, or None (pure, on DescribeContinuousBackups)."""
    pitr = (description.get("ContinuousBackupsDescription") or {}).get("PointInTimeRecoveryDescription") or {}
    if pitr.get("PointInTimeRecoveryStatus") != "ENABLED":
        return f"point-in-time recovery is {pitr.get('PointInTimeRecoveryStatus') or 'not enabled'}"
    latest = pitr.get("LatestRestorableDateTime")
    if latest is None:
        return "point-in-time recovery reports no latest restorable time"
    lag = (now - parse_time(latest)).total_seconds() / 60
    if lag > max_lag_minutes:
        return f"the latest restorable time is {lag:.0f} minutes old (at most {max_lag_minutes:g} allowed)"
    return None


def backup_problems(records: Iterable[dict[str, Any]], *, artifact_sha256: str, now: datetime,
                    max_age_minutes: float) -> list[str]:
    """What is missing from the latest backup record for this artifact, or [] when it is complete (pure)."""
    ours = [r for r in records if r.get("artifact_sha256") == artifact_sha256]
    if not ours:
        return [f"no backup record for artifact {artifact_sha256[:12]} (table backup, PITR, function snapshot)"]
    last = ours[-1]
    problems = []
    if not last.get("table_backup_arn"):
        problems.append("no on-demand table backup ARN")
    if not last.get("pitr_ok"):
        problems.append(f"PITR not verified: {last.get('pitr_problem') or 'unknown'}")
    if not last.get("snapshot"):
        problems.append("no pre-deployment function snapshot")
    age = (now - parse_time(last["ts"])).total_seconds() / 60
    if age > max_age_minutes:
        problems.append(f"the backup is {age:.0f} minutes old (at most {max_age_minutes:g})")
    return problems


def refuse_without_backup(plan: Plan, env: str, artifact_sha256: str, records: Iterable[dict[str, Any]],
                          now: datetime | None = None) -> None:
    safety = plan.environment(env).data_safety
    if not safety.require_backup:
        return
    problems = backup_problems(records, artifact_sha256=artifact_sha256, now=now or datetime.now(UTC),
                               max_age_minutes=safety.max_backup_age_minutes)
    if problems:
        raise RefusedError(
            f"{env} refuses to shift traffic without data safety on record: " + "; ".join(problems),
            hint=f"run the backup step first: promoter promote --env {env} (its backup step), nothing was changed",
        )


@dataclass(frozen=True)
class BackupSettings:
    timeout: float = 600
    poll: float = 2.0


def wait_backup_available(dynamodb: Any, arn: str, *, clock: Clock, timeout: float, poll: float) -> dict[str, Any]:
    deadline = clock.now() + timeout
    while True:
        details = dynamodb.describe_backup(BackupArn=arn)["BackupDescription"]["BackupDetails"]
        status = details.get("BackupStatus")
        if status == "AVAILABLE":
            return details
        if status == "DELETED":
            raise AwsError(f"backup {arn} was deleted before it became available")
        if clock.now() >= deadline:
            raise AwsError(f"backup {arn} still {status} after {timeout:g}s", hint="check it in the DynamoDB console")
        clock.sleep(min(poll, max(0.0, deadline - clock.now())))


class BackupStep:
    def __init__(self, aws_for: Callable[[str], Any], *, clock: Clock | None = None,
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC),
                 settings: BackupSettings = BackupSettings()) -> None:
        self.aws_for = aws_for
        self.clock = clock or SystemClock()
        self.wall = wall
        self.settings = settings

    def probe(self, ctx: StepContext) -> Probe:
        names = ctx.plan.names(ctx.env)
        return Probe("run", f"check PITR, back up table {names.table}, snapshot {names.function}:{names.alias}")

    def run(self, ctx: StepContext) -> StepOutcome:
        from promoter.adapters.aws import translate

        plan, env = ctx.plan, ctx.env
        names = plan.names(env)
        spec = plan.environment(env)
        aws = self.aws_for(env)
        dynamodb, lam = aws.client("dynamodb"), aws.client("lambda")
        try:
            pitr = dynamodb.describe_continuous_backups(TableName=names.table)
            problem = pitr_problem(pitr, self.wall(), spec.data_safety.max_pitr_lag_minutes)
            required = spec.require_pitr or spec.data_safety.require_backup
            if problem and required:
                return StepOutcome("failed", f"table {names.table}: {problem}", {"pitr_problem": problem},
                                   files={"pitr.json": pitr})
            stamp = self.wall().strftime("%Y%m%dT%H%M%SZ")
            backup_name = f"{names.table}-{ctx.artifact.release}-{stamp}"[:255]
            created = dynamodb.create_backup(TableName=names.table, BackupName=backup_name)["BackupDetails"]
            ctx.note(f"backup {created['BackupArn']} {created.get('BackupStatus')}")
            details = wait_backup_available(dynamodb, created["BackupArn"], clock=self.clock,
                                            timeout=self.settings.timeout, poll=self.settings.poll)
            snapshot = lam.get_function(FunctionName=names.function, Qualifier=names.alias)
        except AwsError:
            raise
        except Exception as exc:
            raise translate(exc, f"backing up {names.table} and snapshotting {names.function}") from None
        snapshot.pop("ResponseMetadata", None)
        (snapshot.get("Code") or {}).pop("Location", None)  # a pre-signed URL: short-lived and not evidence
        record = ctx.ledger.append(
            env, "backup", pipeline_id=ctx.pipeline_id, release=ctx.artifact.release,
            artifact_sha256=ctx.artifact.sha256, table=names.table, table_backup_arn=details["BackupArn"],
            backup_name=backup_name, backup_status=details.get("BackupStatus"),
            backup_size=details.get("BackupSizeBytes"),
            pitr_ok=problem is None, pitr_problem=problem,
            latest_restorable=str(((pitr.get("ContinuousBackupsDescription") or {})
                                   .get("PointInTimeRecoveryDescription") or {}).get("LatestRestorableDateTime")),
            snapshot={"function": names.function, "qualifier": names.alias,
                      "version": (snapshot.get("Configuration") or {}).get("Version"),
                      "code_sha256": (snapshot.get("Configuration") or {}).get("CodeSha256")},
        )
        outputs = {k: record[k] for k in ("table_backup_arn", "pitr_ok", "latest_restorable", "snapshot")}
        detail = (f"backup {details['BackupArn']} AVAILABLE; PITR {'ok' if problem is None else problem}; snapshot of "
                  f"{names.function}:{names.alias} (version {outputs['snapshot']['version']})")
        return StepOutcome("passed", detail, outputs, files={
            "backup.json": record, "pitr.json": pitr, "pre-deployment-snapshot.json": snapshot})
