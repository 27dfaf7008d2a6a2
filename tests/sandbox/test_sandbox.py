"""The running sandbox, seen from outside: what seeding created, percentiles, tokens, the AWS CLI, the CLI."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3
import jwt
import pytest
from typer.testing import CliRunner

from promoter.adapters.lambda_ import parse_description
from promoter.plan.loader import load_plan
from promoter.sandbox.seed import GROUPS, NO_GROUP, TEST_PASSWORD

pytestmark = pytest.mark.sandbox
AWS_CLI = Path(sys.executable).with_name("aws")


@pytest.fixture(scope="module")
def plan(plan_path):
    return load_plan(plan_path)


def test_percentiles_come_back_from_the_raw_datapoints(sandbox_env):
    # GIVEN 100 durations 1..100 ms in one period
    cloudwatch = boto3.client("cloudwatch")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    dims = [{"Name": "FunctionName", "Value": "p95-probe"}]
    for start in range(1, 101, 25):
        cloudwatch.put_metric_data(Namespace="Probe", MetricData=[
            {"MetricName": "Duration", "Value": float(v), "Unit": "Milliseconds", "Timestamp": now,
             "Dimensions": dims} for v in range(start, start + 25)])
    window = {"StartTime": now - dt.timedelta(minutes=5), "EndTime": now + dt.timedelta(minutes=5)}

    # WHEN p95 is asked for through both APIs
    stats = cloudwatch.get_metric_statistics(Namespace="Probe", MetricName="Duration", Dimensions=dims, Period=600,
                                             ExtendedStatistics=["p95", "p50"], **window)
    data = cloudwatch.get_metric_data(MetricDataQueries=[{"Id": "d", "MetricStat": {
        "Metric": {"Namespace": "Probe", "MetricName": "Duration", "Dimensions": dims},
        "Period": 600, "Stat": "p95"}}], **window)

    # THEN both answer the nearest-rank value
    [point] = stats["Datapoints"]
    assert point["ExtendedStatistics"] == {"p95": pytest.approx(95.0, abs=1), "p50": pytest.approx(50.0, abs=1)}
    assert data["MetricDataResults"][0]["Values"] == [pytest.approx(95.0, abs=1)]
    plain = cloudwatch.get_metric_statistics(Namespace="Probe", MetricName="Duration", Dimensions=dims, Period=600,
                                             Statistics=["Average", "SampleCount"], **window)
    assert plain["Datapoints"][0]["SampleCount"] == 100.0


def test_each_dimension_set_is_its_own_metric(sandbox_env):
    # GIVEN invocations recorded the way Lambda does for an alias: by function, by alias, by executed version
    cloudwatch = boto3.client("cloudwatch")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    function = [{"Name": "FunctionName", "Value": "dims-probe"}]
    alias = [*function, {"Name": "Resource", "Value": "dims-probe:live"}]
    version = [*alias, {"Name": "ExecutedVersion", "Value": "2"}]
    cloudwatch.put_metric_data(Namespace="Probe", MetricData=[
        {"MetricName": "Invocations", "Value": value, "Timestamp": now, "Dimensions": dims}
        for dims, value in ((function, 7.0), (alias, 5.0), (version, 3.0))])
    window = {"StartTime": now - dt.timedelta(minutes=5), "EndTime": now + dt.timedelta(minutes=5), "Period": 600}

    def total(dims):
        points = cloudwatch.get_metric_statistics(Namespace="Probe", MetricName="Invocations", Dimensions=dims,
                                                  Statistics=["Sum"], **window)["Datapoints"]
        return sum(p["Sum"] for p in points)

    # WHEN each set is queried on its own (one in another order)
    # THEN each answers its own datapoints, never the sum of the more specific sets
    assert total(function) == 7.0
    assert total(alias) == 5.0
    assert total(list(reversed(version))) == 3.0
    assert total([{"Name": "FunctionName", "Value": "other"}]) == 0.0
    data = cloudwatch.get_metric_data(MetricDataQueries=[{"Id": "v", "MetricStat": {
        "Metric": {"Namespace": "Probe", "MetricName": "Invocations", "Dimensions": list(reversed(version))},
        "Period": 600, "Stat": "Sum"}}], StartTime=window["StartTime"], EndTime=window["EndTime"])
    assert data["MetricDataResults"][0]["Values"] == [3.0]


def test_seeding_creates_the_baseline_preflight_expects(sandbox, sandbox_env, plan):
    spec, names = plan.environment("sit"), plan.names("sit")
    assert boto3.client("sts").get_caller_identity()["Account"] == spec.account_id
    zones = boto3.client("route53").list_hosted_zones_by_name(DNSName=spec.domain)["HostedZones"]
    assert zones[0]["Name"] == spec.domain + "."

    acm = boto3.client("acm")
    [summary] = acm.list_certificates(CertificateStatuses=["ISSUED"])["CertificateSummaryList"]
    cert = acm.describe_certificate(CertificateArn=summary["CertificateArn"])["Certificate"]
    assert cert["Status"] == "ISSUED" and spec.domain in cert["SubjectAlternativeNames"]
    assert cert["NotAfter"] - dt.datetime.now(dt.UTC) > dt.timedelta(days=300)

    apigw = boto3.client("apigateway")
    domain = apigw.get_domain_name(domainName=spec.domain)
    assert domain["regionalCertificateArn"] == summary["CertificateArn"]
    mapping = apigw.get_base_path_mapping(domainName=spec.domain, basePath=names.base_path_mapping)
    api = apigw.get_rest_api(restApiId=mapping["restApiId"])
    assert api["name"] == names.rest_api and mapping["stage"] == "v1"

    ddb = boto3.client("dynamodb")
    table = ddb.describe_table(TableName=names.table)["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert table["KeySchema"] == [{"AttributeName": names.table_partition_key, "KeyType": "HASH"}]
    backups = ddb.describe_continuous_backups(TableName=names.table)["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"

    s3 = boto3.client("s3")
    rules = s3.get_bucket_encryption(Bucket=names.templates_bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=names.templates_bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    template = s3.get_object(Bucket=names.templates_bucket, Key="templates/welcome.html")["Body"].read()
    assert b"<html" in template
    # the team state bucket: versioned, private, named in the seed result
    state_bucket = f"promoter-state-{spec.account_id}"
    assert sandbox.state["seed"]["state_url"] == f"s3://{state_bucket}/promoter"
    assert s3.get_bucket_versioning(Bucket=state_bucket)["Status"] == "Enabled"
    assert all(s3.get_public_access_block(Bucket=state_bucket)["PublicAccessBlockConfiguration"].values())

    role = boto3.client("iam").get_role(RoleName=names.execution_role)["Role"]
    groups = boto3.client("logs").describe_log_groups(logGroupNamePrefix=names.log_group)["logGroups"]
    assert [(g["logGroupName"], g["retentionInDays"]) for g in groups] == [(names.log_group,
                                                                            spec.log_retention_days)]
    alarms = boto3.client("cloudwatch").describe_alarms(AlarmNames=list(names.alarms.values()))["MetricAlarms"]
    assert {a["AlarmName"]: a["Threshold"] for a in alarms} == {
        names.alarms[a.id]: a.threshold for a in plan.alarms}
    assert boto3.client("sqs").get_queue_url(QueueName=names.dlq)["QueueUrl"]
    topics = [t["TopicArn"] for t in boto3.client("sns").list_topics()["Topics"]]
    assert any(t.endswith(":" + names.sns_topic) for t in topics)

    cognito = boto3.client("cognito-idp")
    pool_id = sandbox.state["seed"]["user_pool_id"]
    assert cognito.describe_user_pool(UserPoolId=pool_id)["UserPool"]["Name"] == names.user_pool
    client = cognito.describe_user_pool_client(UserPoolId=pool_id,
                                               ClientId=sandbox.state["seed"]["user_pool_client_id"])
    assert client["UserPoolClient"]["ClientName"] == names.user_pool_client
    assert {"ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_USER_PASSWORD_AUTH"} <= set(
        client["UserPoolClient"]["ExplicitAuthFlows"])
    assert {g["GroupName"] for g in cognito.list_groups(UserPoolId=pool_id)["Groups"]} == set(GROUPS)

    # The function, created through the Lambda front, version 1 behind the alias.
    lam = boto3.client("lambda")
    config = lam.get_function_configuration(FunctionName=names.function)
    assert (config["Handler"], config["Runtime"], config["MemorySize"], config["Timeout"], config["Role"]) == (
        plan.service.handler, plan.service.runtime, plan.service.memory_mb, plan.service.timeout_seconds,
        role["Arn"])
    assert config["Environment"]["Variables"] == {
        "CAMPAIGNS_TABLE": names.table, "TEMPLATES_BUCKET": names.templates_bucket, "RELEASE_VERSION": "v1.0.0"}
    versions = [v for v in lam.list_versions_by_function(FunctionName=names.function)["Versions"]
                if v["Version"] != "$LATEST"]
    assert [v["Version"] for v in versions] == ["1"]
    assert re.fullmatch(r"release=v1\.0\.0 git=([0-9a-f]{7,40}|unknown) sha256=[0-9a-f]{64}",
                        versions[0]["Description"])
    described = parse_description(versions[0]["Description"])
    assert described["release"] == "v1.0.0" and described["sha256"] == sandbox.state["seed"]["artifact_sha256"]
    alias = lam.get_alias(FunctionName=names.function, Name=names.alias)
    assert alias["FunctionVersion"] == "1"


def test_the_seeded_function_runs_behind_the_alias(sandbox_env, plan):
    names = plan.names("sit")
    event = {"httpMethod": "GET", "path": plan.service.health_path, "resource": plan.service.health_path,
             "headers": {}, "requestContext": {}}
    answer = boto3.client("lambda").invoke(FunctionName=names.function, Qualifier=names.alias,
                                           Payload=json.dumps(event).encode())
    assert answer["StatusCode"] == 200 and "FunctionError" not in answer
    assert answer["ExecutedVersion"] == "1"
    assert json.loads(answer["Payload"].read())["statusCode"] == 200


def test_a_second_up_on_the_same_state_dir_refuses(sandbox, plan, plan_path):
    from promoter.errors import RefusedError
    from promoter.sandbox.manager import Sandbox

    with pytest.raises(RefusedError, match="already running") as caught:
        Sandbox.up(plan=plan, env="sit", state_dir=sandbox.state_dir, plan_path=plan_path)
    assert sandbox.endpoints["moto"] in str(caught.value)
    assert sandbox.alive_processes() == ["moto", "lambda_front", "api_front"]  # the running one is untouched


def test_the_cli_refuses_a_second_up_with_exit_1(sandbox):
    from promoter.cli.app import app

    result = CliRunner().invoke(app, ["sandbox", "up", "--env", "sit", "--state-dir", str(sandbox.state_dir)],
                                env={"COLUMNS": "120", "NO_COLOR": "1"})
    assert result.exit_code == 1
    assert "already running" in result.output and sandbox.endpoints["api"] in result.output


@pytest.mark.parametrize("group", [*GROUPS, NO_GROUP])
def test_tokens_are_cognito_jwts_carrying_the_group(sandbox, group):
    token = sandbox.token(group)
    header = jwt.get_unverified_header(token)
    pool_id = sandbox.state["seed"]["user_pool_id"]
    with urllib.request.urlopen(f"{sandbox.endpoints['moto']}/{pool_id}/.well-known/jwks.json") as answer:
        keys = {k["kid"]: k for k in json.load(answer)["keys"]}
    key = jwt.PyJWK(keys[header["kid"]]).key
    claims = jwt.decode(token, key, algorithms=["RS256"], audience=sandbox.state["seed"]["user_pool_client_id"])
    assert claims["token_use"] == "id"
    assert claims["cognito:username"] == sandbox.state["seed"]["users"][group]
    if group == NO_GROUP:
        assert "cognito:groups" not in claims
    else:
        assert claims["cognito:groups"] == [group]


def test_an_unknown_group_is_a_usage_error(sandbox):
    from promoter.errors import UsageError

    with pytest.raises(UsageError, match="campaigns-admin"):
        sandbox.token("campaigns-owner")


def test_the_aws_cli_reaches_the_sandbox_through_the_env_vars(sandbox, plan):
    names = plan.names("sit")
    env = {**os.environ, **sandbox.env_vars()}
    env.pop("AWS_PROFILE", None)

    def aws(*args: str) -> dict:
        done = subprocess.run([str(AWS_CLI), *args, "--output", "json"], env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    alias = aws("lambda", "get-alias", "--function-name", names.function, "--name", names.alias)
    assert alias["FunctionVersion"] == "1"
    scan = aws("dynamodb", "scan", "--table-name", names.table)
    assert "Items" in scan


def test_cli_env_status_and_token(sandbox):
    from promoter.cli.app import app

    runner = CliRunner()
    cli_env = {"COLUMNS": "120", "NO_COLOR": "1", "PROMOTER_SANDBOX": str(sandbox.state_dir)}
    printed = runner.invoke(app, ["sandbox", "env"], env=cli_env)
    assert printed.exit_code == 0
    assert "unset AWS_PROFILE" in printed.output
    for key, value in sandbox.env_vars().items():
        assert f"export {key}={value}" in printed.output

    status = runner.invoke(app, ["sandbox", "status", "--json"], env=cli_env)
    assert status.exit_code == 0, status.output
    report = json.loads(status.output)
    assert report["healthy"] is True
    assert {p["alive"] for p in report["processes"].values()} == {True}
    assert report["function"]["alias"]["weights"] == {"1": 1.0}
    assert report["function"]["versions"][0]["description"].startswith("release=v1.0.0 ")

    human = runner.invoke(app, ["sandbox", "status"], env=cli_env)
    assert human.exit_code == 0 and "alias live -> version 1 (v1 100 %)" in human.output

    token = runner.invoke(app, ["sandbox", "token", "--group", "campaigns-editor"], env=cli_env)
    assert token.exit_code == 0
    assert jwt.decode(token.output.strip(), options={"verify_signature": False})["cognito:groups"] == [
        "campaigns-editor"]

    as_json = runner.invoke(app, ["sandbox", "env", "--json"], env=cli_env)
    assert as_json.exit_code == 0 and json.loads(as_json.stdout) == sandbox.env_vars()
    token = runner.invoke(app, ["sandbox", "token", "-g", "campaigns-viewer", "--json"], env=cli_env)
    assert token.exit_code == 0, token.output
    document = json.loads(token.stdout)
    assert (document["group"], document["token_type"]) == ("campaigns-viewer", "Bearer")
    assert jwt.decode(document["token"], options={"verify_signature": False})["cognito:groups"] == [
        "campaigns-viewer"]


def test_test_users_have_permanent_known_passwords(sandbox):
    cognito = boto3.client("cognito-idp", endpoint_url=sandbox.endpoints["moto"], region_name=sandbox.region)
    seeded = sandbox.state["seed"]
    answer = cognito.initiate_auth(ClientId=seeded["user_pool_client_id"], AuthFlow="USER_PASSWORD_AUTH",
                                   AuthParameters={"USERNAME": seeded["users"]["campaigns-viewer"],
                                                   "PASSWORD": TEST_PASSWORD})
    assert "AuthenticationResult" in answer  # no NEW_PASSWORD_REQUIRED challenge
