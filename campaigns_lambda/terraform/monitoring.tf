# "Monitoring & Alerts" of the runbook. Thresholds, comparisons and periods equal the promotion plan's
# alarms (plans/PROM-CAMP-001.yaml); tests/infra fails when the two disagree.
resource "aws_sns_topic" "alerts" {
  name = local.topic_name
  # a customer managed key: the AWS managed SNS key does not let CloudWatch alarms publish
  kms_master_key_id = aws_kms_key.campaigns.arn
}

resource "aws_sns_topic_subscription" "email" {
  for_each = toset(var.alert_emails)

  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = each.value
}

# High Error Rate: > 5 % of invocations fail, three minutes running.
resource "aws_cloudwatch_metric_alarm" "high_error_rate" {
  alarm_name          = "campaigns-${var.env}-high-error-rate"
  alarm_description   = "High Error Rate (> 5 % errors) on ${local.function_name}"
  comparison_operator = "GreaterThanThreshold"
  threshold           = 5
  evaluation_periods  = 3
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]

  metric_query {
    id          = "error_rate_pct"
    expression  = "IF(invocations > 0, 100 * errors / invocations, 0)"
    label       = "Error rate (%)"
    return_data = true
  }

  metric_query {
    id = "errors"

    metric {
      namespace   = "AWS/Lambda"
      metric_name = "Errors"
      period      = 60
      stat        = "Sum"
      dimensions = {
        FunctionName = local.function_name
      }
    }
  }

  metric_query {
    id = "invocations"

    metric {
      namespace   = "AWS/Lambda"
      metric_name = "Invocations"
      period      = 60
      stat        = "Sum"
      dimensions = {
        FunctionName = local.function_name
      }
    }
  }
}

# High Duration: p95 > 2 s.
resource "aws_cloudwatch_metric_alarm" "high_duration" {
  alarm_name          = "campaigns-${var.env}-high-duration"
  alarm_description   = "High Duration (p95 > 2 s) on ${local.function_name}"
  namespace           = "AWS/Lambda"
  metric_name         = "Duration"
  extended_statistic  = "p95"
  period              = 60
  evaluation_periods  = 3
  threshold           = 2000
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
  dimensions = {
    FunctionName = local.function_name
  }
}

# Throttling: > 10 throttles in a minute. Alerts, and scales provisioned concurrency out when enabled.
resource "aws_cloudwatch_metric_alarm" "throttling" {
  alarm_name          = "campaigns-${var.env}-throttling"
  alarm_description   = "Throttling (> 10 throttles/min) on ${local.function_name}"
  namespace           = "AWS/Lambda"
  metric_name         = "Throttles"
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 1
  threshold           = 10
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = concat([aws_sns_topic.alerts.arn], aws_appautoscaling_policy.throttling[*].arn)
  ok_actions          = [aws_sns_topic.alerts.arn]
  dimensions = {
    FunctionName = local.function_name
  }
}

# Dead Letter Queue: any message.
resource "aws_cloudwatch_metric_alarm" "dlq_messages" {
  alarm_name          = "campaigns-${var.env}-dlq-messages"
  alarm_description   = "Dead Letter Queue (> 0 messages) on ${local.dlq_name}"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
  dimensions = {
    QueueName = aws_sqs_queue.dlq.name
  }
}

# The throttling alarm's "auto-scale" action: step scaling of provisioned concurrency on the alias.
# Off by default (provisioned_concurrency_max = 0); it needs the alias on a published version.
resource "aws_appautoscaling_target" "alias" {
  count = var.provisioned_concurrency_max > 0 ? 1 : 0

  service_namespace  = "lambda"
  resource_id        = "function:${local.function_name}:${local.alias_name}"
  scalable_dimension = "lambda:function:ProvisionedConcurrency"
  min_capacity       = 1
  max_capacity       = var.provisioned_concurrency_max
}

resource "aws_appautoscaling_policy" "throttling" {
  count = var.provisioned_concurrency_max > 0 ? 1 : 0

  name               = "campaigns-${var.env}-throttling-scale-out"
  policy_type        = "StepScaling"
  service_namespace  = aws_appautoscaling_target.alias[0].service_namespace
  resource_id        = aws_appautoscaling_target.alias[0].resource_id
  scalable_dimension = aws_appautoscaling_target.alias[0].scalable_dimension

  step_scaling_policy_configuration {
    adjustment_type         = "PercentChangeInCapacity"
    cooldown                = 120
    metric_aggregation_type = "Maximum"

    step_adjustment {
      metric_interval_lower_bound = 0
      scaling_adjustment          = 50
    }
  }
}

locals {
  dashboard_widgets = ["Invocations", "Errors", "Duration", "Throttles", "ConcurrentExecutions"]
  widget_stat = {
    Invocations          = "Sum"
    Errors               = "Sum"
    Duration             = "p95"
    Throttles            = "Sum"
    ConcurrentExecutions = "Maximum"
  }
}

resource "aws_cloudwatch_dashboard" "campaigns" {
  dashboard_name = local.dashboard
  dashboard_body = jsonencode({
    widgets = [
      for i, metric in local.dashboard_widgets : {
        type   = "metric"
        x      = (i % 2) * 12
        y      = floor(i / 2) * 6
        width  = 12
        height = 6
        properties = {
          title   = metric
          region  = var.region
          view    = "timeSeries"
          stacked = false
          period  = 60
          stat    = local.widget_stat[metric]
          metrics = [["AWS/Lambda", metric, "FunctionName", local.function_name]]
        }
      }
    ]
  })
}
