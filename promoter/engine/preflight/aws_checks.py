"""Preflight checks that read the environment's AWS account: one function per runbook checklist item.

Each function gathers facts with read-only calls and leaves the verdict to :mod:`.decisions`. A missing resource
is a failed finding with a remedy; any other AWS error propagates and the runner turns it into a failed result
with the translated reason (access denied, throttled, unreachable, no credentials).
"""

from __future__ import annotations

import os
from typing import Any

from promoter.adapters.aws import error_code
from promoter.engine.preflight import decisions
from promoter.engine.preflight.core import Finding, PreflightContext, failed, passed, skipped, warned

NOT_FOUND = {
    "ResourceNotFoundException",
    "NoSuchEntity",
    "NotFoundException",
    "NoSuchBucket",
    "404",
    "NotFound",
    "QueueDoesNotExist",
    "AWS.SimpleQueueService.NonExistentQueue",
    "TableNotFoundException",
}


def _missing(exc: Exception) -> bool:
    return error_code(exc) in NOT_FOUND


def _terraform_remedy(ctx: PreflightContext, what: str) -> str:
    return f"create {what} with `promoter infra apply --env {ctx.env}` (campaigns_lambda/terraform)"


def _owner_remedy(ctx: PreflightContext, resource: str, what: str) -> str:
    owners = {d.resource: d.owner for d in ctx.plan.dependencies}
    if resource in owners:
        return f"{what} is owned by {owners[resource]}: promote that project to {ctx.env} first"
    return _terraform_remedy(ctx, what)


# -- account and region ---------------------------------------------------------------------------------------
def check_account(ctx: PreflightContext) -> Finding:
    identity = ctx.client("sts").get_caller_identity()
    account, arn = identity.get("Account"), identity.get("Arn", "?")
    expected = ctx.spec.account_id
    if account != expected:
        return failed(
            f"credentials are for account {account} ({arn}), the plan's {ctx.env} account is {expected}",
            f"log in to the {ctx.env} account: aws sso login --profile {ctx.spec.profile}, or pass --profile",
        )
    return passed(f"account {account} as {arn}")


def check_region(ctx: PreflightContext) -> Finding:
    """The runbook's "confirm region": every call is made in the plan's region; a different default region in the
    shell or profile is shown, because hand-run AWS commands from the same shell would go elsewhere."""
    used = ctx.client("sts").meta.region_name
    if used != ctx.region:
        return failed(f"calls go to {used}, the plan's {ctx.env} region is {ctx.region}")
    configured = _configured_region(ctx)
    if configured and configured != ctx.region:
        return warned(
            f"promoter uses {ctx.region} (the plan's); the shell/profile default region is {configured}",
            f"export AWS_DEFAULT_REGION={ctx.region} so hand-run aws commands hit the same region",
        )
    return passed(f"{ctx.region}" + (" (matches the configured default)" if configured else ""))


def _configured_region(ctx: PreflightContext) -> str | None:
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if os.environ.get(var):
            return os.environ[var]
    resolved = getattr(ctx.aws, "resolved_profile", None)
    profile = resolved() if callable(resolved) else None
    if not profile:
        return None
    try:
        import botocore.session

        return botocore.session.Session(profile=profile).get_config_variable("region")
    except Exception:  # an unreadable profile is reported by the account check
        return None


# -- DNS, certificate, API Gateway ----------------------------------------------------------------------------
def check_zone(ctx: PreflightContext) -> Finding:
    route53 = ctx.client("route53")
    zones: list[dict[str, Any]] = []
    for candidate in decisions.zone_candidates(ctx.spec.domain):
        page = route53.list_hosted_zones_by_name(DNSName=candidate, MaxItems="5")
        zones.extend(page.get("HostedZones", []))
    zone = decisions.find_zone(ctx.spec.domain, zones)
    if zone is None:
        return failed(
            f"no public hosted zone for {ctx.spec.domain} or a parent of it",
            f"create or delegate the hosted zone for {ctx.spec.domain} in account {ctx.spec.account_id}",
        )
    return passed(f"zone {decisions.normalise_dns(zone['Name'])} ({zone['Id'].rsplit('/', 1)[-1]})")


