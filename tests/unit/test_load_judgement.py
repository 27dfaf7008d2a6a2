"""The load run's decisions on plain data: histograms, spans, judgement against the plan, the stress point."""

from __future__ import annotations

import json

import pytest

from promoter.engine.load import (
    LoadResult,
    Span,
    failure_point,
    first_cause,
    judge,
    lambda_figures,
    percentile,
    step_causes,
    stress_schedule,
    verdict,
    write_reports,
)
from promoter.engine.load_runner import bucket_ms, status_class
from promoter.plan import load_plan


@pytest.fixture(scope="module")
def plan():
    return load_plan()


def interval(requests=100, failures=0, status=None, hist=None, target=100, seconds=1.0, ramp=False, step=0,
             elapsed=1.0):
    return {"type": "interval", "requests": requests, "failures": failures,
            "status": status if status is not None else {"2xx": requests - failures},
            "hist": hist if hist is not None else {"20": requests}, "target_rps": target, "seconds": seconds,
            "ramp": ramp, "step": step, "elapsed": elapsed, "ts": 1_800_000_000 + elapsed}


def by_name(figures):
    return {f.name: f for f in figures}


def test_histogram_buckets_and_nearest_rank_percentiles():
    assert [bucket_ms(v) for v in (3.4, 99.6, 123, 999, 1234)] == [3, 100, 120, 1000, 1200]
    hist = {10: 90, 200: 5, 900: 5}
    assert percentile(hist, 50) == 10
    assert percentile(hist, 95) == 200  # the 95th of 100 values
    assert percentile(hist, 96) == 900
    assert percentile({}, 95) is None
    assert [status_class(s) for s in (None, 0, 200, 204, 404, 429, 502)] == [
        "none", "none", "2xx", "2xx", "4xx", "429", "5xx"]


def test_span_merges_intervals_and_takes_the_rate_after_the_ramp():
    intervals = [interval(requests=40, ramp=True, elapsed=1), interval(requests=100, elapsed=2),
                 interval(requests=98, failures=2, status={"2xx": 96, "5xx": 2}, hist={"20": 90, "700": 8},
                          elapsed=3)]
    span = Span.of(intervals)
    assert span.requests == 238 and span.failures == 2
    assert span.achieved_rps == pytest.approx(99.0)  # (100 + 98) / 2 s: the ramp's second is not counted
    assert span.error_rate_pct == pytest.approx(100 * 2 / 238)
    assert span.status == {"2xx": 236, "5xx": 2}
    assert span.p(95) == 20 and span.p(99) == 700


def test_a_good_run_passes_every_figure(plan):
    span = Span.of([interval(elapsed=i) for i in range(1, 31)])
    cleanup = {"created": 50, "deleted": 50, "swept": 0, "left": []}
    lam = {"versions": {"3": {"invocations": 3000, "p95_ms": 40.0}}, "throttles": 0, "concurrent_max": 4,
           "reserved_concurrency": 20, "dynamodb_throttles": None, "complete": True}
    figures = judge(plan, span, lam, cleanup)
    assert verdict(figures)
    named = by_name(figures)
    assert named["latency p95"].threshold == plan.sla.p95_ms == 500
    assert named["error rate"].threshold == plan.sla.error_rate_pct == 0.1
    assert named["achieved rate"].threshold == pytest.approx(95.0)
    assert named["lambda duration p95 (version 3)"].ok is True
    assert named["dynamodb throttled requests"].ok is None  # no datapoints: shown, not judged
    assert named["lambda concurrent executions (max)"].ok is None
    assert named["test data left"].ok is True


