"""The fronts' telemetry: metrics on the short interval, log events on the longer one, both on an explicit flush."""

from __future__ import annotations

import threading
import time

from promoter.sandbox.metrics import Datapoint, Telemetry


class Recorder:
    """Records the CloudWatch and CloudWatch Logs calls the telemetry makes (a stand-in for the two clients)."""

    class exceptions:
        ResourceAlreadyExistsException = RuntimeError

    def __init__(self) -> None:
        self.calls: list[tuple[float, str]] = []
        self.lock = threading.Lock()

    def _note(self, name: str) -> None:
        with self.lock:
            self.calls.append((time.monotonic(), name))

    def put_metric_data(self, **_kw) -> None:
        self._note("metrics")

    def put_log_events(self, **_kw) -> None:
        self._note("logs")

    def create_log_group(self, **_kw) -> None:
        pass

    def create_log_stream(self, **_kw) -> None:
        pass

    def names(self) -> list[str]:
        with self.lock:
            return [name for _, name in self.calls]


def test_logs_wait_for_their_own_interval_metrics_do_not() -> None:
    rec = Recorder()
    telemetry = Telemetry(rec, rec, interval=0.05, log_interval=0.6)
    telemetry.start()
    try:
        telemetry.metrics.add([Datapoint("N", "M", (), 1.0)])
        telemetry.log_events.add("/aws/lambda/f", "stream", ["a line"])
        deadline = time.monotonic() + 2
        while "metrics" not in rec.names() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "metrics" in rec.names()
        assert "logs" not in rec.names()  # well before the log interval
        while "logs" not in rec.names() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "logs" in rec.names()
    finally:
        telemetry.stop()


def test_an_explicit_flush_sends_logs_at_once() -> None:
    rec = Recorder()
    telemetry = Telemetry(rec, rec, interval=10, log_interval=60)
    telemetry.log_events.add("/aws/lambda/f", "stream", ["a line"])
    telemetry.flush()
    assert rec.names() == ["logs"]


def test_datapoints_keep_the_second_they_were_recorded_in() -> None:
    import datetime as dt

    from promoter.sandbox.metrics import MetricBatch

    now = [1000.7]
    batch = MetricBatch(clock=lambda: now[0])
    batch.add([Datapoint("N", "Count", (), 1.0), Datapoint("N", "Latency", (), 12.0, "Milliseconds", raw=True)])
    now[0] = 1001.2
    batch.add([Datapoint("N", "Count", (), 1.0), Datapoint("N", "Latency", (), 30.0, "Milliseconds", raw=True)])
    data = batch.drain()["N"]
    stamps = sorted((d["MetricName"], d["Timestamp"]) for d in data)
    second = dt.datetime.fromtimestamp
    assert stamps == [("Count", second(1000, dt.UTC)), ("Count", second(1001, dt.UTC)),
                      ("Latency", second(1000, dt.UTC)), ("Latency", second(1001, dt.UTC))]
    counts = {(d["MetricName"], d["Timestamp"].timestamp()): d.get("StatisticValues", {}).get("SampleCount")
              or d["Counts"] for d in data}
    assert counts[("Count", 1000.0)] == 1.0 and counts[("Latency", 1001.0)] == [1.0]
    assert batch.drain() == {}
