"""Customer Portal campaigns API (AWS Lambda behind API Gateway REST)."""
