# campaigns_lambda infrastructure, one Terraform workspace per environment (dev, sit, prod).
#
#   terraform init -input=false -reconfigure -backend-config=env/<env>.backend.hcl
#   terraform workspace select <env>
#   terraform plan -input=false -var-file=env/<env>.tfvars -out=<env>.tfplan
#
# `promoter infra plan|apply --env <env>` runs exactly these steps, reviews the plan for destructive changes
# and applies only the saved plan that was approved.
terraform {
  required_version = ">= 1.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0, < 6.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4, < 3.0"
    }
  }

  # Partial configuration: bucket, key, region and dynamodb_table come from env/<env>.backend.hcl,
  # because each environment keeps its state in its own account.
  backend "s3" {}
}

provider "aws" {
  region              = var.region
  allowed_account_ids = [var.account_id]

  default_tags {
    tags = local.tags
  }
}
