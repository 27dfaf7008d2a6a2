"""CloudWatch and SQS reader for canary analysis: the ``MetricSource`` port over real (or emulated) AWS.

Per version, over one window, it reads:

- ``AWS/Lambda`` Invocations, Errors and Throttles (Sum) and Duration p95 (ExtendedStatistics), with the
  dimensions Lambda publishes for an alias: FunctionName, Resource=``<function>:<alias>`` and ExecutedVersion;
- the service's own 5xx count from the plan's ``metrics`` section (namespace, metric and dimensions);

and, once per observation, the DLQ depth (SQS ApproximateNumberOfMessages), which of the plan's alarms are in
ALARM, and how fresh the data is: the newest 1-minute datapoint of the canary's Invocations (Lambda's metrics
have 1-minute resolution and arrive late on AWS), so the engine never passes a bake on minutes it has not seen.
The p95 comes with Duration's SampleCount, the number of values it was taken over.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from promoter.adapters.aws import error_code, translate
from promoter.engine.canary import Observation, VersionMetrics, Window
from promoter.plan.models import Metrics

PERCENTILES = (10.0, 25.0, 50.0, 75.0, 90.0, 95.0)


class CloudWatchMetricSource:
    def __init__(
        self,
        cloudwatch: Any,
        sqs: Any,
        *,
        metrics: Metrics,
        function: str,
        alias: str,
        dlq: str | None,
        alarm_names: list[str],
    ) -> None:
        self._cw = cloudwatch
        self._sqs = sqs
        self._m = metrics
        self.function = function
        self.alias = alias
        self.dlq = dlq
        self.alarm_names = alarm_names
        self._dlq_url: str | None = None

    # -- the port ----------------------------------------------------------------------------------------
    def observe(self, canary: str, stable: str | None, window: Window) -> Observation:
        return Observation(
            canary=self.version_metrics(canary, window),
            stable=self.version_metrics(stable, window) if stable else None,
            window_seconds=window.elapsed,
            dlq_messages=self.dlq_messages(),
            alarms_in_alarm=self.alarms_in_alarm(),
            newest_datapoint=self.newest_datapoint(canary, window),
            read_at=datetime.now(UTC).timestamp(),
        )

    def newest_datapoint(self, version: str, window: Window) -> float | None:
        """Start (epoch seconds) of the newest 1-minute datapoint of ``version``'s Invocations in the window."""
        minute = Window(start=window.start, end=window.end, period=60, elapsed=window.elapsed)
        points = self._stats(self._m.lambda_namespace, "Invocations", self._lambda_dims(version), minute,
                             Statistics=["Sum"])
        stamps = [p["Timestamp"].timestamp() for p in points if p.get("Timestamp") is not None]
        return max(stamps) if stamps else None

    def alarms_in_alarm(self) -> tuple[str, ...]:
        if not self.alarm_names:
            return ()
        names: list[str] = []
        try:
            # DescribeAlarms takes at most 100 names per call
            for i in range(0, len(self.alarm_names), 100):
                page = self._cw.describe_alarms(AlarmNames=self.alarm_names[i : i + 100], StateValue="ALARM")
                # the state is checked again here: an endpoint that ignores the StateValue filter (some
                # emulators do when names are given) must not make every alarm look like it is firing
                names.extend(a["AlarmName"] for a in page.get("MetricAlarms", []) if a.get("StateValue") == "ALARM")
        except Exception as exc:
            raise translate(exc, "describe alarms") from None
        return tuple(sorted(names))

    def dlq_messages(self) -> int | None:
        """The DLQ's depth, or None when the queue does not exist in this account."""
        if not self.dlq:
            return None
        try:
            if self._dlq_url is None:
                self._dlq_url = self._sqs.get_queue_url(QueueName=self.dlq)["QueueUrl"]
            attrs = self._sqs.get_queue_attributes(QueueUrl=self._dlq_url,
                                                   AttributeNames=["ApproximateNumberOfMessages"])
        except Exception as exc:
            if error_code(exc) in {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}:
                return None
            raise translate(exc, f"read depth of queue {self.dlq}") from None
        return int(attrs.get("Attributes", {}).get("ApproximateNumberOfMessages", 0))

    def _lambda_dims(self, version: str) -> list[dict[str, str]]:
        return [
            {"Name": "FunctionName", "Value": self.function},
            {"Name": "Resource", "Value": f"{self.function}:{self.alias}"},
            {"Name": "ExecutedVersion", "Value": version},
        ]

    def version_metrics(self, version: str, window: Window) -> VersionMetrics:
        lam = self._m.lambda_namespace
        dims = self._lambda_dims(version)
        service_dims = [
            {"Name": self._m.service_dimension, "Value": self._m.service_name},
            {"Name": self._m.version_dimension, "Value": version},
        ]
        percentiles = self._percentiles(lam, "Duration", dims, window)
        return VersionMetrics(
            version=version,
            invocations=self._sum(lam, "Invocations", dims, window),
            errors=self._sum(lam, "Errors", dims, window),
            server_errors=self._sum(self._m.service_namespace, self._m.server_error_metric, service_dims, window),
            throttles=self._sum(lam, "Throttles", dims, window),
            p95_ms=dict(percentiles).get(95.0),
            duration_samples=self._samples(lam, "Duration", dims, window),
            duration_percentiles=percentiles,
        )

    # -- calls -------------------------------------------------------------------------------------------
    def _stats(self, namespace: str, name: str, dims: list[dict[str, str]], window: Window,
               **stat: Any) -> list[dict[str, Any]]:
        try:
            data = self._cw.get_metric_statistics(
                Namespace=namespace,
                MetricName=name,
                Dimensions=dims,
                StartTime=datetime.fromtimestamp(window.start, UTC),
                EndTime=datetime.fromtimestamp(window.end, UTC),
                Period=window.period,
                **stat,
            )
        except Exception as exc:
            raise translate(exc, f"read metric {namespace}/{name}") from None
        return data.get("Datapoints", [])

    def _sum(self, namespace: str, name: str, dims: list[dict[str, str]], window: Window) -> float:
        return float(sum(p.get("Sum", 0.0) for p in self._stats(namespace, name, dims, window, Statistics=["Sum"])))

    def _samples(self, namespace: str, name: str, dims: list[dict[str, str]], window: Window) -> float:
        points = self._stats(namespace, name, dims, window, Statistics=["SampleCount"])
        return float(sum(p.get("SampleCount", 0.0) for p in points))

    def _percentiles(self, namespace: str, name: str, dims: list[dict[str, str]],
                     window: Window) -> tuple[tuple[float, float], ...]:
        """(percent, value) for each of PERCENTILES CloudWatch answered; p95 is the one the threshold names, the
        others bound how many samples were slower than it."""
        stats = [f"p{p:g}" for p in PERCENTILES]
        points = self._stats(namespace, name, dims, window, ExtendedStatistics=stats)
        out = []
        for pct, stat in zip(PERCENTILES, stats, strict=True):
            values = [p["ExtendedStatistics"][stat] for p in points if stat in (p.get("ExtendedStatistics") or {})]
            # more than one datapoint only when CloudWatch split the window: the worst p95 is the safe reading,
            # and a chunk's lower percentiles say nothing about the whole window
            if values and (len(points) == 1 or pct == 95.0):
                out.append((pct, float(max(values))))
        return tuple(out)


