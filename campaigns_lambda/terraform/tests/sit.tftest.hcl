# SIT as env/sit.tfvars describes it: names, retention, concurrency, WAF.
#   terraform test -var-file=env/sit.tfvars -filter=tests/common.tftest.hcl -filter=tests/sit.tftest.hcl

mock_provider "aws" {}
mock_provider "archive" {}

run "sit_names_and_retention" {
  command = plan

  assert {
    condition     = var.env == "sit" && var.account_id == "815856636111" && var.region == "eu-west-1"
    error_message = "run with env/sit.tfvars"
  }
  assert {
    condition     = aws_lambda_function.campaigns.function_name == "campaigns-handler-sit"
    error_message = "the function must be campaigns-handler-sit"
  }
  assert {
    condition     = aws_iam_role.lambda.name == "campaigns-lambda-role-sit"
    error_message = "the role must be campaigns-lambda-role-sit"
  }
  assert {
    condition     = aws_api_gateway_rest_api.campaigns.name == "campaigns-api-sit"
    error_message = "the REST API must be campaigns-api-sit"
  }
  assert {
    condition     = aws_api_gateway_stage.campaigns.stage_name == "sit"
    error_message = "the stage must be named sit"
  }
  assert {
    condition     = aws_cloudwatch_log_group.lambda.name == "/aws/lambda/campaigns-handler-sit"
    error_message = "the function's log group must be /aws/lambda/campaigns-handler-sit"
  }
  assert {
    condition     = aws_cloudwatch_log_group.lambda.retention_in_days == 30
    error_message = "sit keeps the function's logs 30 days"
  }
  assert {
    condition     = aws_cloudwatch_log_group.api_access.retention_in_days == 30
    error_message = "sit keeps the API's access logs 30 days"
  }
  assert {
    condition     = aws_sqs_queue.dlq.name == "campaigns-dlq-sit" && aws_sns_topic.alerts.name == "campaigns-alerts-sit"
    error_message = "the DLQ and the alerts topic must carry the environment's names"
  }
  assert {
    condition     = aws_cloudwatch_dashboard.campaigns.dashboard_name == "campaigns-lambda-sit-dashboard"
    error_message = "the dashboard must be campaigns-lambda-sit-dashboard"
  }
  assert {
    condition     = aws_lambda_function.campaigns.reserved_concurrent_executions == 20
    error_message = "sit reserves 20 concurrent executions"
  }
  assert {
    condition     = length(aws_wafv2_web_acl.api) == 0
    error_message = "only PROD has a WAF web ACL"
  }
}