@pytest.mark.parametrize(("change", "failing"), [
    ({"hist": {"20": 90, "600": 10}}, "latency p95"),
    ({"failures": 1, "status": {"2xx": 99, "5xx": 1}}, "error rate"),
    ({"requests": 80, "hist": {"20": 80}}, "achieved rate"),
])
def test_each_sla_figure_fails_the_run_on_its_own(plan, change, failing):
    span = Span.of([interval(**change, elapsed=i) for i in range(1, 11)])
    figures = judge(plan, span, None, None)
    assert not verdict(figures)
    assert [f.name for f in figures if f.ok is False] == [failing]
    assert "FAIL" in by_name(figures)[failing].line()


def test_the_functions_own_view_fails_on_throttles_and_slow_versions_and_data_left(plan):
    lam = {"versions": {"3": {"invocations": 100, "p95_ms": 80.0}, "4": {"invocations": 10, "p95_ms": 900.0}},
           "throttles": 7, "concurrent_max": 20, "reserved_concurrency": 20, "dynamodb_throttles": 2}
    failed = {f.name for f in lambda_figures(plan, lam) if f.ok is False}
    assert failed == {"lambda throttles", "lambda duration p95 (version 4)", "dynamodb throttled requests"}
    left = judge(plan, Span.of([interval()]), None, {"created": 3, "deleted": 2, "left": ["abc"]})
    assert by_name(left)["test data left"].ok is False
    unread = lambda_figures(plan, {"error": "AccessDenied"})
    assert unread[0].ok is None and "AccessDenied" in unread[0].note


def test_a_run_with_no_answer_fails_on_its_rate(plan):
    figures = judge(plan, Span.of([interval(requests=0, status={}, hist={})]), None, None)
    assert by_name(figures)["achieved rate"].ok is False


def test_step_causes_name_what_broke(plan):
    held = Span.of([interval(elapsed=i) for i in range(1, 5)], target_rps=100)
    assert step_causes(plan, held) == []
    slow = Span.of([interval(hist={"20": 50, "800": 50})], target_rps=100)
    assert step_causes(plan, slow) == ["latency"]
    throttled = Span.of([interval(failures=5, status={"2xx": 95, "429": 5})], target_rps=100)
    assert step_causes(plan, throttled) == ["throttles"]
    failing = Span.of([interval(failures=3, status={"2xx": 97, "5xx": 3}, hist={"20": 40, "900": 60})],
                      target_rps=100)
    assert step_causes(plan, failing) == ["latency", "5xx"]
    short = Span.of([interval(requests=50, hist={"20": 50})], target_rps=100)
    assert step_causes(plan, short) == ["rate"]
    conflicts = Span.of([interval(failures=1, status={"2xx": 99, "4xx": 1})], target_rps=100)
    assert step_causes(plan, conflicts) == ["errors"]  # any error breaks a stress step


def test_first_cause_is_the_earliest_interval_that_showed_it(plan):
    intervals = [interval(elapsed=1),
                 interval(failures=2, status={"2xx": 98, "429": 2}, elapsed=2),
                 interval(hist={"20": 10, "900": 90}, elapsed=3),
                 interval(failures=1, status={"2xx": 99, "5xx": 1}, elapsed=4)]
    causes = step_causes(plan, Span.of(intervals, target_rps=100))
    assert set(causes) == {"latency", "throttles", "5xx"}
    assert first_cause(plan, intervals, causes) == "throttles"
    assert first_cause(plan, intervals, []) is None


def test_failure_point_is_the_last_step_held_before_the_first_broken():
    steps = [{"rate": 25, "held": True}, {"rate": 50, "held": True},
             {"rate": 75, "held": False, "causes": ["latency", "throttles"], "first_cause": "latency"},
             {"rate": 100, "held": True}]
    point = failure_point(steps)
    assert point == {"highest_held_rps": 50, "first_broken_rps": 75, "broke_first": "latency",
                     "causes": ["latency", "throttles"], "found": True}
    none_broke = failure_point([{"rate": 25, "held": True}, {"rate": 50, "held": True}])
    assert none_broke["found"] is False and none_broke["highest_held_rps"] == 50
    first_broke = failure_point([{"rate": 25, "held": False, "causes": ["5xx"], "first_cause": "5xx"}])
    assert first_broke["highest_held_rps"] is None and first_broke["first_broken_rps"] == 25


