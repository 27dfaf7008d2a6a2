resource "aws_cloudwatch_log_group" "lambda" {
  # checkov:skip=CKV_AWS_338: retention is the promotion plan's per environment (14, 30, 90 days), not a year
  name              = local.log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.campaigns.arn
}

resource "aws_sqs_queue" "dlq" {
  name                      = local.dlq_name
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

# Terraform creates the function with a placeholder package; `promoter deploy` uploads the real code,
# publishes versions and moves the alias. The code and the alias routing are therefore ignored here.
data "archive_file" "placeholder" {
  type        = "zip"
  output_path = "${path.module}/.build/placeholder.zip"

  source {
    filename = "campaigns_lambda/handler.py"
    content  = "def lambda_handler(event, context):\n    return {\"statusCode\": 503, \"body\": \"{\\\"message\\\": \\\"not deployed yet\\\"}\"}\n"
  }
}

resource "aws_lambda_function" "campaigns" {
  # checkov:skip=CKV_AWS_117: the function reaches only DynamoDB, S3 and SQS through their public endpoints; no VPC
  # checkov:skip=CKV_AWS_272: promoter deploys only artifacts whose sha256 SIT's records prove; no code signing
  # checkov:skip=CKV_AWS_173: the environment holds names and flags, no secrets (AWS managed key at rest)
  function_name    = local.function_name
  description      = "Campaigns API (${var.env})"
  role             = aws_iam_role.lambda.arn
  handler          = var.handler
  runtime          = var.runtime
  architectures    = [var.architecture]
  memory_size      = var.memory_size
  timeout          = var.timeout
  filename         = data.archive_file.placeholder.output_path
  source_code_hash = data.archive_file.placeholder.output_base64sha256
  publish          = false

  # a ceiling per environment: a runaway caller cannot take the account's whole concurrency
  reserved_concurrent_executions = var.reserved_concurrency

  environment {
    variables = {
      CAMPAIGNS_TABLE  = data.aws_dynamodb_table.campaigns.name
      TEMPLATES_BUCKET = data.aws_s3_bucket.templates.id
      RELEASE_VERSION  = "unreleased"
      CHAOS_ERROR_RATE = "0"
      CHAOS_LATENCY_MS = "0"
    }
  }

  dead_letter_config {
    target_arn = aws_sqs_queue.dlq.arn
  }

  tracing_config {
    mode = "Active"
  }

  depends_on = [aws_cloudwatch_log_group.lambda, aws_iam_role_policy.lambda]

  lifecycle {
    # code and release metadata belong to promoter
    ignore_changes = [
      filename,
      source_code_hash,
      s3_bucket,
      s3_key,
      s3_object_version,
      publish,
      environment[0].variables["RELEASE_VERSION"],
      environment[0].variables["CHAOS_ERROR_RATE"],
      environment[0].variables["CHAOS_LATENCY_MS"],
    ]
  }
}

resource "aws_lambda_alias" "live" {
  name          = local.alias_name
  description   = "Production traffic of ${local.function_name}; versions and weights set by promoter"
  function_name = aws_lambda_function.campaigns.function_name
  # only until the first `promoter deploy` publishes a version and moves the alias to it
  function_version = "$LATEST"

  lifecycle {
    ignore_changes = [function_version, routing_config]
  }
}

resource "aws_lambda_permission" "api_gateway" {
  statement_id  = "AllowApiGatewayInvoke"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.campaigns.function_name
  qualifier     = aws_lambda_alias.live.name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_api_gateway_rest_api.campaigns.execution_arn}/*/*/*"
}
