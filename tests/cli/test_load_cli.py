"""`promoter load` through the CLI: usage errors and the one JSON document on every outcome."""

from __future__ import annotations

import json
import time

import pytest

from promoter.cli.app import app


@pytest.mark.parametrize(("args", "code", "error", "says"), [
    (["load", "--env", "sit", "--stress", "--duration", "30", "--token", "t"], 2, "UsageError", "--duration"),
    (["load", "--env", "sit", "--ceiling", "50", "--token", "t"], 2, "UsageError", "--stress"),
    (["load", "--env", "qa", "--token", "t"], 2, "UnknownEnvironment", "qa"),
    (["load", "--env", "sit", "--rate", "0", "--token", "t"], 2, "BadParameter", "0.1"),
    (["load", "--env", "sit", "--api-url", "ftp://x", "--token", "t"], 2, "UsageError", "http"),
    (["load", "--env", "sit", "--api-url", "http://127.0.0.1:9"], 1, "ConfigurationError", "token"),
])
def test_usage_and_configuration_errors_are_one_json_document(runner, args, code, error, says):
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == code, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["exit_code"] == code and doc["error"] == error
    assert says in (doc["message"] + (doc.get("hint") or ""))


def test_help_teaches_with_examples(runner):
    result = runner.invoke(app, ["load", "--help"])
    assert result.exit_code == 0
    assert "promoter load --env sit --stress" in result.stdout and "sla.p95_ms" in result.stdout


def test_an_unreachable_api_is_a_failed_run_with_its_figures(runner, tmp_path):
    # GIVEN nothing listens on the port: every request of the real Locust child fails to connect
    report = tmp_path / "report"
    result = runner.invoke(app, ["load", "--env", "sit", "--api-url", "http://127.0.0.1:9", "--token", "t",
                                 "--rate", "5", "--duration", "2", "--no-metrics", "--report", str(report), "--json"])
    # THEN exit 1, one JSON document with the failed figures, and the reports on disk
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["outcome"] == "failed"
    failed = {f["name"] for f in doc["figures"] if f["ok"] is False}
    assert "error rate" in failed
    assert doc["totals"]["requests"] > 0 and doc["totals"]["status"].get("none", 0) == doc["totals"]["requests"]
    assert sorted(p.name for p in report.iterdir()) == ["load-history.csv", "load-report.html", "load-result.json",
                                                         "load-runner.log"]


def test_the_parent_stops_a_run_that_passes_its_time_limit(tmp_path):
    from promoter.engine.load import LoadSettings, run_load
    from promoter.plan import load_plan

    # GIVEN a 600 s run and a clock that jumps past the run's time limit after the child's first line
    ticks = iter([0.0])

    def clock() -> float:
        return next(ticks, 1_000_000.0)

    settings = LoadSettings(plan=load_plan(), env="sit", api_url="http://127.0.0.1:9", token="t", rate=5,
                            duration=600, metrics=False)
    started = time.monotonic()
    result = run_load(settings, report_dir=tmp_path, clock=clock)
    # THEN the child was told to stop at once, ended its run (clean-up included) and the run failed, saying why
    assert time.monotonic() - started < 60
    assert result.outcome == "failed"
    assert any("time limit" in p for p in result.problems)
    assert result.cleanup is not None and result.cleanup["left"] == []
