bucket         = "bbws-terraform-state-536580886816"
key            = "2_bbws_campaigns_lambda/terraform.tfstate"
region         = "eu-west-1"
dynamodb_table = "bbws-terraform-locks"
encrypt        = true