class CloudWatchServiceFigures:
    """What the watch reads beside the version's own numbers: the function's peak concurrency (Maximum of
    ``ConcurrentExecutions`` by FunctionName) and the table's throttled requests (``AWS/DynamoDB``
    ``ThrottledRequests``, Sum, by TableName), over one window. A figure CloudWatch has no datapoint for is 0
    for the throttles (none happened) and None for the concurrency (nothing ran)."""

    def __init__(self, cloudwatch: Any, *, function: str, table: str, lambda_namespace: str = "AWS/Lambda") -> None:
        self._cw = cloudwatch
        self.function = function
        self.table = table
        self.lambda_namespace = lambda_namespace

    def read(self, window: Window) -> dict[str, float | None]:
        concurrency = self._points(self.lambda_namespace, "ConcurrentExecutions",
                                   [{"Name": "FunctionName", "Value": self.function}], window, "Maximum")
        throttled = self._points("AWS/DynamoDB", "ThrottledRequests", [{"Name": "TableName", "Value": self.table}],
                                 window, "Sum")
        return {"max_concurrency": max(concurrency) if concurrency else None,
                "dynamodb_throttled_requests": float(sum(throttled))}

    def _points(self, namespace: str, name: str, dims: list[dict[str, str]], window: Window, stat: str) -> list[float]:
        try:
            data = self._cw.get_metric_statistics(
                Namespace=namespace, MetricName=name, Dimensions=dims,
                StartTime=datetime.fromtimestamp(window.start, UTC), EndTime=datetime.fromtimestamp(window.end, UTC),
                Period=window.period, Statistics=[stat])
        except Exception as exc:
            raise translate(exc, f"read metric {namespace}/{name}") from None
        return [float(p[stat]) for p in data.get("Datapoints", []) if stat in p]
