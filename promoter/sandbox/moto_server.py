"""moto's server in its own process, bound to loopback, under one account id, with CloudWatch percentiles.

Run as::

    python -m promoter.sandbox.moto_server --port 5000 --account-id 815856636111 --region eu-west-1

``MOTO_ACCOUNT_ID`` is set before moto is imported, so every resource (and ``sts get-caller-identity``) carries
the environment's own account id.

moto answers percentile statistics (``ExtendedStatistics=['p95']`` in ``GetMetricStatistics``, ``Stat='p95'``
in ``GetMetricData``) with nothing. :func:`patch_cloudwatch_percentiles` computes them from the raw datapoints
of each period with the **nearest-rank** method: the smallest value such that at least p % of the samples are
less than or equal to it (``sorted(values)[ceil(p / 100 * n) - 1]``). For the samples 1..100, p95 is 95.
Datapoints sent as statistic sets (``StatisticValues``) carry no raw samples and are left out of percentiles;
a period with no raw samples has no percentile value.

Faults (:mod:`promoter.sandbox.faults`): :class:`FaultInjector` sits in front of moto and serves
``/__sandbox/faults``; its rules throttle, fail, delay or drop the reply of the calls they name.

moto also matches dimensions as a subset in ``GetMetricStatistics``: a query on ``[FunctionName]`` alone sums every
more specific dimension set of that function (``Resource``, ``ExecutedVersion``) into it, and a query without
dimensions sums everything. CloudWatch treats each combination of dimensions as a metric of its own.
:func:`patch_cloudwatch_exact_dimensions` makes the query match the exact set (in any order); it also gives
moto's ``Dimension`` a consistent ordering, which ``GetMetricData`` relies on when it compares sorted sets.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import signal
import sys
from collections.abc import Sequence
from typing import Any

PERCENTILE = re.compile(r"^p(\d{1,2}(\.\d+)?|100(\.0+)?)$")


def parse_percentile(stat: str) -> float | None:
    """``'p95'`` -> ``95.0``; ``'p99.9'`` -> ``99.9``; anything else (``'Sum'``, ``'tm90'``) -> ``None``."""
    match = PERCENTILE.match(stat or "")
    return float(match.group(1)) if match else None


def nearest_rank(values: Sequence[float], pct: float) -> float | None:
    """The nearest-rank percentile of ``values``; ``None`` when there are no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def patch_cloudwatch_percentiles() -> None:
    """Teach moto's CloudWatch to answer percentile statistics. Idempotent."""
    from moto.cloudwatch import models, responses
    from moto.core.responses import ActionResult

    if getattr(models.Statistics, "_promoter_percentiles", False):
        return

    original = models.Statistics.get_statistics_for_type

    def get_statistics_for_type(self: Any, stat: str) -> Any:
        pct = parse_percentile(stat)
        if pct is None:
            return original(self, stat)
        return nearest_rank(self.metric_single_values_list, pct)

    def get_metric_statistics(self: Any) -> ActionResult:
        namespace = self._get_param("Namespace")
        metric_name = self._get_param("MetricName")
        start_time = self._get_param("StartTime")
        end_time = self._get_param("EndTime")
        period = self._get_int_param("Period")
        statistics = self._get_param("Statistics", [])
        dimensions = self._get_param("Dimensions", [])
        unit = self._get_param("Unit")
        extended = self._get_param("ExtendedStatistics") or []
        if not statistics and not extended:
            raise responses.InvalidParameterCombination("Must specify either Statistics or ExtendedStatistics")
        if statistics and extended:
            raise responses.InvalidParameterCombination(
                "Cannot specify both Statistics and ExtendedStatistics in the same request"
            )
        wanted = []
        for stat in extended:
            pct = parse_percentile(stat)
            if pct is None:
                raise responses.InvalidParameterValue(
                    f"The value {stat} for parameter ExtendedStatistics is not supported."
                )
            wanted.append((stat, pct))
        datapoints = self.cloudwatch_backend.get_metric_statistics(
            namespace, metric_name, start_time, end_time, period, statistics, unit=unit, dimensions=dimensions
        )
        for point in datapoints:
            values = point.metric_single_values_list
            computed = {stat: nearest_rank(values, pct) for stat, pct in wanted}
            point.extended_statistics = {k: v for k, v in computed.items() if v is not None} or None
        return ActionResult({"Label": metric_name, "Datapoints": datapoints})

    models.Statistics.get_statistics_for_type = get_statistics_for_type
    models.Statistics.extended_statistics = None
    responses.CloudWatchResponse.get_metric_statistics = get_metric_statistics
    models.Statistics._promoter_percentiles = True


def dimension_key(dimensions: Any) -> frozenset[tuple[str, str]]:
    """A dimension set as a comparable value, from request dicts (``{"Name", "Value"}``) or moto's ``Dimension``."""
    key = set()
    for d in dimensions or ():
        if isinstance(d, dict):
            key.add((str(d.get("Name")), str(d.get("Value"))))
        else:
            key.add((str(d.name), str(d.value)))
    return frozenset(key)