def check_certificate(ctx: PreflightContext) -> Finding:
    acm = ctx.client("acm")
    domain = ctx.spec.domain
    now = ctx.clock.now()
    problems = []
    for page in acm.get_paginator("list_certificates").paginate(
        Includes={"keyTypes": ["RSA_1024", "RSA_2048", "RSA_3072", "RSA_4096", "EC_prime256v1", "EC_secp384r1"]}
    ):
        for summary in page.get("CertificateSummaryList", []):
            cert = acm.describe_certificate(CertificateArn=summary["CertificateArn"])["Certificate"]
            names = [cert.get("DomainName", ""), *cert.get("SubjectAlternativeNames", [])]
            if not decisions.certificate_covers(domain, names):
                continue
            problem = decisions.certificate_problem(cert, domain, now)
            arn = cert["CertificateArn"]
            if problem is None:
                left = decisions.days_left(cert["NotAfter"], now)
                return passed(f"{arn} ISSUED for {cert.get('DomainName')}, expires {cert['NotAfter']:%Y-%m-%d} "
                              f"({left:.0f} days)")
            problems.append(f"{arn.rsplit('/', 1)[-1]} {problem}")
    if not problems:
        return failed(
            f"no ACM certificate in {ctx.region} covers {domain}",
            f"request one: aws acm request-certificate --domain-name {domain} --validation-method DNS",
        )
    return failed(
        "; ".join(problems),
        f"validate, renew or re-import the certificate for {domain} (ACM, {ctx.region})",
    )


def check_api_domain(ctx: PreflightContext) -> Finding:
    apigw = ctx.client("apigateway")
    domain = ctx.spec.domain
    try:
        info = apigw.get_domain_name(domainName=domain)
    except Exception as exc:
        if _missing(exc):
            return failed(f"API Gateway has no custom domain {domain}", _terraform_remedy(ctx, "the custom domain"))
        raise
    wanted = ctx.names.base_path_mapping
    mappings = []
    for page in apigw.get_paginator("get_base_path_mappings").paginate(domainName=domain):
        mappings.extend(page.get("items", []))
    found = [m for m in mappings if m.get("basePath") == wanted]
    kind = ",".join(info.get("endpointConfiguration", {}).get("types", [])) or "EDGE"
    if not found:
        shown = ", ".join(m.get("basePath", "?") for m in mappings) or "none"
        return failed(
            f"domain {domain} ({kind}) exists but has no base path mapping {wanted} (mappings: {shown})",
            _terraform_remedy(ctx, f"the base path mapping {wanted}"),
        )
    mapping = found[0]
    return passed(f"{domain} ({kind}); {wanted} -> API {mapping.get('restApiId')} stage {mapping.get('stage', '-')}")


# -- data ------------------------------------------------------------------------------------------------------
def _describe_table(ctx: PreflightContext, region: str | None = None) -> dict[str, Any] | None:
    try:
        return ctx.client("dynamodb", region).describe_table(TableName=ctx.names.table)["Table"]
    except Exception as exc:
        if _missing(exc):
            return None
        raise


def check_table(ctx: PreflightContext) -> Finding:
    table = _describe_table(ctx)
    name = ctx.names.table
    if table is None:
        return failed(f"table {name} not found in {ctx.region}", _owner_remedy(ctx, "table", f"table {name}"))
    status = table.get("TableStatus")
    if status != "ACTIVE":
        return failed(f"table {name} is {status}, not ACTIVE", "wait for the table to become ACTIVE")
    problem = decisions.key_schema_problem(table.get("KeySchema", []), ctx.names.table_partition_key)
    if problem:
        return failed(f"table {name}: {problem}", _owner_remedy(ctx, "table", f"table {name}"))
    return passed(f"{name} ACTIVE, partition key {ctx.names.table_partition_key}, {table.get('ItemCount', 0)} items")


