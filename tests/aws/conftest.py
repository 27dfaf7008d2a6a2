"""Fixtures for AWS behaviour against moto in-process: a fully seeded, correct environment per test.

``seed_environment(plan, env)`` creates every resource preflight looks for, with the plan's names, in the
environment's region (and the DR region for environments with ``dr``). Tests then break one thing each.
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import pytest

from promoter.plan import load_plan
from promoter.plan.models import Plan

PLAN_PATH = Path(__file__).resolve().parents[2] / "plans" / "PROM-CAMP-001.yaml"
TRUST_LAMBDA = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


@cache
def _key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def self_signed(names: list[str], days: int) -> tuple[bytes, bytes]:
    """A self-signed certificate for ``names`` (first is the CN) valid for ``days`` from now: (cert, key) PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def import_certificate(region: str, names: list[str], days: int) -> str:
    import boto3

    cert, key = self_signed(names, days)
    return boto3.client("acm", region_name=region).import_certificate(Certificate=cert, PrivateKey=key)[
        "CertificateArn"
    ]


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", "def lambda_handler(event, context):\n    return {'statusCode': 200}\n")
    return buf.getvalue()


def seed_function(plan: Plan, env: str, region: str, role_arn: str) -> None:
    import boto3

    names = plan.names(env)
    lam = boto3.client("lambda", region_name=region)
    lam.create_function(
        FunctionName=names.function,
        Runtime=plan.service.runtime,
        Role=role_arn,
        Handler=plan.service.handler,
        Code={"ZipFile": _zip()},
        Publish=True,
    )
    version = lam.list_versions_by_function(FunctionName=names.function)["Versions"][-1]["Version"]
    lam.create_alias(FunctionName=names.function, Name=names.alias, FunctionVersion=version)


def seed_table(plan: Plan, env: str, region: str, pitr: bool = True) -> None:
    import boto3

    names = plan.names(env)
    ddb = boto3.client("dynamodb", region_name=region)
    ddb.create_table(
        TableName=names.table,
        KeySchema=[{"AttributeName": names.table_partition_key, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": names.table_partition_key, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    if pitr:
        ddb.update_continuous_backups(
            TableName=names.table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )


def seed_environment(plan: Plan, env: str, region: str | None = None) -> dict[str, str]:
    """Create every resource preflight checks for ``env`` under the running moto mock. Returns a few ids."""
    import boto3

    spec = plan.environment(env)
    names = plan.names(env)
    region = region or spec.region
    domain = spec.domain

    boto3.client("route53", region_name=region).create_hosted_zone(
        Name=domain.split(".", 1)[1] + ".", CallerReference=f"preflight-{env}"
    )
    cert_arn = import_certificate(region, [domain], days=365)

    apigw = boto3.client("apigateway", region_name=region)
    api_id = apigw.create_rest_api(name=names.rest_api, endpointConfiguration={"types": ["REGIONAL"]})["id"]
    root_id = apigw.get_resources(restApiId=api_id)["items"][0]["id"]
    apigw.put_method(restApiId=api_id, resourceId=root_id, httpMethod="GET", authorizationType="NONE")
    apigw.put_integration(restApiId=api_id, resourceId=root_id, httpMethod="GET", type="MOCK")
    apigw.create_deployment(restApiId=api_id, stageName=env)
    apigw.create_domain_name(
        domainName=domain, regionalCertificateArn=cert_arn, endpointConfiguration={"types": ["REGIONAL"]}
    )
    apigw.create_base_path_mapping(domainName=domain, restApiId=api_id, basePath=names.base_path_mapping, stage=env)

    seed_table(plan, env, region)

    s3 = boto3.client("s3", region_name=region)
    create = {"Bucket": names.templates_bucket}
    if region != "us-east-1":
        create["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**create)
    s3.put_bucket_encryption(
        Bucket=names.templates_bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    s3.put_public_access_block(
        Bucket=names.templates_bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )

    role_arn = boto3.client("iam", region_name=region).create_role(
        RoleName=names.execution_role, AssumeRolePolicyDocument=json.dumps(TRUST_LAMBDA)
    )["Role"]["Arn"]
    seed_function(plan, env, region, role_arn)

    logs = boto3.client("logs", region_name=region)
    logs.create_log_group(logGroupName=names.log_group)
    logs.put_retention_policy(logGroupName=names.log_group, retentionInDays=spec.log_retention_days)

    cloudwatch = boto3.client("cloudwatch", region_name=region)
    for alarm in plan.alarms:
        stat = {"ExtendedStatistic": alarm.statistic} if alarm.statistic.startswith("p") else {
            "Statistic": alarm.statistic
        }
        cloudwatch.put_metric_alarm(
            AlarmName=names.alarms[alarm.id],
            MetricName=alarm.metric,
            Namespace="AWS/Lambda",
            Period=alarm.period_seconds,
            EvaluationPeriods=alarm.evaluation_periods,
            Threshold=alarm.threshold,
            ComparisonOperator=alarm.comparison,
            **stat,
        )

    dlq_url = boto3.client("sqs", region_name=region).create_queue(QueueName=names.dlq)["QueueUrl"]

    if spec.dr:
        seed_table(plan, env, spec.dr.failover_region)
        seed_function(plan, env, spec.dr.failover_region, role_arn)
    return {"cert_arn": cert_arn, "api_id": api_id, "role_arn": role_arn, "dlq_url": dlq_url}


@pytest.fixture
def certificate():
    """``certificate(region, names, days)`` imports a self-signed certificate into ACM and returns its ARN."""
    return import_certificate


@pytest.fixture(scope="session")
def plan() -> Plan:
    return load_plan(PLAN_PATH)


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials only, and no endpoint or profile leaking in from the shell."""
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN",
                "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(var, raising=False)
    import os

    for var in [v for v in os.environ if v.startswith("AWS_ENDPOINT_URL_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")


@pytest.fixture
def account(plan: Plan, aws_credentials: None, monkeypatch: pytest.MonkeyPatch):
    """``account(env, account_id=None)``: start moto as the account of ``env`` (or another one) and seed ``env``.

    moto reads MOTO_ACCOUNT_ID on each request, so it is set before anything is created."""
    from moto import mock_aws

    mocks = []

    def start(env: str, account_id: str | None = None, seed: bool = True, region: str | None = None):
        monkeypatch.setenv("MOTO_ACCOUNT_ID", account_id or plan.environment(env).account_id)
        mock = mock_aws()
        mock.start()
        mocks.append(mock)
        return seed_environment(plan, env, region) if seed else {}

    yield start
    for mock in reversed(mocks):
        mock.stop()
