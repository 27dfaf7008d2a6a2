env                  = "prod"
account_id           = "093646564004"
region               = "af-south-1"
domain_name          = "api.kimmyai.io"
log_retention_days   = 90
reserved_concurrency = 100
waf_enabled          = true