def patch_cloudwatch_exact_dimensions() -> None:
    """Make ``GetMetricStatistics`` match the exact dimension set, as CloudWatch does. Idempotent."""
    from datetime import timedelta

    from moto.cloudwatch import models

    if getattr(models.CloudWatchBackend, "_promoter_exact_dimensions", False):
        return

    def dimension_lt(self: Any, other: Any) -> bool:
        return (str(self.name), str(self.value)) < (str(other.name), str(other.value))

    def get_metric_statistics(self: Any, namespace: str, metric_name: str, start_time: Any, end_time: Any,
                              period: int, stats: list[str], dimensions: list[dict[str, str]],
                              unit: str | None = None) -> list[Any]:
        start_time = start_time.replace(microsecond=0)
        end_time = end_time.replace(microsecond=0)
        if start_time >= end_time:
            raise models.InvalidParameterValue("The parameter StartTime must be less than the parameter EndTime.")
        wanted = dimension_key(dimensions)
        matching = sorted(
            (md for md in self.get_all_metrics()
             if md.namespace == namespace and md.name == metric_name and start_time <= md.timestamp < end_time
             and (not unit or md.unit == unit) and dimension_key(md.dimensions) == wanted),
            key=lambda md: md.timestamp,
        )
        if not matching:
            return []
        step = timedelta(seconds=period)
        data, index = [], 0
        for moment in models.daterange(matching[0].timestamp, matching[-1].timestamp + step, step):
            statistics = models.Statistics(stats, moment)
            while index < len(matching) and matching[index].timestamp < moment + step:
                statistics.metric_data.append(matching[index])
                statistics.unit = matching[index].unit
                index += 1
            if statistics.metric_data:
                data.append(statistics)
        return data

    models.Dimension.__lt__ = dimension_lt
    models.CloudWatchBackend.get_metric_statistics = get_metric_statistics
    models.CloudWatchBackend._promoter_exact_dimensions = True


class FaultInjector:
    """WSGI middleware in front of moto: serves ``/__sandbox/faults`` and applies its rules to the calls they name
    (the service from the SigV4 scope, the operation from ``X-Amz-Target`` or the query ``Action``)."""

    def __init__(self, app: Any) -> None:
        from promoter.sandbox.faults import FaultBook

        self.app = app
        self.book = FaultBook()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        import io
        import time
        from urllib.parse import parse_qs

        from promoter.sandbox import faults

        if environ.get("PATH_INFO") == faults.PATH:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            status, body = self.book.endpoint(environ["REQUEST_METHOD"], environ["wsgi.input"].read(length))
            start_response(f"{status} {_REASONS.get(status, 'OK')}", [("Content-Type", "application/json"),
                                                                        ("Content-Length", str(len(body)))])
            return [body]
        service = faults.signed_service(environ.get("HTTP_AUTHORIZATION"))
        if service is None or not self.book.list():
            return self.app(environ, start_response)
        target = environ.get("HTTP_X_AMZ_TARGET")
        if target:
            operation, protocol = target.rsplit(".", 1)[-1], "json"
        else:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(raw)
            fields = parse_qs(environ.get("QUERY_STRING", "")) | parse_qs(raw.decode("utf-8", "replace"))
            operation, protocol = (fields.get("Action") or ["Unknown"])[0], "query"
        rule = self.book.take(service, operation)
        if rule is None:
            return self.app(environ, start_response)
        if rule.kind in ("throttle", "error"):
            status, headers, body = faults.error_body(rule, protocol)  # type: ignore[arg-type]
            start_response(f"{status} {_REASONS.get(status, 'Error')}",
                           [*headers.items(), ("Content-Length", str(len(body)))])
            return [body]
        if rule.kind == "latency":
            time.sleep(rule.latency_ms / 1000.0)
            return self.app(environ, start_response)
        # drop: let moto apply the call, then cut the connection before any reply
        result = self.app(environ, lambda *_a, **_k: (lambda _data: None))
        for _chunk in result:
            pass
        sock = environ.get("werkzeug.socket")
        if sock is not None:
            import socket

            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        raise ConnectionAbortedError("reply dropped by an injected fault")


_REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 405: "Method Not Allowed", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m promoter.sandbox.moto_server", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    parser.add_argument("--account-id", required=True, help="12-digit account id every resource belongs to")
    parser.add_argument("--region", required=True, help="default region of the environment")
    parser.add_argument("--access-log", action="store_true",
                        help="log a line per request (off: at load-test rates the line costs the server a sixth of "
                             "its CPU; errors are always logged)")
    args = parser.parse_args(argv)

    # moto reads these when it is imported: set them first.
    os.environ["MOTO_ACCOUNT_ID"] = args.account_id
    os.environ["MOTO_PORT"] = str(args.port)
    os.environ["AWS_DEFAULT_REGION"] = args.region
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    patch_cloudwatch_percentiles()
    patch_cloudwatch_exact_dimensions()

    def _stop(_signum: int, _frame: Any) -> None:
        sys.exit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    class Handler(MotoRequestHandler):
        def log_request(self, code: Any = "-", size: Any = "-") -> None:
            if args.access_log or not str(code).startswith(("1", "2", "3")):
                super().log_request(code, size)

    application = FaultInjector(DomainDispatcherApplication(create_backend_app))
    print(f"moto server for account {args.account_id} on http://127.0.0.1:{args.port}", flush=True)
    run_simple("127.0.0.1", args.port, application, threaded=True, request_handler=Handler)


if __name__ == "__main__":
    main()
