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
"""

from __future__ import annotations

import argparse
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m promoter.sandbox.moto_server", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    parser.add_argument("--account-id", required=True, help="12-digit account id every resource belongs to")
    parser.add_argument("--region", required=True, help="default region of the environment")
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

    def _stop(_signum: int, _frame: Any) -> None:
        sys.exit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    application = DomainDispatcherApplication(create_backend_app)
    print(f"moto server for account {args.account_id} on http://127.0.0.1:{args.port}", flush=True)
    run_simple("127.0.0.1", args.port, application, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
