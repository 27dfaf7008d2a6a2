# The environment's customer managed key: the alerts topic (CloudWatch alarms publish to it) and the log groups
# (the function's, the API's access logs, the WAF's). Its key policy admits exactly those services; CloudWatch
# Logs does the encryption, so the writers of the logs need no key permission.
resource "aws_kms_key" "campaigns" {
  description             = "campaigns_lambda ${var.env}: alerts topic and log groups"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "campaigns" {
  name          = "alias/campaigns-${var.env}"
  target_key_id = aws_kms_key.campaigns.key_id
}

data "aws_iam_policy_document" "kms" {
  # checkov:skip=CKV_AWS_109: a key policy's resource is the key itself; the account administers its own key
  # checkov:skip=CKV_AWS_111: a key policy's resource is the key itself; the account administers its own key
  # checkov:skip=CKV_AWS_356: a key policy's resource is the key itself ("*" means this key)
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${var.account_id}:root"]
    }
  }

  statement {
    sid       = "CloudWatchAlarmsPublish"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]

    # the statement AWS documents for alarms that notify an encrypted topic
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
  }

  statement {
    sid       = "CloudWatchLogsEncrypt"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:aws:logs:${var.region}:${var.account_id}:log-group:*"]
    }
  }
}
