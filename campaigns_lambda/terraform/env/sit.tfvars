env                  = "sit"
account_id           = "815856636111"
region               = "eu-west-1"
domain_name          = "api.sit.kimmyai.io"
log_retention_days   = 30
reserved_concurrency = 20
