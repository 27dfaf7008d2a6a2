"""The transport and storage checks of ``promoter security`` against moto: each passes on a correct resource and
fails, naming what is missing, on one that lacks it."""

from __future__ import annotations

import json
import time

import boto3
import pytest
from moto import mock_aws

from promoter.engine.security.storage import bucket_checks, log_sample, table_encryption

REGION = "eu-west-1"


@pytest.fixture
def aws(monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield {name: boto3.client(name, region_name=REGION) for name in ("dynamodb", "s3", "logs")}


def _bucket(s3, name: str, *, secure: bool) -> None:
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    if not secure:
        return
    s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]})
    s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    s3.put_bucket_policy(Bucket=name, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": [f"arn:aws:s3:::{name}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}))


def test_a_secure_bucket_passes_and_a_bare_one_fails_each_check(aws):
    _bucket(aws["s3"], "good", secure=True)
    _bucket(aws["s3"], "bare", secure=False)
    assert [(r.name, r.status) for r in bucket_checks(aws["s3"], "good")] == [
        ("bucket default encryption", "passed"), ("bucket public access block", "passed"),
        ("bucket policy requires TLS", "passed")]
    bare = bucket_checks(aws["s3"], "bare")
    assert {r.name: r.status for r in bare} == {"bucket default encryption": "failed",
                                                "bucket public access block": "failed",
                                                "bucket policy requires TLS": "failed"}
    assert "ServerSideEncryptionConfigurationNotFoundError" in bare[0].message
    assert all(r.severity == "high" for r in bare if r.finding)
    owned = bucket_checks(aws["s3"], "bare", owner="2_bbws_s3_schemas")
    assert all(r.severity == "medium" and "owned by 2_bbws_s3_schemas" in r.message for r in owned if r.finding)


def test_the_table_encryption_is_read_from_the_table(aws):
    ddb = aws["dynamodb"]
    ddb.create_table(TableName="t", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST", SSESpecification={"Enabled": True})
    result = table_encryption(ddb, "t")
    assert result.status == "passed" and result.details["sse"]["Status"] == "ENABLED"
    missing = table_encryption(ddb, "no-such-table")
    assert missing.status == "failed" and "ResourceNotFoundException" in missing.message


def test_the_log_sample_finds_a_logged_token(aws):
    logs = aws["logs"]
    logs.create_log_group(logGroupName="/aws/lambda/fn")
    logs.create_log_stream(logGroupName="/aws/lambda/fn", logStreamName="s")
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName="/aws/lambda/fn", logStreamName="s", logEvents=[
        {"timestamp": now, "message": '{"message":"request completed","status_code":200}'}])
    clean = log_sample(logs, "/aws/lambda/fn", minutes=10, limit=100)
    assert clean.status == "passed" and clean.details["events_sampled"] == 1
    logs.put_log_events(logGroupName="/aws/lambda/fn", logStreamName="s", logEvents=[
        {"timestamp": now + 1, "message": '{"headers":{"Authorization":"Bearer eyJhbGciOiJSUzI1NiJ9.'
                                          'eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJl"}}'}])
    leaked = log_sample(logs, "/aws/lambda/fn", minutes=10, limit=100)
    assert leaked.status == "failed" and leaked.severity == "high"
    assert leaked.details["hits"] == {"bearer token": 1, "JWT": 1}
    assert log_sample(logs, "/aws/lambda/none", minutes=10, limit=10).status == "failed"
