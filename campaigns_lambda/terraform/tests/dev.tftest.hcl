# DEV as env/dev.tfvars describes it: names, retention, concurrency, WAF.
#   terraform test -var-file=env/dev.tfvars -filter=tests/common.tftest.hcl -filter=tests/dev.tftest.hcl

mock_provider "aws" {}
mock_provider "archive" {}

run "dev_names_and_retention" {
  command = plan

  assert {
    condition     = var.env == "dev" && var.account_id == "536580886816" && var.region == "eu-west-1"
    error_message = "run with env/dev.tfvars"
  }
  assert {
    condition     = aws_lambda_function.campaigns.function_name == "campaigns-handler-dev"
    error_message = "the function must be campaigns-handler-dev"
  }
  assert {
    condition     = aws_iam_role.lambda.name == "campaigns-lambda-role-dev"
    error_message = "the role must be campaigns-lambda-role-dev"
  }
  assert {
    condition     = aws_api_gateway_rest_api.campaigns.name == "campaigns-api-dev"
    error_message = "the REST API must be campaigns-api-dev"
  }
  assert {
    condition     = aws_api_gateway_stage.campaigns.stage_name == "dev"
    error_message = "the stage must be named dev"
  }
  assert {
    condition     = aws_cloudwatch_log_group.lambda.name == "/aws/lambda/campaigns-handler-dev"
    error_message = "the function's log group must be /aws/lambda/campaigns-handler-dev"
  }
  assert {
    condition     = aws_cloudwatch_log_group.lambda.retention_in_days == 14
    error_message = "dev keeps the function's logs 14 days"
  }
  assert {
    condition     = aws_cloudwatch_log_group.api_access.retention_in_days == 14
    error_message = "dev keeps the API's access logs 14 days"
  }
  assert {
    condition     = aws_sqs_queue.dlq.name == "campaigns-dlq-dev" && aws_sns_topic.alerts.name == "campaigns-alerts-dev"
    error_message = "the DLQ and the alerts topic must carry the environment's names"
  }
  assert {
    condition     = aws_cloudwatch_dashboard.campaigns.dashboard_name == "campaigns-lambda-dev-dashboard"
    error_message = "the dashboard must be campaigns-lambda-dev-dashboard"
  }
  assert {
    condition     = aws_lambda_function.campaigns.reserved_concurrent_executions == 10
    error_message = "dev reserves 10 concurrent executions"
  }
  assert {
    condition     = length(aws_wafv2_web_acl.api) == 0
    error_message = "only PROD has a WAF web ACL"
  }
}