def check_pitr(ctx: PreflightContext) -> Finding:
    name = ctx.names.table
    try:
        backups = ctx.client("dynamodb").describe_continuous_backups(TableName=name)
    except Exception as exc:
        if _missing(exc):
            return failed(f"table {name} not found in {ctx.region}", _owner_remedy(ctx, "table", f"table {name}"))
        raise
    status = (
        backups.get("ContinuousBackupsDescription", {})
        .get("PointInTimeRecoveryDescription", {})
        .get("PointInTimeRecoveryStatus", "DISABLED")
    )
    if status != "ENABLED":
        required = "required for this environment" if ctx.spec.require_pitr else "recommended"
        return failed(
            f"point-in-time recovery on {name} is {status} ({required})",
            f"aws dynamodb update-continuous-backups --table-name {name} "
            "--point-in-time-recovery-specification PointInTimeRecoveryEnabled=true",
        )
    return passed(f"point-in-time recovery ENABLED on {name}")


def check_bucket(ctx: PreflightContext) -> Finding:
    s3 = ctx.client("s3")
    name = ctx.names.templates_bucket
    remedy = _owner_remedy(ctx, "templates_bucket", f"bucket {name}")
    try:
        s3.head_bucket(Bucket=name)
    except Exception as exc:
        if _missing(exc):
            return failed(f"bucket {name} not found", remedy)
        raise
    problems = []
    try:
        rules = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
        algorithms = [r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules]
        encryption = ",".join(a for a in algorithms if a) or "none"
    except Exception as exc:
        if error_code(exc) != "ServerSideEncryptionConfigurationNotFoundError":
            raise
        encryption = "none"
    if encryption == "none":
        problems.append("no default encryption")
    try:
        block = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
        gaps = decisions.public_access_gaps(block)
    except Exception as exc:
        if error_code(exc) != "NoSuchPublicAccessBlockConfiguration":
            raise
        gaps = list(decisions.PUBLIC_ACCESS_FLAGS)
    if gaps:
        problems.append(f"public access not blocked ({', '.join(gaps)} off)")
    if problems:
        return failed(f"bucket {name}: {'; '.join(problems)}", remedy)
    return passed(f"{name}: encrypted ({encryption}), public access blocked")


# -- compute and operations ------------------------------------------------------------------------------------
def check_role(ctx: PreflightContext) -> Finding:
    name = ctx.names.execution_role
    try:
        role = ctx.client("iam").get_role(RoleName=name)["Role"]
    except Exception as exc:
        if _missing(exc):
            return failed(f"role {name} not found", _terraform_remedy(ctx, f"the execution role {name}"))
        raise
    if not decisions.trusts_service(role.get("AssumeRolePolicyDocument", {})):
        return failed(f"role {name} exists but does not trust lambda.amazonaws.com",
                      "fix the role's trust policy (Principal.Service lambda.amazonaws.com)")
    return passed(role["Arn"])


def _get_function(ctx: PreflightContext, region: str | None = None) -> dict[str, Any] | None:
    try:
        return ctx.client("lambda", region).get_function(FunctionName=ctx.names.function)["Configuration"]
    except Exception as exc:
        if _missing(exc):
            return None
        raise


def check_function(ctx: PreflightContext) -> Finding:
    config = _get_function(ctx)
    name = ctx.names.function
    if config is None:
        return failed(f"function {name} not found in {ctx.region}", _terraform_remedy(ctx, f"function {name}"))
    state = config.get("State", "Active")
    if state not in {"Active", "Inactive"}:
        return failed(f"function {name} is {state}: {config.get('StateReason', '')}".rstrip(": "),
                      "inspect the function's last update in the Lambda console")
    return passed(f"{name} ({config.get('Runtime')}, {state}, modified {config.get('LastModified', '?')})")


def check_alias(ctx: PreflightContext) -> Finding:
    name, alias = ctx.names.function, ctx.names.alias
    try:
        info = ctx.client("lambda").get_alias(FunctionName=name, Name=alias)
    except Exception as exc:
        if _missing(exc):
            return failed(f"alias {name}:{alias} not found",
                          _terraform_remedy(ctx, f"the alias {alias}") + " (or deploy once to create it)")
        raise
    weights = info.get("RoutingConfig", {}).get("AdditionalVersionWeights") or {}
    routing = "".join(f", {v} at {w:.0%}" for v, w in weights.items())
    return passed(f"{name}:{alias} -> version {info.get('FunctionVersion')}{routing}")


