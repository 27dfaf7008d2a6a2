"""Seed a sandbox with what Terraform and the dependency projects would have created for one environment.

Every name, region, threshold and setting comes from the plan. Stages:

1. data: the table (partition key from the plan, point-in-time recovery on), the templates bucket (default
   encryption, public access block, a sample template ``templates/welcome.html``) and the state bucket
   (:func:`state_bucket_name`, versioning on) where the ledger and the lock can live (``SeedResult.state_url``);
2. operations: the execution role, the log group with the environment's retention, the DLQ, the SNS topic and
   the plan's CloudWatch alarms;
3. users: the Cognito user pool with its app client, the groups ``campaigns-viewer/editor/admin`` and one test
   user per group plus one in no group, with known permanent passwords (:data:`TEST_PASSWORD`);
4. edge: the hosted zone of the domain, an imported self-signed certificate (ISSUED, SAN = domain, one year),
   the REST API with stage ``v1``, the custom domain and the base path mapping, and the domain's alias record;
5. function (:func:`seed_function`): the artifact of :data:`SEED_RELEASE` built by
   :func:`promoter.engine.build.build` (target ``local``), created through the Lambda endpoint (the sandbox's
   Lambda front, so it keeps the package to run it), published as version 1 with the release description, and
   the alias on version 1 (the description is the release engine's,
   :func:`promoter.adapters.lambda_.version_description`);
6. disaster recovery, for an environment with ``dr``: the table and the function in the failover region.

Stages 1-4 are :func:`seed_baseline`; they talk to moto only. The user pool id they return is what the API
front needs to start, so the manager runs the baseline before starting the front and the function after.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from promoter.engine.build import Artifact
    from promoter.plan.models import Plan

SEED_RELEASE = "v1.0.0"
STAGE_NAME = "v1"
GROUPS = ("campaigns-viewer", "campaigns-editor", "campaigns-admin")
NO_GROUP = "none"  # the key of the test user who belongs to no group
TEST_PASSWORD = "Sandbox-Passw0rd!"
DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
LAMBDA_METRICS = {"Invocations", "Errors", "Duration", "Throttles", "ConcurrentExecutions"}
SQS_METRICS = {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage", "NumberOfMessagesSent"}

Progress = Callable[[str], None]


def sandbox_username(group: str) -> str:
    """The test user of ``group`` (``campaigns-admin`` -> ``sandbox-admin``; :data:`NO_GROUP` -> ``sandbox-none``)."""
    return "sandbox-" + group.removeprefix("campaigns-")


@dataclass(frozen=True)
class Target:
    """Where the sandbox's AWS services answer."""

    moto_url: str
    region: str
    lambda_url: str | None = None  # the Lambda front; moto itself when None

    def client(self, service: str, region: str | None = None) -> Any:
        import boto3
        from botocore.config import Config

        endpoint = (self.lambda_url or self.moto_url) if service == "lambda" else self.moto_url
        return boto3.client(
            service,
            endpoint_url=endpoint,
            region_name=region or self.region,
            config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=60),
            **DUMMY_CREDENTIALS,
        )


@dataclass
class SeedResult:
    env: str
    account_id: str
    region: str
    user_pool_id: str = ""
    user_pool_client_id: str = ""
    users: dict[str, str] = field(default_factory=dict)  # group (or NO_GROUP) -> username
    rest_api_id: str = ""
    certificate_arn: str = ""
    hosted_zone_id: str = ""
    role_arn: str = ""
    dlq_url: str = ""
    topic_arn: str = ""
    function_arn: str = ""
    function_version: str = ""
    artifact_sha256: str = ""
    description: str = ""
    state_url: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def seed(
    plan: Plan,
    env: str,
    target: Target,
    *,
    artifacts_dir: Path,
    cache_dir: Path | None = None,
    progress: Progress = lambda _m: None,
) -> SeedResult:
    """Both halves: :func:`seed_baseline`, then :func:`seed_function`."""
    result = seed_baseline(plan, env, target, progress=progress)
    return seed_function(plan, env, target, result, artifacts_dir=artifacts_dir, cache_dir=cache_dir,
                         progress=progress)


