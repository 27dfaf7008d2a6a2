# What holds in every environment. Run with the environment's tfvars (`promoter infra validate --env ENV`):
#   terraform test -var-file=env/ENV.tfvars -filter=tests/common.tftest.hcl -filter=tests/ENV.tftest.hcl
# The providers are mocked: Terraform still checks the configuration against their schemas, plans without an
# account, and computed values stay unknown.

mock_provider "aws" {}
mock_provider "archive" {}

run "function_runs_the_plans_runtime_and_handler" {
  command = plan

  assert {
    condition     = aws_lambda_function.campaigns.runtime == "python3.12"
    error_message = "the function must run python3.12, the runtime the promotion plan builds for"
  }
  assert {
    condition     = aws_lambda_function.campaigns.handler == "campaigns_lambda.handler.lambda_handler"
    error_message = "the handler must be campaigns_lambda.handler.lambda_handler"
  }
  assert {
    condition     = aws_lambda_function.campaigns.tracing_config[0].mode == "Active"
    error_message = "the function must trace with X-Ray"
  }
  assert {
    condition     = aws_lambda_function.campaigns.reserved_concurrent_executions == var.reserved_concurrency
    error_message = "the function must reserve the environment's concurrency"
  }
}

run "traffic_goes_through_the_live_alias" {
  command = plan

  assert {
    condition     = aws_lambda_alias.live.name == "live"
    error_message = "the alias promoter moves must be named live"
  }
  assert {
    condition     = aws_lambda_permission.api_gateway.qualifier == "live"
    error_message = "API Gateway may invoke the live alias only"
  }
}

run "only_the_health_route_is_unauthenticated" {
  command = plan

  assert {
    condition     = aws_api_gateway_method.route["health"].authorization == "NONE"
    error_message = "GET /campaigns/health must be open"
  }
  assert {
    condition = alltrue([for k, m in aws_api_gateway_method.route :
    m.authorization == "COGNITO_USER_POOLS" if k != "health"])
    error_message = "every other route must need a Cognito token"
  }
  assert {
    condition     = length(aws_api_gateway_method.route) == 6
    error_message = "the API serves six routes"
  }
}

run "create_and_update_bodies_are_validated" {
  command = plan

  assert {
    condition = (aws_api_gateway_method.route["create"].request_models["application/json"] == "CampaignCreate" &&
    aws_api_gateway_method.route["update"].request_models["application/json"] == "CampaignUpdate")
    error_message = "create and update must name their request models"
  }
  assert {
    condition     = aws_api_gateway_request_validator.body_and_parameters.validate_request_body
    error_message = "the body validator must validate bodies"
  }
}

run "an_unknown_environment_is_refused" {
  command = plan

  variables {
    env = "qa"
  }

  expect_failures = [var.env]
}