def test_stress_schedule_is_bounded_by_ceiling_and_time_limit(plan):
    s = plan.load.stress
    steps = stress_schedule(plan)
    assert steps[0] == {"rate": s.start_rps, "seconds": s.step_seconds}
    assert max(st["rate"] for st in steps) <= s.ceiling_rps
    assert len(steps) * s.step_seconds <= s.time_limit_seconds
    assert [st["rate"] for st in stress_schedule(plan, start=10, step=10, ceiling=35)] == [10, 20, 30]
    assert len(stress_schedule(plan, start=10, step=10, step_seconds=30, ceiling=1000, time_limit=100)) == 3


def test_reports_are_written_and_self_contained(plan, tmp_path):
    result = LoadResult(env="sit", api_url="http://127.0.0.1:1", mode="load", run_id="r1", started=1_800_000_000,
                        ended=1_800_000_010)
    result.intervals = [interval(elapsed=i, hist={"20": 95, "300": 5}) for i in range(1, 11)]
    result.figures = judge(plan, result.span(), None, {"created": 1, "deleted": 1, "left": []})
    result.outcome = "passed"
    reports = write_reports(result, plan, tmp_path)
    csv_lines = (tmp_path / "load-history.csv").read_text().splitlines()
    assert csv_lines[0].startswith("time,elapsed_s,step,target_rps") and len(csv_lines) == 11
    data = json.loads((tmp_path / "load-result.json").read_text())
    assert data["ok"] is True and data["totals"]["requests"] == 1000 and len(data["history"]) == 10
    assert data["reports"] == reports
    html = (tmp_path / "load-report.html").read_text()
    assert html.count("<svg") == 3 and "polyline" in html and "SLA p95 500 ms" in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "").replace(result.api_url, "")


def test_without_locust_the_run_is_refused_with_the_extra_to_install(plan, tmp_path):
    from promoter.engine.load import LoadSettings, run_load
    from promoter.errors import ConfigurationError

    settings = LoadSettings(plan=plan, env="sit", api_url="http://127.0.0.1:9", token="t", python="/bin/false")
    with pytest.raises(ConfigurationError) as err:
        run_load(settings, report_dir=tmp_path)
    assert "promoter[load]" in err.value.hint
    assert not any(tmp_path.iterdir())  # nothing started, nothing written


def test_the_plans_load_section_loads_with_defaults_and_refuses_what_cannot_run(plan):
    from pydantic import ValidationError

    from promoter.plan.models import Load, LoadMix, LoadStress

    assert plan.load.requests_per_second == 100 and plan.load.duration_seconds == 600
    assert plan.load.mix.get == 4 and plan.load.stress.ceiling_rps == 400
    minimal = Load(requests_per_second=10, duration_seconds=60)  # a plan without the new fields still loads
    assert minimal.mix == LoadMix() and minimal.stress == LoadStress() and minimal.max_lambda_throttles == 0
    with pytest.raises(ValidationError, match="at least one request kind"):
        LoadMix(health=0, list=0, get=0, create=0, update=0, delete=0)
    with pytest.raises(ValidationError, match="ceiling_rps"):
        LoadStress(start_rps=50, ceiling_rps=10)
    with pytest.raises(ValidationError):
        Load(requests_per_second=10, duration_seconds=60, surprise=1)


def test_test_data_that_could_not_be_listed_is_not_called_gone(plan):
    cleanup = {"created": 0, "deleted": 0, "swept": 0, "left": [], "sweep_error": "ConnectionRefusedError"}
    figure = by_name(judge(plan, Span.of([interval()]), None, cleanup))["test data left"]
    assert figure.ok is False and "ConnectionRefusedError" in figure.note
