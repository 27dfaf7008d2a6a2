"""The preflight checklist of one environment, built from the plan."""

from __future__ import annotations

from promoter.engine.preflight import aws_checks as a
from promoter.engine.preflight import code_checks as c
from promoter.engine.preflight.core import Check, Severity
from promoter.engine.preflight.manual import applicable, manual_check
from promoter.plan.models import Plan

B, W = Severity.BLOCKER, Severity.WARNING


def checklist(plan: Plan, env: str) -> list[Check]:
    """Every check for ``env``, in display order. Severities that depend on the environment come from the plan."""
    spec = plan.environment(env)
    code = plan.code
    checks = [
        Check("aws.account", "Credentials resolve to the environment's account", B, a.check_account),
        Check("aws.region", "Region matches the plan", W, a.check_region),
        Check("dns.zone", "Route53 hosted zone for the domain", B, a.check_zone),
        Check("acm.certificate", "ACM certificate issued, covering the domain, not expiring soon", B,
              a.check_certificate),
        Check("apigw.domain", "API Gateway custom domain and base path mapping", B, a.check_api_domain),
        Check("dynamodb.table", "DynamoDB table ACTIVE with the expected key schema", B, a.check_table),
        Check("dynamodb.pitr", "Point-in-time recovery enabled", B if spec.require_pitr else W, a.check_pitr),
        Check("s3.bucket", "Templates bucket exists, encrypted, public access blocked", B, a.check_bucket),
        Check("iam.role", "Lambda execution role exists", B, a.check_role),
        Check("lambda.function", "Lambda function exists", B, a.check_function),
        Check("lambda.alias", "Lambda alias exists", B, a.check_alias),
        Check("logs.group", "Log group exists with a retention", B, a.check_log_group),
        Check("cloudwatch.alarms", "The plan's CloudWatch alarms exist", B, a.check_alarms),
        Check("sqs.dlq", "Dead letter queue exists", B, a.check_dlq),
    ]
    failover = spec.dr.failover_region if spec.dr else "none"
    checks += [  # shown as SKIP where the plan has no DR region
        Check("dr.table", f"Table replica in the failover region ({failover})", B, a.check_dr_table),
        Check("dr.function", f"Function in the failover region ({failover})", B, a.check_dr_function),
    ]
    checks += [
        Check("code.branch", f"On branch {code.branch}", B, c.check_branch),
        Check("code.clean", "Clean work tree", B if code.require_clean_tree else W, c.check_clean),
        Check("code.tag", "HEAD tagged with the release", B if code.require_release_tag else W, c.check_tag),
    ]
    for item_id, title, record_with, is_gate in applicable(plan, env):
        checks.append(Check(f"manual.{item_id}", title, B if is_gate else W, manual_check(item_id, record_with)))
    return checks
