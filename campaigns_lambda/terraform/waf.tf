# A WAF web ACL in front of the API stage where var.waf_enabled (PROD): AWS managed rule groups for common
# exploits and known bad inputs (Log4j among them), with its requests logged.
resource "aws_wafv2_web_acl" "api" {
  count = var.waf_enabled ? 1 : 0

  name        = "campaigns-api-${var.env}"
  description = "Campaigns API (${var.env})"
  scope       = "REGIONAL"

  default_action {
    allow {}
  }

  # The rules as the WAFv2 API's JSON; the same rules as `rule` blocks would read the same to AWS.
  rule_json = jsonencode([
    for i, group in ["AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"] : {
      Name           = group
      Priority       = i + 1
      OverrideAction = { None = {} }
      Statement = {
        ManagedRuleGroupStatement = { VendorName = "AWS", Name = group }
      }
      VisibilityConfig = {
        CloudWatchMetricsEnabled = true
        MetricName               = "campaigns-${var.env}-${group}"
        SampledRequestsEnabled   = true
      }
    }
  ])

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = "campaigns-api-${var.env}"
    sampled_requests_enabled   = true
  }
}

resource "aws_wafv2_web_acl_association" "api" {
  count = var.waf_enabled ? 1 : 0

  resource_arn = aws_api_gateway_stage.campaigns.arn
  web_acl_arn  = aws_wafv2_web_acl.api[0].arn
}

resource "aws_cloudwatch_log_group" "waf" {
  count = var.waf_enabled ? 1 : 0

  # checkov:skip=CKV_AWS_338: retention is the promotion plan's per environment (14, 30, 90 days), not a year
  # WAF requires this prefix for a log group destination
  name              = "aws-waf-logs-campaigns-${var.env}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.campaigns.arn
}

resource "aws_wafv2_web_acl_logging_configuration" "api" {
  count = var.waf_enabled ? 1 : 0

  resource_arn            = aws_wafv2_web_acl.api[0].arn
  log_destination_configs = [aws_cloudwatch_log_group.waf[0].arn]
}
