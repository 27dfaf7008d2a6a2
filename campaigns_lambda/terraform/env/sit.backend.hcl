bucket         = "bbws-terraform-state-815856636111"
key            = "2_bbws_campaigns_lambda/terraform.tfstate"
region         = "eu-west-1"
dynamodb_table = "bbws-terraform-locks"
encrypt        = true
