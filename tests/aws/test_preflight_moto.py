"""Every preflight check against moto: a correct environment passes, then each test breaks one thing."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from promoter.adapters.aws import AwsSessionFactory
from promoter.engine.preflight import PreflightContext, Status, checklist, run_checks, select_checks

AWS_GROUPS = ["aws", "dns", "acm", "apigw", "dynamodb", "s3", "iam", "lambda", "logs", "cloudwatch", "sqs", "dr"]


def preflight(plan, env, only=AWS_GROUPS, **ctx_options):
    spec = plan.environment(env)
    ctx = PreflightContext(plan=plan, env=env, aws=AwsSessionFactory(region=spec.region), **ctx_options)
    report = run_checks(select_checks(checklist(plan, env), only=only), ctx)
    return report, {r.id: r for r in report.results}


def statuses(results):
    return {i: str(r.status) for i, r in results.items()}


# -- the passing baseline ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("env", ["sit", "prod"])
def test_a_correctly_seeded_environment_passes_every_aws_check(plan, account, env):
    # GIVEN an account holding every resource of the plan for env
    account(env)
    # WHEN preflight runs the AWS checks
    report, results = preflight(plan, env)
    # THEN every check passes and the run is ok
    got = statuses(results)
    if env == "sit":
        assert {got.pop("dr.table"), got.pop("dr.function")} == {"SKIP"}
    assert set(got.values()) == {"PASS"}, {i: r.evidence for i, r in results.items()}
    assert report.ok
    expected = {"aws.account", "aws.region", "dns.zone", "acm.certificate", "apigw.domain", "dynamodb.table",
                "dynamodb.pitr", "s3.bucket", "iam.role", "lambda.function", "lambda.alias", "logs.group",
                "cloudwatch.alarms", "sqs.dlq", "dr.table", "dr.function"}
    assert set(results) == expected
    assert plan.environment(env).account_id in results["aws.account"].evidence
    assert "v1.0" in results["apigw.domain"].evidence


# -- account and region -------------------------------------------------------------------------------------------
def test_credentials_for_another_account_fail_the_account_guard(plan, account):
    account("sit", account_id=plan.environment("prod").account_id)
    report, results = preflight(plan, "sit", only=["aws.account"])
    account_check = results["aws.account"]
    assert account_check.status is Status.FAIL
    assert plan.environment("prod").account_id in account_check.evidence
    assert plan.environment("sit").account_id in account_check.evidence
    assert "Tebogo-sit" in account_check.remedy
    assert not report.ok


def test_resources_seeded_in_the_wrong_region_are_not_found(plan, account, monkeypatch):
    # GIVEN sit's resources live in us-east-1 and the shell's default region is us-east-1 too
    account("sit", region="us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    report, results = preflight(plan, "sit")
    # THEN promoter still looks in the plan's region, finds nothing there, and says the shell region differs
    assert results["aws.account"].status is Status.PASS
    assert results["aws.region"].status is Status.WARN
    assert "us-east-1" in results["aws.region"].evidence
    assert results["dynamodb.table"].status is Status.FAIL
    assert "eu-west-1" in results["dynamodb.table"].evidence
    assert results["lambda.function"].status is Status.FAIL
    assert not report.ok


# -- DNS, certificate, API Gateway ---------------------------------------------------------------------------------
def test_missing_hosted_zone_fails(plan, account):
    account("sit")
    r53 = boto3.client("route53")
    for zone in r53.list_hosted_zones()["HostedZones"]:
        r53.delete_hosted_zone(Id=zone["Id"])
    _, results = preflight(plan, "sit", only=["dns"])
    assert results["dns.zone"].status is Status.FAIL
    assert "api.sit.kimmyai.io" in results["dns.zone"].evidence


def _delete_certificates(region):
    acm = boto3.client("acm", region_name=region)
    apigw = boto3.client("apigateway", region_name=region)
    for item in apigw.get_domain_names()["items"]:  # ACM refuses to delete a certificate in use
        apigw.delete_domain_name(domainName=item["domainName"])
    for cert in acm.list_certificates()["CertificateSummaryList"]:
        acm.delete_certificate(CertificateArn=cert["CertificateArn"])


def test_pending_certificate_fails(plan, account):
    account("sit")
    _delete_certificates("eu-west-1")
    boto3.client("acm", region_name="eu-west-1").request_certificate(DomainName="api.sit.kimmyai.io")
    _, results = preflight(plan, "sit", only=["acm"])
    assert results["acm.certificate"].status is Status.FAIL
    assert "PENDING_VALIDATION" in results["acm.certificate"].evidence


def test_certificate_expiring_within_30_days_fails(plan, account, certificate):
    account("sit")
    _delete_certificates("eu-west-1")
    certificate("eu-west-1", ["api.sit.kimmyai.io"], days=10)
    _, results = preflight(plan, "sit", only=["acm"])
    assert results["acm.certificate"].status is Status.FAIL
    assert "days left" in results["acm.certificate"].evidence


def test_wildcard_certificate_covers_the_domain(plan, account, certificate):
    account("prod")
    _delete_certificates("af-south-1")
    certificate("af-south-1", ["kimmyai.io", "*.kimmyai.io"], days=200)
    _, results = preflight(plan, "prod", only=["acm"])
    assert results["acm.certificate"].status is Status.PASS


def test_certificate_for_another_name_only_fails(plan, account, certificate):
    account("sit")
    _delete_certificates("eu-west-1")
    certificate("eu-west-1", ["www.kimmyai.io"], days=200)
    _, results = preflight(plan, "sit", only=["acm"])
    assert results["acm.certificate"].status is Status.FAIL
    assert "no ACM certificate" in results["acm.certificate"].evidence


def test_a_clock_past_the_margin_fails_a_valid_certificate(plan, account):
    class Later:
        def now(self):
            return datetime.now(UTC) + timedelta(days=340)

    account("sit")
    _, results = preflight(plan, "sit", only=["acm"], clock=Later())
    assert results["acm.certificate"].status is Status.FAIL


def test_missing_base_path_mapping_fails(plan, account):
    account("sit")
    boto3.client("apigateway", region_name="eu-west-1").delete_base_path_mapping(
        domainName="api.sit.kimmyai.io", basePath="v1.0"
    )
    _, results = preflight(plan, "sit", only=["apigw"])
    assert results["apigw.domain"].status is Status.FAIL
    assert "no base path mapping v1.0" in results["apigw.domain"].evidence


def test_missing_custom_domain_fails(plan, account):
    account("sit")
    boto3.client("apigateway", region_name="eu-west-1").delete_domain_name(domainName="api.sit.kimmyai.io")
    _, results = preflight(plan, "sit", only=["apigw"])
    assert results["apigw.domain"].status is Status.FAIL
    assert "no custom domain" in results["apigw.domain"].evidence


# -- data ----------------------------------------------------------------------------------------------------------
def test_missing_table_fails_with_the_owning_project_in_the_remedy(plan, account):
    account("sit")
    boto3.client("dynamodb", region_name="eu-west-1").delete_table(TableName="campaigns-sit")
    report, results = preflight(plan, "sit", only=["dynamodb"])
    assert results["dynamodb.table"].status is Status.FAIL
    assert "2_bbws_dynamodb_schemas" in results["dynamodb.table"].remedy
    assert not report.ok


def test_wrong_partition_key_fails(plan, account):
    account("sit", seed=False)
    boto3.client("dynamodb", region_name="eu-west-1").create_table(
        TableName="campaigns-sit",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    _, results = preflight(plan, "sit", only=["dynamodb.table"])
    assert results["dynamodb.table"].status is Status.FAIL
    assert "partition key is pk" in results["dynamodb.table"].evidence


@pytest.mark.parametrize(("env", "status", "ok"), [("prod", Status.FAIL, False), ("sit", Status.WARN, True)])
def test_pitr_off_blocks_prod_and_warns_elsewhere(plan, account, env, status, ok):
    account(env)
    region = plan.environment(env).region
    boto3.client("dynamodb", region_name=region).update_continuous_backups(
        TableName=f"campaigns-{env}", PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False}
    )
    report, results = preflight(plan, env, only=["dynamodb"])
    assert results["dynamodb.pitr"].status is status
    assert results["dynamodb.table"].status is Status.PASS
    assert report.ok is ok


def test_bucket_without_encryption_or_public_access_block_fails(plan, account):
    account("sit")
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.delete_public_access_block(Bucket="bbws-templates-sit")
    s3.delete_bucket_encryption(Bucket="bbws-templates-sit")
    _, results = preflight(plan, "sit", only=["s3"])
    bucket = results["s3.bucket"]
    assert bucket.status is Status.FAIL
    assert "public access not blocked" in bucket.evidence
    # moto may report a default encryption after deletion, as AWS does since 2023; accept either


def test_missing_bucket_fails(plan, account):
    account("sit")
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.delete_bucket(Bucket="bbws-templates-sit")
    _, results = preflight(plan, "sit", only=["s3"])
    assert results["s3.bucket"].status is Status.FAIL
    assert "not found" in results["s3.bucket"].evidence


# -- compute and operations ---------------------------------------------------------------------------------------
def test_missing_role_fails(plan, account):
    account("sit", seed=False)
    _, results = preflight(plan, "sit", only=["iam"])
    assert results["iam.role"].status is Status.FAIL
    assert "campaigns-lambda-role-sit" in results["iam.role"].evidence


def test_missing_alias_fails_but_function_passes(plan, account):
    account("sit")
    boto3.client("lambda", region_name="eu-west-1").delete_alias(FunctionName="campaigns-handler-sit", Name="live")
    _, results = preflight(plan, "sit", only=["lambda"])
    assert results["lambda.function"].status is Status.PASS
    assert results["lambda.alias"].status is Status.FAIL


def test_log_group_without_retention_fails(plan, account):
    account("sit")
    boto3.client("logs", region_name="eu-west-1").delete_retention_policy(
        logGroupName="/aws/lambda/campaigns-handler-sit"
    )
    _, results = preflight(plan, "sit", only=["logs"])
    assert results["logs.group"].status is Status.FAIL
    assert "never expires" in results["logs.group"].evidence


def test_missing_alarm_fails_naming_it(plan, account):
    account("sit")
    boto3.client("cloudwatch", region_name="eu-west-1").delete_alarms(AlarmNames=["campaigns-sit-throttling"])
    _, results = preflight(plan, "sit", only=["cloudwatch"])
    assert results["cloudwatch.alarms"].status is Status.FAIL
    assert "campaigns-sit-throttling" in results["cloudwatch.alarms"].evidence
    assert "1 of 4" in results["cloudwatch.alarms"].evidence


def test_missing_dlq_fails(plan, account):
    account("sit")
    sqs = boto3.client("sqs", region_name="eu-west-1")
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName="campaigns-dlq-sit")["QueueUrl"])
    _, results = preflight(plan, "sit", only=["sqs"])
    assert results["sqs.dlq"].status is Status.FAIL
    assert "campaigns-dlq-sit" in results["sqs.dlq"].evidence


# -- disaster recovery ---------------------------------------------------------------------------------------------
def test_prod_without_dr_replica_and_function_fails(plan, account):
    account("prod")
    boto3.client("dynamodb", region_name="eu-west-1").delete_table(TableName="campaigns-prod")
    boto3.client("lambda", region_name="eu-west-1").delete_function(FunctionName="campaigns-handler-prod")
    report, results = preflight(plan, "prod", only=["dr"])
    assert results["dr.table"].status is Status.FAIL
    assert "eu-west-1" in results["dr.table"].evidence
    assert results["dr.function"].status is Status.FAIL
    assert not report.ok


def test_dr_checks_skip_where_the_plan_has_no_dr_region(plan, account):
    account("sit")
    report, results = preflight(plan, "sit", only=["dr"])
    assert statuses(results) == {"dr.table": "SKIP", "dr.function": "SKIP"}
    assert report.ok


# -- errors become failed checks --------------------------------------------------------------------------------
def test_no_credentials_fail_the_account_check_once_and_leave_the_rest_unrun(plan, aws_credentials, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    report, results = preflight(plan, "sit", only=["aws.account", "aws.region", "dynamodb.table", "s3.bucket"])
    assert not report.ok
    account = results["aws.account"]
    assert account.status is Status.FAIL and "no AWS credentials" in account.evidence
    assert "aws sso login --profile Tebogo-sit" in account.remedy
    for check in ("dynamodb.table", "s3.bucket"):  # one cause, reported once: the others say why they did not run
        assert results[check].status is Status.SKIP
        assert results[check].evidence == f"not run: {account.evidence} (see aws.account)"
    assert results["aws.region"].status is Status.PASS  # needs no call


# -- code checks in a temporary git repository -----------------------------------------------------------------------
def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    _git(tmp_path, "init", "-q", "-b", "main")
    _git(tmp_path, "config", "user.email", "ci@example.com")
    _git(tmp_path, "config", "user.name", "CI")
    (tmp_path / "app.py").write_text("print('v1')\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "release")
    _git(tmp_path, "tag", "v1.0.0")
    return tmp_path


def test_tagged_clean_main_passes_the_code_checks(plan, repo):
    report, results = preflight(plan, "sit", only=["code"], repo=repo)
    assert statuses(results) == {"code.branch": "PASS", "code.clean": "PASS", "code.tag": "PASS"}
    assert "v1.0.0" in results["code.tag"].evidence
    assert report.ok


def test_other_branch_fails(plan, repo):
    _git(repo, "checkout", "-q", "-b", "feature")
    _, results = preflight(plan, "sit", only=["code.branch"], repo=repo)
    assert results["code.branch"].status is Status.FAIL
    assert "feature" in results["code.branch"].evidence


def test_dirty_tree_fails(plan, repo):
    (repo / "app.py").write_text("print('v2')\n")
    (repo / "new.txt").write_text("x")
    _, results = preflight(plan, "sit", only=["code.clean"], repo=repo)
    assert results["code.clean"].status is Status.FAIL
    assert "2 uncommitted or untracked" in results["code.clean"].evidence


def test_untagged_head_fails_and_release_option_must_be_on_head(plan, repo):
    (repo / "app.py").write_text("print('v2')\n")
    _git(repo, "commit", "-q", "-am", "next")
    _, results = preflight(plan, "sit", only=["code.tag"], repo=repo)
    assert results["code.tag"].status is Status.FAIL
    _git(repo, "tag", "v1.1.0")
    _, results = preflight(plan, "sit", only=["code.tag"], repo=repo, release="v1.0.0")
    assert results["code.tag"].status is Status.FAIL
    assert "not tagged v1.0.0" in results["code.tag"].evidence
    _, results = preflight(plan, "sit", only=["code.tag"], repo=repo, release="v1.1.0")
    assert results["code.tag"].status is Status.PASS


def test_not_a_repository_fails_with_the_reason(plan, tmp_path):
    _, results = preflight(plan, "sit", only=["code.branch"], repo=tmp_path / "nowhere")
    assert results["code.branch"].status is Status.FAIL
    assert "git" in results["code.branch"].evidence
