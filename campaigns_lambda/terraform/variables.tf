variable "env" {
  description = "Environment name; also the Terraform workspace."
  type        = string

  validation {
    condition     = contains(["dev", "sit", "prod"], var.env)
    error_message = "The env must be one of dev, sit, prod."
  }
}

variable "account_id" {
  description = "AWS account of the environment; the provider refuses any other."
  type        = string
}

variable "region" {
  description = "AWS region of the environment."
  type        = string
}

variable "domain_name" {
  description = "Custom domain of the environment's API (owned by the shared API Gateway domain project)."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the function's CloudWatch log group."
  type        = number
}

variable "runtime" {
  description = "Lambda runtime."
  type        = string
  default     = "python3.12"
}

variable "handler" {
  description = "Lambda handler."
  type        = string
  default     = "campaigns_lambda.handler.lambda_handler"
}

variable "architecture" {
  description = "Lambda architecture."
  type        = string
  default     = "x86_64"
}

variable "memory_size" {
  description = "Lambda memory in MB."
  type        = number
  default     = 256
}

variable "timeout" {
  description = "Lambda timeout in seconds."
  type        = number
  default     = 10
}

variable "user_pool_arn" {
  description = "ARN of the Cognito user pool for the authorizer. Empty: look the pool up by name."
  type        = string
  default     = ""
}

variable "alert_emails" {
  description = "E-mail addresses subscribed to the alerts topic."
  type        = list(string)
  default     = []
}

variable "provisioned_concurrency_max" {
  description = "Upper bound for the throttling alarm's scale-out of provisioned concurrency on the alias. 0 disables it."
  type        = number
  default     = 0
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

variable "reserved_concurrency" {
  description = "Reserved concurrent executions of the function: its ceiling, and its guaranteed share."
  type        = number
  default     = 10
}

variable "waf_enabled" {
  description = "Put a WAF web ACL (AWS managed rule groups) in front of the API stage."
  type        = bool
  default     = false
}
