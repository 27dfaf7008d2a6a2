bucket         = "bbws-terraform-state-093646564004"
key            = "2_bbws_campaigns_lambda/terraform.tfstate"
region         = "af-south-1"
dynamodb_table = "bbws-terraform-locks"
encrypt        = true
