# REST API served at https://<domain>/v1.0/campaigns: the custom domain maps base path "v1.0" to this API,
# whose resources are /campaigns, /campaigns/health and /campaigns/{id}. Every method is a Lambda proxy
# integration to the `live` alias; all but the health check need a Cognito token.
resource "aws_api_gateway_rest_api" "campaigns" {
  name        = local.rest_api_name
  description = "Campaigns API (${var.env})"

  endpoint_configuration {
    types = ["REGIONAL"]
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_api_gateway_authorizer" "cognito" {
  name            = "campaigns-cognito-${var.env}"
  rest_api_id     = aws_api_gateway_rest_api.campaigns.id
  type            = "COGNITO_USER_POOLS"
  provider_arns   = local.user_pool_arns
  identity_source = "method.request.header.Authorization"
}

resource "aws_api_gateway_resource" "campaigns" {
  rest_api_id = aws_api_gateway_rest_api.campaigns.id
  parent_id   = aws_api_gateway_rest_api.campaigns.root_resource_id
  path_part   = "campaigns"
}

resource "aws_api_gateway_resource" "health" {
  rest_api_id = aws_api_gateway_rest_api.campaigns.id
  parent_id   = aws_api_gateway_resource.campaigns.id
  path_part   = "health"
}

resource "aws_api_gateway_resource" "campaign" {
  rest_api_id = aws_api_gateway_rest_api.campaigns.id
  parent_id   = aws_api_gateway_resource.campaigns.id
  path_part   = "{id}"
}

locals {
  resource_ids = {
    campaigns = aws_api_gateway_resource.campaigns.id
    health    = aws_api_gateway_resource.health.id
    campaign  = aws_api_gateway_resource.campaign.id
  }

  # body: the request model the gateway checks before the function runs (create, update); every route has its
  # path parameters and required headers checked
  routes = {
    "list"   = { resource = "campaigns", method = "GET", auth = true, body = null }
    "create" = { resource = "campaigns", method = "POST", auth = true, body = "CampaignCreate" }
    "health" = { resource = "health", method = "GET", auth = false, body = null }
    "get"    = { resource = "campaign", method = "GET", auth = true, body = null }
    "update" = { resource = "campaign", method = "PUT", auth = true, body = "CampaignUpdate" }
    "delete" = { resource = "campaign", method = "DELETE", auth = true, body = null }
  }
}

# The request bodies as the service's models accept them (campaigns_lambda/models.py): a JSON object, a name on
# create; the function still validates every field and answers its own 400s.
resource "aws_api_gateway_model" "campaign" {
  for_each = {
    CampaignCreate = { required = ["name"], minProperties = 1 }
    CampaignUpdate = { required = [], minProperties = 1 }
  }

  rest_api_id  = aws_api_gateway_rest_api.campaigns.id
  name         = each.key
  content_type = "application/json"
  schema = jsonencode(merge({
    "$schema"     = "http://json-schema.org/draft-04/schema#"
    title         = each.key
    type          = "object"
    minProperties = each.value.minProperties
    properties = {
      name           = { type = "string" }
      status         = { type = "string", enum = ["draft", "active", "paused", "completed", "archived"] }
      start_date     = { type = ["string", "null"] }
      end_date       = { type = ["string", "null"] }
      description    = { type = ["string", "null"] }
      email_template = { type = ["string", "null"] }
      version        = { type = "integer" }
    }
  }, length(each.value.required) > 0 ? { required = each.value.required } : {}))
}

resource "aws_api_gateway_request_validator" "body_and_parameters" {
  rest_api_id                 = aws_api_gateway_rest_api.campaigns.id
  name                        = "body-and-parameters"
  validate_request_body       = true
  validate_request_parameters = true
}

resource "aws_api_gateway_request_validator" "parameters" {
  rest_api_id                 = aws_api_gateway_rest_api.campaigns.id
  name                        = "parameters"
  validate_request_body       = false
  validate_request_parameters = true
}

resource "aws_api_gateway_method" "route" {
  # checkov:skip=CKV_AWS_59: only the health route is open, by design: load balancers and smoke tests probe it
  for_each = local.routes

  rest_api_id   = aws_api_gateway_rest_api.campaigns.id
  resource_id   = local.resource_ids[each.value.resource]
  http_method   = each.value.method
  authorization = each.value.auth ? "COGNITO_USER_POOLS" : "NONE"
  authorizer_id = each.value.auth ? aws_api_gateway_authorizer.cognito.id : null

  request_validator_id = (each.value.body != null ? aws_api_gateway_request_validator.body_and_parameters.id :
  aws_api_gateway_request_validator.parameters.id)
  request_models = each.value.body != null ? { "application/json" = aws_api_gateway_model.campaign[each.value.body].name } : null
  request_parameters = merge(
    each.value.auth ? { "method.request.header.Authorization" = true } : {},
    each.value.resource == "campaign" ? { "method.request.path.id" = true } : {},
  )
}

resource "aws_api_gateway_integration" "route" {
  for_each = local.routes

  rest_api_id             = aws_api_gateway_rest_api.campaigns.id
  resource_id             = local.resource_ids[each.value.resource]
  http_method             = aws_api_gateway_method.route[each.key].http_method
  type                    = "AWS_PROXY"
  integration_http_method = "POST"
  uri                     = aws_lambda_alias.live.invoke_arn
}

resource "aws_api_gateway_deployment" "campaigns" {
  rest_api_id = aws_api_gateway_rest_api.campaigns.id

  triggers = {
    redeployment = sha1(jsonencode([
      local.routes,
      local.resource_ids,
      aws_api_gateway_authorizer.cognito.id,
      [for i in aws_api_gateway_integration.route : i.uri],
    ]))
  }

  lifecycle {
    create_before_destroy = true
  }
}

# Access logs and execution logs need the account's API Gateway CloudWatch role (aws_api_gateway_account), which
# the shared API Gateway domain project sets once per account.
resource "aws_cloudwatch_log_group" "api_access" {
  # checkov:skip=CKV_AWS_338: retention is the promotion plan's per environment (14, 30, 90 days), not a year
  name              = "/aws/apigateway/${local.rest_api_name}/access"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.campaigns.arn
}

resource "aws_api_gateway_stage" "campaigns" {
  # checkov:skip=CKV_AWS_120: no API cache: every response is per user and changes with each write
  # checkov:skip=CKV2_AWS_51: clients authenticate with Cognito tokens; mutual TLS is not used
  # checkov:skip=CKV2_AWS_29: the WAF web ACL guards PROD (waf.tf, waf_enabled); DEV and SIT run without one
  # checkov:skip=CKV2_AWS_77: the web ACL's rules are rule_json, which checkov does not read; they include
  # checkov:skip=CKV2_AWS_77: AWSManagedRulesKnownBadInputsRuleSet, the Log4j rule group (waf.tf)
  rest_api_id          = aws_api_gateway_rest_api.campaigns.id
  deployment_id        = aws_api_gateway_deployment.campaigns.id
  stage_name           = var.env
  xray_tracing_enabled = true

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api_access.arn
    format = jsonencode({
      requestId      = "$context.requestId"
      ip             = "$context.identity.sourceIp"
      requestTime    = "$context.requestTime"
      httpMethod     = "$context.httpMethod"
      resourcePath   = "$context.resourcePath"
      status         = "$context.status"
      responseLength = "$context.responseLength"
      latencyMs      = "$context.responseLatency"
      integrationMs  = "$context.integrationLatency"
      error          = "$context.error.message"
      user           = "$context.authorizer.claims.sub"
    })
  }
}

#trivy:ignore:AVD-AWS-0190 (no API cache: every response is per user and changes with each write)
resource "aws_api_gateway_method_settings" "all" {
  # checkov:skip=CKV_AWS_225: no API cache: every response is per user and changes with each write
  rest_api_id = aws_api_gateway_rest_api.campaigns.id
  stage_name  = aws_api_gateway_stage.campaigns.stage_name
  method_path = "*/*"

  settings {
    metrics_enabled    = true
    logging_level      = "ERROR"
    data_trace_enabled = false
  }
}

resource "aws_api_gateway_base_path_mapping" "campaigns" {
  api_id      = aws_api_gateway_rest_api.campaigns.id
  stage_name  = aws_api_gateway_stage.campaigns.stage_name
  domain_name = data.aws_api_gateway_domain_name.api.domain_name
  base_path   = local.base_path
}
