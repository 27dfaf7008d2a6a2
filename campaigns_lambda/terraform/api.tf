# REST API served at https://<domain>/v1.0/campaigns: the custom domain maps base path "v1.0" to this API,
# whose resources are /campaigns, /campaigns/health and /campaigns/{id}. Every method is a Lambda proxy
# integration to the `live` alias; all but the health check need a Cognito token.
resource "aws_api_gateway_rest_api" "campaigns" {
  name        = local.rest_api_name
  description = "Campaigns API (${var.env})"

  endpoint_configuration {
    types = ["REGIONAL"]
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

  routes = {
    "list"   = { resource = "campaigns", method = "GET", auth = true }
    "create" = { resource = "campaigns", method = "POST", auth = true }
    "health" = { resource = "health", method = "GET", auth = false }
    "get"    = { resource = "campaign", method = "GET", auth = true }
    "update" = { resource = "campaign", method = "PUT", auth = true }
    "delete" = { resource = "campaign", method = "DELETE", auth = true }
  }
}

resource "aws_api_gateway_method" "route" {
  for_each = local.routes

  rest_api_id   = aws_api_gateway_rest_api.campaigns.id
  resource_id   = local.resource_ids[each.value.resource]
  http_method   = each.value.method
  authorization = each.value.auth ? "COGNITO_USER_POOLS" : "NONE"
  authorizer_id = each.value.auth ? aws_api_gateway_authorizer.cognito.id : null
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

resource "aws_api_gateway_stage" "campaigns" {
  rest_api_id   = aws_api_gateway_rest_api.campaigns.id
  deployment_id = aws_api_gateway_deployment.campaigns.id
  stage_name    = var.env
}

resource "aws_api_gateway_method_settings" "all" {
  rest_api_id = aws_api_gateway_rest_api.campaigns.id
  stage_name  = aws_api_gateway_stage.campaigns.stage_name
  method_path = "*/*"

  settings {
    metrics_enabled = true
  }
}

resource "aws_api_gateway_base_path_mapping" "campaigns" {
  api_id      = aws_api_gateway_rest_api.campaigns.id
  stage_name  = aws_api_gateway_stage.campaigns.stage_name
  domain_name = data.aws_api_gateway_domain_name.api.domain_name
  base_path   = local.base_path
}