def seed_baseline(plan: Plan, env: str, target: Target, *, progress: Progress = lambda _m: None) -> SeedResult:
    spec = plan.environment(env)
    names = plan.names(env)
    result = SeedResult(env=env, account_id=spec.account_id, region=spec.region)

    progress(f"seeding table {names.table} and bucket {names.templates_bucket}")
    _table(target.client("dynamodb"), names.table, names.table_partition_key)
    _bucket(target.client("s3"), names.templates_bucket, spec.region)
    state_bucket, state_prefix = state_bucket_name(plan, env)
    progress(f"seeding state bucket {state_bucket} (versioned)")
    _state_bucket(target.client("s3"), state_bucket, spec.region)
    result.state_url = f"s3://{state_bucket}/{state_prefix}"

    progress("seeding role, log group, queue, topic and alarms")
    result.role_arn = _role(target.client("iam"), names.execution_role, names)
    logs = target.client("logs")
    logs.create_log_group(logGroupName=names.log_group)
    logs.put_retention_policy(logGroupName=names.log_group, retentionInDays=spec.log_retention_days)
    result.dlq_url = target.client("sqs").create_queue(QueueName=names.dlq)["QueueUrl"]
    result.topic_arn = target.client("sns").create_topic(Name=names.sns_topic)["TopicArn"]
    _alarms(target.client("cloudwatch"), plan, env, result.topic_arn)

    progress(f"seeding user pool {names.user_pool}")
    _users(target.client("cognito-idp"), names.user_pool, names.user_pool_client, result)

    progress(f"seeding hosted zone, certificate and custom domain {spec.domain}")
    _edge(target, plan, env, result)

    if spec.dr:
        progress(f"seeding the DR table in {spec.dr.failover_region}")
        _table(target.client("dynamodb", spec.dr.failover_region), names.table, names.table_partition_key)
    return result


def seed_function(
    plan: Plan,
    env: str,
    target: Target,
    result: SeedResult,
    *,
    artifacts_dir: Path,
    repo: Path,
    cache_dir: Path | None = None,
    progress: Progress = lambda _m: None,
) -> SeedResult:
    from promoter.adapters.git import GitRepo
    from promoter.adapters.lambda_ import version_description
    from promoter.engine.build import build

    spec = plan.environment(env)
    names = plan.names(env)
    progress(f"building {SEED_RELEASE} for the sandbox")
    # the artifact AWS would get: the runtime's wheels, run by the sandbox under the runtime's Python
    artifact = build(repo=repo, release=SEED_RELEASE, target="lambda", out_dir=artifacts_dir, cache_dir=cache_dir,
                     python_version=plan.service.python_version, platform=plan.service.wheel_platform,
                     progress=progress)
    description = version_description(SEED_RELEASE, GitRepo(repo).head_sha(), artifact.sha256)
    regions = [spec.region] + ([spec.dr.failover_region] if spec.dr else [])
    for region in regions:
        progress(f"creating function {names.function} in {region} through {target.lambda_url or target.moto_url}")
        arn, version = _function(target.client("lambda", region), plan, env, result.role_arn, artifact, description,
                                 _dlq_arn(target.client("sqs", region), names.dlq, region == spec.region))
        if region == spec.region:
            result.function_arn, result.function_version = arn, version
    result.artifact_sha256 = artifact.sha256
    result.description = description
    return result


# -- stages ----------------------------------------------------------------------------------------------------


def state_bucket_name(plan: Plan, env: str) -> tuple[str, str]:
    """The state bucket and prefix: the plan's S3 state backend for ``env`` when it has one, else one per
    account, as a team would create it next to its Terraform state bucket."""
    backend = plan.state.environments.get(env) or plan.state.default
    if backend.backend == "s3" and backend.bucket:
        return backend.bucket, backend.prefix
    return f"promoter-state-{plan.environment(env).account_id}", backend.prefix


def _state_bucket(s3: Any, name: str, region: str) -> None:
    if region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})


def _table(ddb: Any, name: str, key: str) -> None:
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        SSESpecification={"Enabled": True},
    )
    ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    ddb.update_continuous_backups(
        TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
    )


