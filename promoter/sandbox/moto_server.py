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
import gc
import math
import os
import re
import signal
import sys
import threading
import time
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


def metric_index(backend: Any) -> dict[tuple[str, str], list[Any]]:
    """The datapoints a CloudWatch backend was sent, by (namespace, metric name).

    moto keeps every datapoint (each value of a ``Values``/``Counts`` pair is one object) in one list and walks
    all of it for each query; the canary's queries during a bake walk only their own metric's datapoints."""
    index = backend.__dict__.get("_promoter_index")
    if index is None:
        index = backend.__dict__.setdefault("_promoter_index", {})
        for md in backend.metric_data:
            index.setdefault((md.namespace, md.name), []).append(md)
    return index


def patch_cloudwatch_exact_dimensions() -> None:
    """Make ``GetMetricStatistics`` match the exact dimension set, as CloudWatch does, reading only the
    queried metric's datapoints (:func:`metric_index`). Idempotent."""
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
        candidates = list(metric_index(self).get((namespace, metric_name), ())) + list(self.aws_metric_data)
        matching = sorted(
            (md for md in candidates
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

    original_put = models.CloudWatchBackend.put_metric_data
    lock = threading.Lock()

    def put_metric_data(self: Any, namespace: str, metric_data: list[dict[str, Any]]) -> None:
        with lock:  # what this call appended is indexed, whatever other threads put meanwhile
            index = metric_index(self)
            before = len(self.metric_data)
            original_put(self, namespace, metric_data)
            for md in self.metric_data[before:]:
                index.setdefault((md.namespace, md.name), []).append(md)

    models.Dimension.__lt__ = dimension_lt
    models.CloudWatchBackend.get_metric_statistics = get_metric_statistics
    models.CloudWatchBackend.put_metric_data = put_metric_data
    models.CloudWatchBackend._promoter_exact_dimensions = True


_SLOW = object()


def attribute_value_wire(value: Any) -> Any:
    """The JSON wire form of one DynamoDB ``AttributeValue`` as moto's serializer writes it, or ``_SLOW``.

    moto 5.2 serializes items member by member through the service model (ten members per attribute value,
    each looked up under several aliases), which made a ``Scan`` of 20 campaigns cost 17 ms of the server's CPU.
    Attribute values reach the serializer as plain ``{type: value}`` dicts; the string, number, boolean, null,
    set, map and list forms serialize to themselves, so they are written directly. Anything else (binary
    values, which are base64-encoded, or a value of an unexpected shape) goes through moto's serializer.
    """
    if not isinstance(value, dict) or len(value) != 1:
        return _SLOW
    ((kind, inner),) = value.items()
    if kind in ("S", "N"):
        return value if type(inner) is str else _SLOW
    if kind in ("BOOL", "NULL"):
        return value if type(inner) is bool else _SLOW
    if kind in ("SS", "NS"):
        return {kind: list(inner)} if type(inner) is list and all(type(v) is str for v in inner) else _SLOW
    if kind == "M" and type(inner) is dict:
        out = {}
        for name, member in inner.items():
            wire = attribute_value_wire(member)
            if wire is _SLOW:
                return _SLOW
            out[name] = wire
        return {"M": out}
    if kind == "L" and type(inner) is list:
        items = []
        for member in inner:
            wire = attribute_value_wire(member)
            if wire is _SLOW:
                return _SLOW
            items.append(wire)
        return {"L": items}
    return _SLOW


def patch_dynamodb_item_serialization() -> None:
    """Write DynamoDB attribute values the way moto's JSON serializer does, without its per-member walk."""
    from moto.core import serialize

    cls = serialize.BaseJSONSerializer
    if getattr(cls, "_promoter_fast_items", False):
        return
    original = cls._serialize_type_structure

    def _serialize_type_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if key and shape.name == "AttributeValue":
            wire = attribute_value_wire(value)
            if wire is not _SLOW:
                self._default_serialize(serialized, wire, shape, key)
                return
        original(self, serialized, value, shape, key)

    cls._serialize_type_structure = _serialize_type_structure
    cls._promoter_original_structure = original
    cls._promoter_fast_items = True


def cached_dispatcher(create_backend_app: Any) -> Any:
    """moto's domain dispatcher, remembering the backend of each host it has seen.

    moto finds the backend for every request by listing its own package directory (a ``stat`` per entry) and
    matching the host against every service's URL patterns, under one lock all request threads share; at a few
    hundred requests a second that lookup was most of the server's time and serialised its threads. The answer
    depends only on the host, so it is looked up once per host.
    """
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    class CachedDispatcher(DomainDispatcherApplication):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._backends: dict[str, Any] = {}

        def get_backend_for_host(self, host: str | None) -> Any:
            if host is None:
                return None
            backend = self._backends.get(host)
            if backend is None:
                backend = super().get_backend_for_host(host)
                if backend:
                    self._backends[host] = backend
            return backend

    return CachedDispatcher(create_backend_app)


class FaultInjector:
    """WSGI middleware in front of moto: serves ``/__sandbox/faults`` and applies its rules to the calls they name
    (the service from the SigV4 scope, the operation from ``X-Amz-Target`` or the query ``Action``)."""

    def __init__(self, app: Any) -> None:
        from promoter.sandbox.faults import FaultBook

        self.app = app
        self.book = FaultBook()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        import io
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
        from promoter.sandbox.wsgi import SOCKET_KEY, RequestAborted

        result = self.app(environ, lambda *_a, **_k: (lambda _data: None))
        for _chunk in result:
            pass
        sock = environ.get(SOCKET_KEY)
        if sock is not None:
            import socket

            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        raise RequestAborted("reply dropped by an injected fault")


_REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 405: "Method Not Allowed", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


def short_heap_walks(interval: float = 5.0) -> threading.Thread:
    """Keep the garbage collector's pauses short as moto's stores grow.

    moto keeps everything it is sent (items, log events, every metric value) for the life of the server, and
    CPython's full collection walks every live object: under load its pauses grew with the heap, from 40 ms to
    240 ms within a minute, stopping every request thread meanwhile. Every ``interval`` seconds the objects that
    survived a full collection are frozen (:func:`gc.freeze`), so each collection walks only what is newer.
    A cycle of frozen objects that later becomes garbage is never collected; moto's stores hardly make any.
    """
    gc.collect()
    gc.freeze()

    def loop() -> None:
        while True:
            time.sleep(interval)
            gc.collect()
            gc.freeze()

    thread = threading.Thread(target=loop, name="heap-freeze", daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m promoter.sandbox.moto_server", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    parser.add_argument("--account-id", required=True, help="12-digit account id every resource belongs to")
    parser.add_argument("--region", required=True, help="default region of the environment")
    parser.add_argument("--access-log", action="store_true",
                        help="log a line per request (off by default: errors are always logged)")
    args = parser.parse_args(argv)

    # moto reads these when it is imported: set them first.
    os.environ["MOTO_ACCOUNT_ID"] = args.account_id
    os.environ["MOTO_PORT"] = str(args.port)
    os.environ["AWS_DEFAULT_REGION"] = args.region
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

    from moto.moto_server.werkzeug_app import create_backend_app

    from promoter.sandbox import wsgi

    patch_cloudwatch_percentiles()
    patch_cloudwatch_exact_dimensions()
    patch_dynamodb_item_serialization()

    def _stop(_signum: int, _frame: Any) -> None:
        sys.exit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    application = FaultInjector(cached_dispatcher(create_backend_app))
    short_heap_walks()
    print(f"moto server for account {args.account_id} on http://127.0.0.1:{args.port}", flush=True)
    wsgi.serve(application, "127.0.0.1", args.port, access_log=args.access_log)


if __name__ == "__main__":
    main()
