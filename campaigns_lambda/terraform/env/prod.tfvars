env                = "prod"
account_id         = "093646564004"
region             = "af-south-1"
domain_name        = "api.kimmyai.io"
log_retention_days = 90