def _bucket(s3: Any, name: str, region: str) -> None:
    if region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    s3.put_bucket_encryption(
        Bucket=name,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": True}]
        },
    )
    s3.put_public_access_block(
        Bucket=name,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    body = (
        "<!doctype html>\n<html><body><h1>Welcome, {{ first_name }}</h1>"
        "<p>{{ campaign_name }} starts on {{ start_date }}.</p></body></html>\n"
    )
    s3.put_object(Bucket=name, Key="templates/welcome.html", Body=body.encode(), ContentType="text/html")


def _role(iam: Any, name: str, names: Any) -> str:
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                           "dynamodb:Query", "dynamodb:Scan"],
                "Resource": f"arn:aws:dynamodb:*:*:table/{names.table}",
            },
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": f"arn:aws:s3:::{names.templates_bucket}/*"},
            {"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Resource": "*"},
            {"Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": f"arn:aws:sqs:*:*:{names.dlq}"},
        ],
    }
    iam.put_role_policy(RoleName=name, PolicyName=f"{name}-access", PolicyDocument=json.dumps(policy))
    return arn


def alarm_request(alarm: Any, names: Any, topic_arn: str) -> dict[str, Any]:
    """The ``PutMetricAlarm`` request for one alarm of the plan (pure; unit-testable)."""
    request: dict[str, Any] = {
        "AlarmName": alarm.name.replace("{env}", names.env),
        "AlarmDescription": alarm.description,
        "Threshold": float(alarm.threshold),
        "ComparisonOperator": alarm.comparison,
        "EvaluationPeriods": alarm.evaluation_periods,
        "TreatMissingData": "notBreaching",
        "ActionsEnabled": True,
        "AlarmActions": [topic_arn] if "sns" in alarm.actions else [],
    }
    function_dims = [{"Name": "FunctionName", "Value": names.function}]
    if alarm.metric == "error_rate_pct":
        # Errors / Invocations as a percentage: metric math over the function's two Sum metrics.
        def stat(metric_id: str, metric: str) -> dict[str, Any]:
            return {
                "Id": metric_id,
                "ReturnData": False,
                "MetricStat": {
                    "Metric": {"Namespace": "AWS/Lambda", "MetricName": metric, "Dimensions": function_dims},
                    "Period": alarm.period_seconds,
                    "Stat": "Sum",
                },
            }

        request["Metrics"] = [
            stat("errors", "Errors"),
            stat("invocations", "Invocations"),
            {"Id": "error_rate", "Expression": "100 * errors / invocations", "Label": "Error rate (%)",
             "ReturnData": True},
        ]
        return request
    if alarm.metric in SQS_METRICS:
        request.update(Namespace="AWS/SQS", Dimensions=[{"Name": "QueueName", "Value": names.dlq}])
    else:
        request.update(Namespace="AWS/Lambda", Dimensions=function_dims)
    request.update(MetricName=alarm.metric, Period=alarm.period_seconds)
    from promoter.sandbox.moto_server import parse_percentile

    if parse_percentile(alarm.statistic) is not None:
        request["ExtendedStatistic"] = alarm.statistic
    else:
        request["Statistic"] = alarm.statistic
    return request


def _alarms(cloudwatch: Any, plan: Plan, env: str, topic_arn: str) -> None:
    names = plan.names(env)
    for alarm in plan.alarms:
        cloudwatch.put_metric_alarm(**alarm_request(alarm, names, topic_arn))


def _users(cognito: Any, pool_name: str, client_name: str, result: SeedResult) -> None:
    pool = cognito.create_user_pool(
        PoolName=pool_name,
        Policies={"PasswordPolicy": {"MinimumLength": 12, "RequireUppercase": True, "RequireLowercase": True,
                                     "RequireNumbers": True, "RequireSymbols": True}},
        AutoVerifiedAttributes=["email"],
    )["UserPool"]
    result.user_pool_id = pool["Id"]
    client = cognito.create_user_pool_client(
        UserPoolId=pool["Id"],
        ClientName=client_name,
        GenerateSecret=False,
        ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]
    result.user_pool_client_id = client["ClientId"]
    for group in GROUPS:
        cognito.create_group(GroupName=group, UserPoolId=pool["Id"], Description=f"{group} (sandbox)")
    for group in (*GROUPS, NO_GROUP):
        username = sandbox_username(group)
        cognito.admin_create_user(
            UserPoolId=pool["Id"],
            Username=username,
            MessageAction="SUPPRESS",
            UserAttributes=[
                {"Name": "email", "Value": f"{username}@example.com"},
                {"Name": "email_verified", "Value": "true"},
            ],
        )
        cognito.admin_set_user_password(UserPoolId=pool["Id"], Username=username, Password=TEST_PASSWORD,
                                        Permanent=True)
        if group != NO_GROUP:
            cognito.admin_add_user_to_group(UserPoolId=pool["Id"], Username=username, GroupName=group)
        result.users[group] = username


def self_signed_certificate(domain: str, days: int = 365) -> tuple[bytes, bytes]:
    """A self-signed certificate for ``domain`` (SAN = domain) valid ``days`` days: (cert PEM, key PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _edge(target: Target, plan: Plan, env: str, result: SeedResult) -> None:
    spec = plan.environment(env)
    names = plan.names(env)
    route53 = target.client("route53")
    zone = route53.create_hosted_zone(Name=spec.domain + ".", CallerReference=f"promoter-sandbox-{env}")
    result.hosted_zone_id = zone["HostedZone"]["Id"].rsplit("/", 1)[-1]

    cert_pem, key_pem = self_signed_certificate(spec.domain)
    acm = target.client("acm")
    result.certificate_arn = acm.import_certificate(Certificate=cert_pem, PrivateKey=key_pem)["CertificateArn"]

    apigw = target.client("apigateway")
    api = apigw.create_rest_api(
        name=names.rest_api,
        description=f"{plan.service.name} ({env})",
        endpointConfiguration={"types": ["REGIONAL"]},
    )
    result.rest_api_id = api["id"]
    root_id = next(r["id"] for r in apigw.get_resources(restApiId=api["id"])["items"] if r["path"] == "/")
    proxy = apigw.create_resource(restApiId=api["id"], parentId=root_id, pathPart="{proxy+}")
    authorizer = apigw.create_authorizer(
        restApiId=api["id"],
        name=f"{names.user_pool}-authorizer",
        type="COGNITO_USER_POOLS",
        providerARNs=[f"arn:aws:cognito-idp:{spec.region}:{spec.account_id}:userpool/{result.user_pool_id}"],
        identitySource="method.request.header.Authorization",
    )
    apigw.put_method(restApiId=api["id"], resourceId=proxy["id"], httpMethod="ANY",
                     authorizationType="COGNITO_USER_POOLS", authorizerId=authorizer["id"])
    function_arn = f"arn:aws:lambda:{spec.region}:{spec.account_id}:function:{names.function}:{names.alias}"
    apigw.put_integration(
        restApiId=api["id"],
        resourceId=proxy["id"],
        httpMethod="ANY",
        type="AWS_PROXY",
        integrationHttpMethod="POST",
        uri=f"arn:aws:apigateway:{spec.region}:lambda:path/2015-03-31/functions/{function_arn}/invocations",
    )
    apigw.create_deployment(restApiId=api["id"], stageName=STAGE_NAME, description="sandbox baseline")
    domain = apigw.create_domain_name(
        domainName=spec.domain,
        regionalCertificateArn=result.certificate_arn,
        endpointConfiguration={"types": ["REGIONAL"]},
        securityPolicy="TLS_1_2",
    )
    apigw.create_base_path_mapping(
        domainName=spec.domain, restApiId=api["id"], basePath=names.base_path_mapping, stage=STAGE_NAME
    )
    target_name = domain.get("regionalDomainName")
    target_zone = domain.get("regionalHostedZoneId")
    if target_name and target_zone:
        route53.change_resource_record_sets(
            HostedZoneId=result.hosted_zone_id,
            ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": {
                "Name": spec.domain + ".",
                "Type": "A",
                "AliasTarget": {"HostedZoneId": target_zone, "DNSName": target_name, "EvaluateTargetHealth": False},
            }}]},
        )


def _dlq_arn(sqs: Any, name: str, exists: bool) -> str:
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"] if exists else sqs.create_queue(QueueName=name)["QueueUrl"]
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def _function(
    lam: Any, plan: Plan, env: str, role_arn: str, artifact: Artifact, description: str, dlq_arn: str
) -> tuple[str, str]:
    names = plan.names(env)
    service = plan.service
    lam.create_function(
        FunctionName=names.function,
        Runtime=service.runtime,
        Role=role_arn,
        Handler=service.handler,
        Code={"ZipFile": Path(artifact.path).read_bytes()},
        Description=f"{service.name} ({env})",
        Timeout=service.timeout_seconds,
        MemorySize=service.memory_mb,
        Architectures=[service.architecture],
        Environment={"Variables": {
            "CAMPAIGNS_TABLE": names.table,
            "TEMPLATES_BUCKET": names.templates_bucket,
            "RELEASE_VERSION": artifact.release,
        }},
        DeadLetterConfig={"TargetArn": dlq_arn},
        Publish=False,
    )
    lam.get_waiter("function_active_v2").wait(FunctionName=names.function,
                                               WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    published = lam.publish_version(FunctionName=names.function, Description=description,
                                    CodeSha256=artifact.code_sha256)
    version = published["Version"]
    lam.create_alias(FunctionName=names.function, Name=names.alias, FunctionVersion=version,
                     Description=f"traffic alias ({SEED_RELEASE})")
    return published["FunctionArn"].rsplit(":", 1)[0], version