def check_log_group(ctx: PreflightContext) -> Finding:
    name = ctx.names.log_group
    groups = []
    for page in ctx.client("logs").get_paginator("describe_log_groups").paginate(logGroupNamePrefix=name):
        groups.extend(g for g in page.get("logGroups", []) if g.get("logGroupName") == name)
    if not groups:
        return failed(f"log group {name} not found", _terraform_remedy(ctx, f"log group {name}"))
    retention = groups[0].get("retentionInDays")
    wanted = ctx.spec.log_retention_days
    if retention is None:
        return failed(f"log group {name} never expires (no retention)",
                      f"aws logs put-retention-policy --log-group-name {name} --retention-in-days {wanted}")
    if retention != wanted:
        return warned(f"log group {name} keeps {retention} days, the plan says {wanted}",
                      f"aws logs put-retention-policy --log-group-name {name} --retention-in-days {wanted}")
    return passed(f"{name}, retention {retention} days")


def check_alarms(ctx: PreflightContext) -> Finding:
    expected = list(ctx.names.alarms.values())
    if not expected:
        return skipped("the plan defines no alarms")
    found: dict[str, dict[str, Any]] = {}
    for page in ctx.client("cloudwatch").get_paginator("describe_alarms").paginate(AlarmNames=expected):
        for alarm in page.get("MetricAlarms", []) + page.get("CompositeAlarms", []):
            found[alarm["AlarmName"]] = alarm
    missing = decisions.missing_names(expected, found)
    if missing:
        return failed(f"{len(missing)} of {len(expected)} alarms missing: {', '.join(missing)}",
                      _terraform_remedy(ctx, "the alarms"))
    firing = [n for n in expected if found[n].get("StateValue") == "ALARM"]
    if firing:
        return warned(f"all {len(expected)} alarms exist; in ALARM now: {', '.join(firing)}",
                      "find out why before deploying; a firing alarm would stop the canary")
    return passed(f"all {len(expected)} alarms exist: {', '.join(expected)}")


def check_dlq(ctx: PreflightContext) -> Finding:
    sqs = ctx.client("sqs")
    name = ctx.names.dlq
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except Exception as exc:
        if _missing(exc):
            return failed(f"queue {name} not found", _terraform_remedy(ctx, f"the dead letter queue {name}"))
        raise
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    count = int(attributes.get("Attributes", {}).get("ApproximateNumberOfMessages", 0))
    limit = ctx.plan.rollback_thresholds.dlq_messages
    if count > limit:
        return warned(f"{url} holds {count} messages (alarm above {limit})",
                      "inspect and drain the dead letter queue before deploying")
    return passed(f"{url} ({count} messages)")


# -- disaster recovery (environments with `dr`) ----------------------------------------------------------------
def check_dr_table(ctx: PreflightContext) -> Finding:
    dr = ctx.spec.dr
    if dr is None:
        return skipped(f"{ctx.env} has no DR region in the plan")
    name = ctx.names.table
    primary = _describe_table(ctx)
    replicas = [r.get("RegionName") for r in (primary or {}).get("Replicas", [])]
    if dr.failover_region in replicas:
        return passed(f"{name} lists a replica in {dr.failover_region}")
    replica = _describe_table(ctx, dr.failover_region)
    if replica is None:
        return failed(f"no table {name} in the failover region {dr.failover_region}",
                      f"add a replica: aws dynamodb update-table --table-name {name} --region {dr.primary_region} "
                      f"--replica-updates 'Create={{RegionName={dr.failover_region}}}'")
    return passed(f"{name} in {dr.failover_region} is {replica.get('TableStatus')}")


def check_dr_function(ctx: PreflightContext) -> Finding:
    dr = ctx.spec.dr
    if dr is None:
        return skipped(f"{ctx.env} has no DR region in the plan")
    config = _get_function(ctx, dr.failover_region)
    name = ctx.names.function
    if config is None:
        return failed(f"function {name} not found in the failover region {dr.failover_region}",
                      f"apply the DR stack in {dr.failover_region}")
    return passed(f"{name} in {dr.failover_region} ({config.get('Runtime')})")
