env                  = "dev"
account_id           = "536580886816"
region               = "eu-west-1"
domain_name          = "api.dev.kimmyai.io"
log_retention_days   = 14
reserved_concurrency = 10
