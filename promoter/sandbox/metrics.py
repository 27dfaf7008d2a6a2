"""What the sandbox's fronts record in CloudWatch, batched off the request path.

- :class:`MetricBatch` aggregates datapoints in memory; :class:`Telemetry` flushes them every ``interval``
  seconds (and on demand) with ``PutMetricData``: counts as statistic sets, timings as raw values with counts,
  so percentile statistics can be computed from them;
- log events are grouped per (group, stream) and sent with ``PutLogEvents``, creating the group and the stream
  on first use;
- :func:`emf_datapoints` extracts CloudWatch embedded-metric-format records from function output, which CloudWatch
  Logs turns into metrics for real Lambda functions.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

log = logging.getLogger("promoter.sandbox.metrics")

Dimensions = tuple[tuple[str, str], ...]

# How late the fronts' datapoints reach CloudWatch (SANDBOX_FLUSH_INTERVAL overrides it). Lambda's own metrics
# arrive within about a minute on AWS; the sandbox's compressed bakes judge every half second at the quickest
# (promoter.engine.canary.MIN_COMPRESSED_INTERVAL), so its data is never older than one analysis.
FLUSH_INTERVAL = 0.5


@dataclass(frozen=True)
class Datapoint:
    namespace: str
    name: str
    dimensions: Dimensions
    value: float
    unit: str = "Count"
    raw: bool = False  # keep individual values (timings) instead of a statistic set


class MetricBatch:
    """Thread-safe accumulation of datapoints until the next flush, by the whole second they were recorded in.

    CloudWatch files a Lambda invocation's metrics under the time it ran, not the time they were delivered, so
    each datapoint keeps its own second: a query from a moment on (a canary step's start) counts what ran from
    that second on, never what ran a little before it and was flushed after.
    """

    def __init__(self, clock=time.time) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._sets: dict[tuple, list[float]] = {}
        self._raw: dict[tuple, dict[float, int]] = defaultdict(lambda: defaultdict(int))

    def add(self, points: Iterable[Datapoint]) -> None:
        second = int(self._clock())
        with self._lock:
            for p in points:
                key = (second, p.namespace, p.name, p.dimensions, p.unit)
                if p.raw:
                    self._raw[key][round(p.value, 3)] += 1
                    continue
                agg = self._sets.get(key)
                if agg is None:
                    self._sets[key] = [1.0, p.value, p.value, p.value]  # count, sum, min, max
                else:
                    agg[0] += 1
                    agg[1] += p.value
                    agg[2] = min(agg[2], p.value)
                    agg[3] = max(agg[3], p.value)

    def drain(self) -> dict[str, list[dict]]:
        """Take everything accumulated so far as PutMetricData ``MetricData`` lists by namespace."""
        with self._lock:
            sets, self._sets = self._sets, {}
            raw, self._raw = self._raw, defaultdict(lambda: defaultdict(int))
        out: dict[str, list[dict]] = defaultdict(list)
        for (second, namespace, name, dims, unit), (count, total, low, high) in sets.items():
            out[namespace].append({
                "MetricName": name, "Dimensions": [{"Name": k, "Value": v} for k, v in dims],
                "Timestamp": datetime.fromtimestamp(second, UTC), "Unit": unit,
                "StatisticValues": {"SampleCount": count, "Sum": total, "Minimum": low, "Maximum": high},
            })
        for (second, namespace, name, dims, unit), values in raw.items():
            items = sorted(values.items())
            for start in range(0, len(items), 150):  # PutMetricData takes at most 150 values per datum
                chunk = items[start:start + 150]
                out[namespace].append({
                    "MetricName": name, "Dimensions": [{"Name": k, "Value": v} for k, v in dims],
                    "Timestamp": datetime.fromtimestamp(second, UTC), "Unit": unit,
                    "Values": [v for v, _ in chunk], "Counts": [float(c) for _, c in chunk],
                })
        return dict(out)


class LogBatch:
    """Log events per (group, stream) until the next flush."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[tuple[str, str], list[dict]] = defaultdict(list)

    def add(self, group: str, stream: str, lines: Iterable[str], timestamp_ms: int | None = None) -> None:
        ts = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
        with self._lock:
            bucket = self._events[(group, stream)]
            for line in lines:
                bucket.append({"timestamp": ts, "message": line})

    def drain(self) -> dict[tuple[str, str], list[dict]]:
        with self._lock:
            events, self._events = self._events, defaultdict(list)
        return dict(events)


class Telemetry:
    """Batches metrics and logs, flushing on a background thread: metrics every ``interval`` seconds, logs every
    ``log_interval`` (CloudWatch Logs takes a call per log stream, and each execution environment has its own
    stream: at a hundred environments a flush a second was a hundred calls a second). :meth:`flush` sends both."""

    def __init__(self, cloudwatch, logs, interval: float = FLUSH_INTERVAL, log_interval: float = 5.0) -> None:
        self.cloudwatch = cloudwatch
        self.logs = logs
        self.interval = interval
        self.log_interval = max(interval, log_interval)
        self.metrics = MetricBatch()
        self.log_events = LogBatch()
        self._flush_lock = threading.Lock()
        self._known_groups: set[str] = set()
        self._known_streams: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.flush_errors = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="telemetry-flush", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()

    def _run(self) -> None:
        logs_due = time.monotonic() + self.log_interval
        while not self._stop.wait(self.interval):
            now = time.monotonic()
            try:
                self.flush(logs=now >= logs_due)
            except Exception:  # a failed flush must not stop later ones
                self.flush_errors += 1
                log.exception("telemetry flush failed")
            if now >= logs_due:
                logs_due = now + self.log_interval

    def flush(self, *, logs: bool = True) -> None:
        with self._flush_lock:
            for namespace, data in self.metrics.drain().items():
                for start in range(0, len(data), 100):
                    self.cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[start:start + 100])
            if not logs:
                return
            for (group, stream), events in self.log_events.drain().items():
                self._ensure_stream(group, stream)
                events.sort(key=lambda e: e["timestamp"])
                for start in range(0, len(events), 5000):
                    self.logs.put_log_events(logGroupName=group, logStreamName=stream,
                                             logEvents=events[start:start + 5000])

    def _ensure_stream(self, group: str, stream: str) -> None:
        if group not in self._known_groups:
            try:
                self.logs.create_log_group(logGroupName=group)
            except self.logs.exceptions.ResourceAlreadyExistsException:
                pass
            self._known_groups.add(group)
        if (group, stream) not in self._known_streams:
            try:
                self.logs.create_log_stream(logGroupName=group, logStreamName=stream)
            except self.logs.exceptions.ResourceAlreadyExistsException:
                pass
            self._known_streams.add((group, stream))


def emf_datapoints(line: str) -> list[Datapoint]:
    """Metrics of one embedded-metric-format log line (``{"_aws": {"CloudWatchMetrics": [...]}, ...}``)."""
    text = line.strip()
    if not (text.startswith("{") and '"_aws"' in text):
        return []
    try:
        record = json.loads(text)
        directives = record["_aws"]["CloudWatchMetrics"]
    except (ValueError, KeyError, TypeError):
        return []
    points: list[Datapoint] = []
    for directive in directives if isinstance(directives, list) else []:
        try:
            namespace = directive["Namespace"]
            dimension_sets = directive.get("Dimensions") or [[]]
            metrics = directive["Metrics"]
        except (KeyError, TypeError):
            continue
        for metric in metrics:
            name = metric.get("Name") if isinstance(metric, dict) else None
            if not name or name not in record:
                continue
            unit = metric.get("Unit") or "None"
            values = record[name] if isinstance(record[name], list) else [record[name]]
            for dim_set in dimension_sets:
                try:
                    dims = tuple((str(k), str(record[k])) for k in dim_set)
                except KeyError:
                    continue
                for value in values:
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        points.append(Datapoint(namespace, name, dims, float(value), unit, raw=True))
    return points
