"""Structured logging shared by the whole service."""

from __future__ import annotations

import sys

from aws_lambda_powertools import Logger

SERVICE_NAME = "campaigns-api"


class _CurrentStdout:
    """Stream that always writes to the *current* ``sys.stdout``.

    The Lambda runtime forwards stdout to CloudWatch; resolving the stream at write
    time keeps logs flowing even when ``sys.stdout`` is swapped after import.
    """

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


logger = Logger(service=SERVICE_NAME, stream=_CurrentStdout())


METRICS_NAMESPACE = "CampaignsApi"
VERSION_DIMENSION = "function_version"


def record_request_metrics(status: int, context: object) -> None:
    """Emit, in CloudWatch's embedded metric format, one request and whether it was answered with a 5xx.

    Lambda's own ``Errors`` metric counts only unhandled exceptions; a 5xx the service answers itself is
    invisible there. These counts, by function version, are what a canary analysis needs to see a release
    that answers errors. ``POWERTOOLS_METRICS_NAMESPACE`` overrides the namespace.
    """
    import os

    from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or METRICS_NAMESPACE
    metrics = EphemeralMetrics(namespace=namespace, service=SERVICE_NAME)
    metrics.add_dimension(name=VERSION_DIMENSION, value=str(getattr(context, "function_version", None) or "$LATEST"))
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=1 if status >= 500 else 0)
    metrics.flush_metrics()
