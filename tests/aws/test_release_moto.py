"""The release engine on moto in-process: real boto3 calls for versions, alias, CloudWatch and SQS.

moto runs Lambda Invoke only with Docker, so the pre-traffic gate's ``Invoker`` here runs the real service
handler (``campaigns_lambda.handler.lambda_handler``) in this process, with the environment of the invoked
version as moto stores it and DynamoDB served by moto.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import zipfile
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from promoter.adapters.aws import AwsSessionFactory
from promoter.adapters.lambda_ import LambdaClient, parse_invoke_payload, version_description
from promoter.cli.app import app as cli
from promoter.engine import release
from promoter.engine.ledger import Ledger
from promoter.errors import PreconditionFailed, RefusedError, ReleaseFailed
from promoter.plan import load_plan

ENV = "sit"
REGION = "eu-west-1"


def _zip(marker: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("campaigns_lambda/RELEASE", marker + "\n")
        zf.writestr("campaigns_lambda/__init__.py", "")
    return buf.getvalue()


class InProcessInvoker:
    """Invokes a version by running the service handler here with that version's environment."""

    def __init__(self, lam: LambdaClient) -> None:
        self.lam = lam
        self.calls = 0

    def invoke(self, version, event):
        from campaigns_lambda import handler

        self.calls += 1
        env = self.lam.version_environment(version)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        handler.reset_state()
        try:
            context = SimpleNamespace(function_name=self.lam.function, function_version=version,
                                      invoked_function_arn=f"arn:aws:lambda:{REGION}:1:function:x:{version}",
                                      memory_limit_in_mb=256, aws_request_id=f"req-{self.calls}",
                                      log_group_name="/aws/lambda/x", log_stream_name="s")
            try:
                payload, error = json.dumps(handler.lambda_handler(event, context)), None
            except Exception as exc:  # what Lambda reports as an Unhandled function error
                payload, error = json.dumps({"errorMessage": str(exc)}), "Unhandled"
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            handler.reset_state()
        return parse_invoke_payload(payload.encode(), error)


