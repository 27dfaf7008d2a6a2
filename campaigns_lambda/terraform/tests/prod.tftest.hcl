# PROD as env/prod.tfvars describes it: names, retention, concurrency, WAF.
#   terraform test -var-file=env/prod.tfvars -filter=tests/common.tftest.hcl -filter=tests/prod.tftest.hcl

mock_provider "aws" {}
mock_provider "archive" {}

run "prod_names_and_retention" {
  command = plan

  assert {
    condition     = var.env == "prod" && var.account_id == "093646564004" && var.region == "af-south-1"
    error_message = "run with env/prod.tfvars"
  }
  assert {
    condition     = aws_lambda_function.campaigns.function_name == "campaigns-handler-prod"
    error_message = "the function must be campaigns-handler-prod"
  }
  assert {
    condition     = aws_iam_role.lambda.name == "campaigns-lambda-role-prod"
    error_message = "the role must be campaigns-lambda-role-prod"
  }
  assert {
    condition     = aws_api_gateway_rest_api.campaigns.name == "campaigns-api-prod"
    error_message = "the REST API must be campaigns-api-prod"
  }
  assert {
    condition     = aws_api_gateway_stage.campaigns.stage_name == "prod"
    error_message = "the stage must be named prod"
  }
  assert {
    condition     = aws_cloudwatch_log_group.lambda.name == "/aws/lambda/campaigns-handler-prod"
    error_message = "the function's log group must be /aws/lambda/campaigns-handler-prod"
  }
  assert {
    condition     = aws_cloudwatch_log_group.lambda.retention_in_days == 90
    error_message = "prod keeps the function's logs 90 days"
  }
  assert {
    condition     = aws_cloudwatch_log_group.api_access.retention_in_days == 90
    error_message = "prod keeps the API's access logs 90 days"
  }
  assert {
    condition     = aws_sqs_queue.dlq.name == "campaigns-dlq-prod" && aws_sns_topic.alerts.name == "campaigns-alerts-prod"
    error_message = "the DLQ and the alerts topic must carry the environment's names"
  }
  assert {
    condition     = aws_cloudwatch_dashboard.campaigns.dashboard_name == "campaigns-lambda-prod-dashboard"
    error_message = "the dashboard must be campaigns-lambda-prod-dashboard"
  }
  assert {
    condition     = aws_lambda_function.campaigns.reserved_concurrent_executions == 100
    error_message = "prod reserves 100 concurrent executions"
  }
  assert {
    condition     = length(aws_wafv2_web_acl.api) == 1 && aws_wafv2_web_acl.api[0].scope == "REGIONAL"
    error_message = "PROD must have a regional WAF web ACL"
  }
  assert {
    condition     = length(aws_wafv2_web_acl_association.api) == 1
    error_message = "the web ACL must be associated with the stage"
  }
}
