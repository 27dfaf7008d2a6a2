locals {
  # Names equal the promotion plan's (plans/PROM-CAMP-001.yaml, resources); tests/infra checks they agree.
  function_name = "campaigns-handler-${var.env}"
  alias_name    = "live"
  table_name    = "campaigns-${var.env}"
  bucket_name   = "bbws-templates-${var.env}"
  log_group     = "/aws/lambda/campaigns-handler-${var.env}"
  role_name     = "campaigns-lambda-role-${var.env}"
  dlq_name      = "campaigns-dlq-${var.env}"
  topic_name    = "campaigns-alerts-${var.env}"
  dashboard     = "campaigns-lambda-${var.env}-dashboard"
  user_pool     = "campaigns-users-${var.env}"
  rest_api_name = "campaigns-api-${var.env}"
  base_path     = "v1.0"

  tags = merge(var.tags, {
    Project     = "2_bbws_campaigns_lambda"
    Service     = "campaigns_lambda"
    Environment = var.env
    ManagedBy   = "terraform"
  })
}

# The table and the templates bucket belong to their own projects (2_bbws_dynamodb_schemas,
# 2_bbws_s3_schemas), promoted before this one: read, never managed here.
data "aws_dynamodb_table" "campaigns" {
  name = local.table_name
}

data "aws_s3_bucket" "templates" {
  bucket = local.bucket_name
}

data "aws_cognito_user_pools" "campaigns" {
  count = var.user_pool_arn == "" ? 1 : 0
  name  = local.user_pool
}

data "aws_api_gateway_domain_name" "api" {
  domain_name = var.domain_name
}

locals {
  user_pool_arns = var.user_pool_arn != "" ? [var.user_pool_arn] : data.aws_cognito_user_pools.campaigns[0].arns
}
