output "function_name" {
  value = aws_lambda_function.campaigns.function_name
}

output "function_arn" {
  value = aws_lambda_function.campaigns.arn
}

output "alias_arn" {
  value = aws_lambda_alias.live.arn
}

output "rest_api_id" {
  value = aws_api_gateway_rest_api.campaigns.id
}

output "stage_invoke_url" {
  value = aws_api_gateway_stage.campaigns.invoke_url
}

output "api_url" {
  value = "https://${var.domain_name}/${local.base_path}/campaigns"
}

output "execution_role_arn" {
  value = aws_iam_role.lambda.arn
}

output "dlq_url" {
  value = aws_sqs_queue.dlq.url
}

output "alerts_topic_arn" {
  value = aws_sns_topic.alerts.arn
}

output "dashboard_name" {
  value = aws_cloudwatch_dashboard.campaigns.dashboard_name
}