@pytest.fixture
def sit(tmp_path, monkeypatch):
    plan = load_plan()
    canary = plan.canary.model_copy(update={"min_invocations": 20, "max_extension_seconds": 3})
    plan = plan.model_copy(update={"canary": canary})
    names = plan.names(ENV)
    monkeypatch.setenv("MOTO_ACCOUNT_ID", plan.environment(ENV).account_id)  # the account the plan names for sit
    with mock_aws():
        iam = boto3.client("iam", region_name=REGION)
        role = iam.create_role(RoleName=names.execution_role, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName=names.table, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        boto3.client("sqs", region_name=REGION).create_queue(QueueName=names.dlq)
        lam = boto3.client("lambda", region_name=REGION)
        seed = _zip("v1.0.0")
        lam.create_function(FunctionName=names.function, Runtime="python3.12", Role=role,
                            Handler=plan.service.handler, Code={"ZipFile": seed},
                            Environment={"Variables": {"CAMPAIGNS_TABLE": names.table,
                                                       "TEMPLATES_BUCKET": names.templates_bucket}})
        lam.publish_version(FunctionName=names.function,
                            Description=version_description("v1.0.0", "0" * 40, hashlib.sha256(seed).hexdigest()))
        lam.create_alias(FunctionName=names.function, Name=names.alias, FunctionVersion="1")

        aws = AwsSessionFactory(region=REGION)
        ledger = Ledger(tmp_path / "home")
        monkeypatch.setenv("PROMOTER_HOME", str(tmp_path / "home"))
        ports = release.Ports.for_aws(aws, plan, ENV, ledger)
        ports.invoker = InProcessInvoker(ports.functions)
        artifact = tmp_path / "campaigns_lambda-v1.1.0.zip"
        artifact.write_bytes(_zip("v1.1.0"))
        yield SimpleNamespace(plan=plan, names=names, lam=lam, ports=ports, ledger=ledger, artifact=artifact,
                              cw=boto3.client("cloudwatch", region_name=REGION), tmp=tmp_path)


def _settings(sit, **kw):
    base = dict(plan=sit.plan, env=ENV, release="v1.1.0", artifact=sit.artifact, allow_untagged=True)
    base.update(kw)
    return release.DeploySettings(**base)


def _lambda_traffic(sit, version, invocations, errors, server_errors=0):
    """What Lambda and the service would publish for ``version``, timestamped a moment from now."""
    names, m = sit.names, sit.plan.metrics
    ts = datetime.now(UTC) + timedelta(seconds=30)  # inside the first step's window, which starts after the gate
    dims = [{"Name": "FunctionName", "Value": names.function},
            {"Name": "Resource", "Value": f"{names.function}:{names.alias}"},
            {"Name": "ExecutedVersion", "Value": version}]
    sit.cw.put_metric_data(Namespace=m.lambda_namespace, MetricData=[
        {"MetricName": "Invocations", "Dimensions": dims, "Value": invocations, "Timestamp": ts},
        {"MetricName": "Errors", "Dimensions": dims, "Value": errors, "Timestamp": ts},
        {"MetricName": "Throttles", "Dimensions": dims, "Value": 0, "Timestamp": ts},
    ])
    sit.cw.put_metric_data(Namespace=m.service_namespace, MetricData=[
        {"MetricName": m.server_error_metric, "Value": server_errors, "Timestamp": ts,
         "Dimensions": [{"Name": m.service_dimension, "Value": m.service_name},
                        {"Name": m.version_dimension, "Value": version}]}])


def test_credentials_for_another_account_are_refused_before_anything_changes(sit):
    # GIVEN a shell logged in to the sit account WHEN it targets prod's plan entry with the same credentials
    prod_ports = release.Ports.for_aws(AwsSessionFactory(region=REGION), sit.plan, "prod", sit.ledger)
    prod_ports.functions, prod_ports.router = sit.ports.functions, sit.ports.router  # the sit function, reachable
    for action in (
        lambda: release.deploy(_settings(sit, env="prod"), prod_ports),
        lambda: release.rollback_to(release.RollbackSettings(plan=sit.plan, env="prod", to="v1.0.0"), prod_ports),
        lambda: release.abort(sit.plan, "prod", prod_ports),
    ):
        with pytest.raises(RefusedError, match=r"credentials are for account 815856636111, but prod is account"):
            action()
    # THEN nothing was published or moved, and each refusal is on record
    versions = sit.lam.list_versions_by_function(FunctionName=sit.names.function)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1"]
    assert sit.lam.get_alias(FunctionName=sit.names.function, Name=sit.names.alias)["FunctionVersion"] == "1"
    refusals = sit.ledger.records("prod")
    assert [(r["kind"], r["command"], r["outcome"]) for r in refusals] == [
        ("refusal", "deploy", "refused"), ("refusal", "rollback", "refused"), ("refusal", "abort", "refused")]
    assert all("credentials are for account 815856636111" in r["reason"] for r in refusals)


def test_all_at_once_publishes_a_described_version_after_a_real_handler_gate(sit):
    record = release.deploy(_settings(sit, env=ENV, canary=False, plan=_all_at_once(sit.plan)), sit.ports)
    assert record.outcome == "succeeded"
    alias = sit.lam.get_alias(FunctionName=sit.names.function, Name=sit.names.alias)
    assert alias["FunctionVersion"] == "2" and not (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights")
    v2 = sit.lam.get_function_configuration(FunctionName=sit.names.function, Qualifier="2")
    sha = hashlib.sha256(sit.artifact.read_bytes()).hexdigest()
    assert v2["Description"] == f"release=v1.1.0 git=unknown sha256={sha}"
    # the pre-traffic gate ran the seven requests through the real handler, and cleaned up after itself
    assert [r["name"] for r in record.pretraffic] == ["health", "list", "create", "get", "update", "delete",
                                                       "confirm-deleted"]
    assert all(r["ok"] for r in record.pretraffic)
    assert boto3.client("dynamodb", region_name=REGION).scan(TableName=sit.names.table)["Count"] == 0
    # the same artifact again: the version is reused, nothing published
    again = release.deploy(_settings(sit, plan=_all_at_once(sit.plan)), sit.ports)
    assert "nothing to do" in again.reason
    assert len(sit.ports.functions.list_versions()) == 2


def _all_at_once(plan):
    envs = dict(plan.environments)
    envs[ENV] = envs[ENV].model_copy(update={"strategy": envs[ENV].strategy.model_copy(update={"mode": "all-at-once"})})
    return plan.model_copy(update={"environments": envs})


def test_canary_reads_cloudwatch_and_passes_a_healthy_version(sit):
    _lambda_traffic(sit, "2", invocations=60, errors=0)
    _lambda_traffic(sit, "1", invocations=540, errors=0)
    record = release.deploy(_settings(sit, canary=True, bake_seconds=2, analysis_interval=1), sit.ports)
    assert record.outcome == "succeeded"
    first = record.verdicts[0]
    assert first["observation"]["canary"]["invocations"] == 60
    assert first["observation"]["stable"]["invocations"] == 540
    assert first["observation"]["dlq_messages"] == 0
    assert first["window"]["period"] % 60 == 0
    # 0 errors in 60: the exact bound 4.9 % is under 5 %, recorded with the test's counts
    assert first["outcome"] == "pass" and first["test"]["canary"] == [0, 60]
    assert first["line"].startswith("canary 0/60 errors vs stable 0/540")


def test_reader_reports_duration_samples_and_how_fresh_its_newest_datapoint_is(sit):
    from promoter.engine.canary import query_window

    names, m = sit.names, sit.plan.metrics
    dims = [{"Name": "FunctionName", "Value": names.function},
            {"Name": "Resource", "Value": f"{names.function}:{names.alias}"},
            {"Name": "ExecutedVersion", "Value": "2"}]
    now = datetime.now(UTC)
    sit.cw.put_metric_data(Namespace=m.lambda_namespace, MetricData=[
        {"MetricName": "Invocations", "Dimensions": dims, "Value": 3, "Timestamp": now - timedelta(seconds=100)},
        {"MetricName": "Invocations", "Dimensions": dims, "Value": 4, "Timestamp": now - timedelta(seconds=20)},
        {"MetricName": "Duration", "Dimensions": dims, "Values": [10, 20, 30, 4000], "Counts": [1, 1, 1, 1],
         "Unit": "Milliseconds", "Timestamp": now - timedelta(seconds=20)},
    ])
    window = query_window(now.timestamp() - 110, now.timestamp())
    obs = sit.ports.metrics.observe("2", "1", window)
    assert obs.canary.invocations == 7
    assert obs.canary.duration_samples == 4  # (in-process moto answers no percentiles; the sandbox does)
    # the newest 1-minute datapoint starts within the last 70 s (moto starts its periods at the first value)
    assert obs.newest_datapoint is not None and 0 <= obs.data_age_seconds <= 70
    assert obs.stable.invocations == 0 and obs.stable.duration_samples == 0


def _plan_alarms(sit):
    for name in sit.names.alarms.values():
        sit.cw.put_metric_alarm(AlarmName=name, MetricName="Errors", Namespace="AWS/Lambda", Statistic="Sum",
                                Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold")
    return sorted(sit.names.alarms.values())


def test_alarms_in_ok_state_do_not_count_as_firing(sit):
    # moto ignores DescribeAlarms' StateValue filter when alarm names are given; OK alarms must not fail a canary
    _plan_alarms(sit)
    _lambda_traffic(sit, "2", invocations=60, errors=0)
    _lambda_traffic(sit, "1", invocations=540, errors=0)
    assert sit.ports.metrics.alarms_in_alarm() == ()
    record = release.deploy(_settings(sit, canary=True, bake_seconds=2, analysis_interval=1), sit.ports)
    assert record.outcome == "succeeded"


def test_a_plan_alarm_firing_during_the_bake_rolls_back(sit):
    names = _plan_alarms(sit)
    _lambda_traffic(sit, "2", invocations=60, errors=0)
    _lambda_traffic(sit, "1", invocations=540, errors=0)

    def fire_on_first_shift(event):
        if event.kind == "shift" and event.data.get("weight") == 10:
            sit.cw.set_alarm_state(AlarmName=names[0], StateValue="ALARM", StateReason="threshold crossed")

    with pytest.raises(ReleaseFailed):
        release.deploy(_settings(sit, canary=True, bake_seconds=2, analysis_interval=1), sit.ports,
                       fire_on_first_shift)
    end = sit.ledger.records(ENV, kind="run-end")[-1]
    assert end["outcome"] == "rolled-back" and names[0] in end["reason"]
    assert sit.lam.get_alias(FunctionName=sit.names.function, Name=sit.names.alias)["FunctionVersion"] == "1"


def test_canary_with_service_5xx_is_rolled_back(sit):
    _lambda_traffic(sit, "2", invocations=40, errors=0, server_errors=12)
    _lambda_traffic(sit, "1", invocations=360, errors=0)
    with pytest.raises(ReleaseFailed) as info:
        release.deploy(_settings(sit, canary=True, bake_seconds=2, analysis_interval=1), sit.ports)
    assert info.value.exit_code == 3
    alias = sit.lam.get_alias(FunctionName=sit.names.function, Name=sit.names.alias)
    assert alias["FunctionVersion"] == "1"
    assert not (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights")
    end = sit.ledger.records(ENV, kind="run-end")[-1]
    assert end["outcome"] == "rolled-back"
    assert end["verdict"]["observation"]["canary"]["error_rate_pct"] == 30.0


def test_rollback_to_resolves_tags_and_refuses_unknown_ones(sit):
    release.deploy(_settings(sit, plan=_all_at_once(sit.plan)), sit.ports)
    runner = CliRunner()
    env = {"COLUMNS": "120", "NO_COLOR": "1"}
    result = runner.invoke(cli, ["rollback", "--env", ENV, "--to", "v1.0.0", "--yes", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["candidate_version"] == "1"
    assert sit.lam.get_alias(FunctionName=sit.names.function, Name=sit.names.alias)["FunctionVersion"] == "1"

    result = runner.invoke(cli, ["rollback", "--env", ENV, "--to", "v7.7.7", "--yes"], env=env)
    # the command ignored interrupts only until it had printed its outcome
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert result.exit_code == 1
    assert "never deployed" in result.output and "v1.0.0 (version 1)" in result.output
    assert "v1.1.0 (version 2)" in result.output

    result = runner.invoke(cli, ["rollback", "--env", ENV, "--to", "previous", "--yes", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["candidate_version"] == "2"


def test_status_and_history_commands(sit):
    release.deploy(_settings(sit, plan=_all_at_once(sit.plan)), sit.ports)
    runner = CliRunner()
    env = {"COLUMNS": "120", "NO_COLOR": "1"}
    result = runner.invoke(cli, ["status", "--env", ENV, "--json"], env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["routes"][0]["version"] == "2" and data["routes"][0]["release"] == "v1.1.0"
    assert data["deployed_releases"] == {"v1.0.0": "1", "v1.1.0": "2"}
    assert data["runs"][-1]["outcome"] == "succeeded"
    result = runner.invoke(cli, ["status", "--env", ENV], env=env)
    assert result.exit_code == 0 and "v1.1.0" in result.stdout and "lock: free" in result.stdout
    result = runner.invoke(cli, ["history", "--env", ENV], env=env)
    assert result.exit_code == 0 and "alias-change" in result.stdout and "pretraffic" in result.stdout


def test_code_changed_between_upload_and_publish_is_caught_and_no_traffic_moves(sit):
    # GIVEN someone uploads other code right after the engine's upload (moto ignores a wrong CodeSha256 on
    # PublishVersion, so the engine's read-back of the published version is what must catch it)
    lam = sit.ports.functions
    original = lam.publish_version

    def racing_publish(description, code_sha256):
        lam.update_function_code(_zip("someone-else"))
        return original(description, code_sha256)

    lam.publish_version = racing_publish
    with pytest.raises(PreconditionFailed, match="code changed meanwhile"):
        release.deploy(_settings(sit, plan=_all_at_once(sit.plan)), sit.ports)
    assert sit.lam.get_alias(FunctionName=sit.names.function, Name=sit.names.alias)["FunctionVersion"] == "1"
    assert sit.ledger.records(ENV, kind="run-end")[-1]["outcome"] == "refused"


def test_chaos_refused_in_prod_and_lock_break_command(sit):
    with pytest.raises(RefusedError):
        release.deploy(_settings(sit, env="prod", env_vars={"CHAOS_ERROR_RATE": "0.3"}), sit.ports)
    ledger = sit.ledger
    with ledger.lock(ENV, purpose="deploy"):
        result = CliRunner().invoke(cli, ["deploy", "--env", ENV, "--artifact", str(sit.artifact),
                                          "--allow-untagged", "--release", "v1.1.0"],
                                    env={"COLUMNS": "120", "NO_COLOR": "1"})
        assert result.exit_code == 1 and "locked by" in result.output
    with ledger.lock(ENV, purpose="deploy"):
        pass
    os.makedirs(ledger.lock_path(ENV).parent, exist_ok=True)
    ledger.lock_path(ENV).write_text(json.dumps({"who": "ghost", "pid": 999999, "host": "elsewhere"}))
    result = CliRunner().invoke(cli, ["lock", "break", "--env", ENV], env={"COLUMNS": "120", "NO_COLOR": "1"})
    assert result.exit_code == 0 and "ghost" in result.stdout
    assert ledger.lock_holder(ENV) is None


def test_deploy_dry_run_cli_changes_nothing(sit):
    result = CliRunner().invoke(cli, ["deploy", "--env", ENV, "--canary", "--artifact", str(sit.artifact),
                                      "--release", "v1.1.0", "--allow-untagged", "--dry-run"],
                                env={"COLUMNS": "120", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert "dry-run" in result.stdout and "shift alias live to 10%" in result.stdout
    assert len(sit.ports.functions.list_versions()) == 1
    assert sit.lam.get_alias(FunctionName=sit.names.function, Name=sit.names.alias)["FunctionVersion"] == "1"
