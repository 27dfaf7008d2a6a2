"""`promoter load` against the sandbox: the real Locust child, the real API front and Lambda front, CloudWatch in
moto, the campaigns table scanned afterwards for anything the run left."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
import yaml
from typer.testing import CliRunner

from promoter.cli.app import app
from promoter.plan import load_plan

pytestmark = pytest.mark.sandbox


@pytest.fixture
def load_plan_file(tmp_path, plan_path) -> Path:
    """The real plan with a load profile fit for seconds: users start over 2 s, CloudWatch waited for 20 s, and a
    stress ramp of 4 s steps from 5 req/s by 10 up to 65."""
    data = yaml.safe_load(Path(plan_path).read_text())
    data["load"].update(spawn_seconds=2, metrics_wait_seconds=20,
                        stress={"start_rps": 5, "step_rps": 10, "step_seconds": 4, "ceiling_rps": 65,
                                "time_limit_seconds": 60})
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    load_plan(path)
    return path


def _campaigns_named(table: str, prefix: str) -> list[dict]:
    ddb = boto3.client("dynamodb")
    items = []
    for page in ddb.get_paginator("scan").paginate(TableName=table):
        items += [i for i in page["Items"] if i.get("name", {}).get("S", "").startswith(prefix)]
    return items


def test_a_short_run_reports_judges_records_and_leaves_no_test_data(sandbox, sandbox_env, load_plan_file, tmp_path):
    plan = load_plan(load_plan_file)
    report = tmp_path / "report"
    result = CliRunner().invoke(app, ["load", "--env", "sit", "--plan", str(load_plan_file), "--token",
                                      sandbox.token("campaigns-admin"), "--rate", "10", "--duration", "8",
                                      "--report", str(report), "--json"])
    doc = json.loads(result.stdout)
    # THEN every figure is there with its threshold from the plan, and the exit code follows the verdict
    figures = {f["name"]: f for f in doc["figures"]}
    assert result.exit_code == (0 if doc["ok"] else 1), result.output
    assert figures["latency p95"]["threshold"] == plan.sla.p95_ms
    assert figures["error rate"]["threshold"] == plan.sla.error_rate_pct
    assert figures["error rate"]["value"] == 0, doc["totals"]  # a valid mix: nothing the API refuses
    # the streamed figures and Locust's own statistics count the same requests
    assert doc["totals"]["requests"] == sum(k["requests"] for k in doc["kinds"].values()) > 0
    assert "create" in doc["kinds"] and set(doc["kinds"]) <= {"health", "list", "get", "create", "update", "delete"}
    # the function's view, read back from CloudWatch for the same window
    assert doc["lambda"]["invocations"] >= doc["totals"]["requests"] * 0.9, doc["lambda"]
    assert figures["lambda throttles"]["ok"] is True
    assert any(name.startswith("lambda duration p95 (version ") for name in figures)
    # the test data: every campaign it created is gone from the table
    assert doc["cleanup"]["created"] > 0 and doc["cleanup"]["left"] == []
    prefix = f"{plan.load.data_prefix}{doc['run_id']}-"
    assert _campaigns_named(plan.names("sit").table, prefix) == []
    # the reports and the ledger record
    assert sorted(p.name for p in report.iterdir()) == ["load-history.csv", "load-report.html", "load-result.json",
                                                         "load-runner.log"]
    assert "<svg" in (report / "load-report.html").read_text()
    records = [json.loads(line) for line in (Path(_home()) / "ledger" / "sit.jsonl").read_text().splitlines()]
    load_records = [r for r in records if r["kind"] == "load"]
    assert load_records[-1]["run_id"] == doc["run_id"] and load_records[-1]["ok"] == doc["ok"]


def _home() -> str:
    import os

    return os.environ["PROMOTER_HOME"]


def test_stress_finds_the_failure_point_under_a_low_reserved_concurrency(sandbox, sandbox_env, load_plan_file,
                                                                         tmp_path):
    plan = load_plan(load_plan_file)
    function = plan.names("sit").function
    lam = boto3.client("lambda")
    lam.put_function_concurrency(FunctionName=function, ReservedConcurrentExecutions=1)
    try:
        result = CliRunner().invoke(app, ["load", "--env", "sit", "--plan", str(load_plan_file), "--token",
                                          sandbox.token("campaigns-admin"), "--stress", "--report",
                                          str(tmp_path / "stress"), "--json"])
    finally:
        lam.delete_function_concurrency(FunctionName=function)
    doc = json.loads(result.stdout)
    assert result.exit_code == 0 and doc["ok"] is True, result.output  # finding the failure point is the goal
    stress = doc["stress"]
    # THEN a failure point within the ceiling, the ramp stopped there, and what broke is named
    assert stress["found"] is True, doc["steps"]
    assert stress["first_broken_rps"] <= 65
    assert doc["steps"][-1]["rate"] == stress["first_broken_rps"]  # the ramp went no further
    assert stress["broke_first"] in stress["causes"]
    assert "throttles" in stress["causes"], doc["steps"]
    if stress["highest_held_rps"] is not None:
        assert stress["highest_held_rps"] < stress["first_broken_rps"]
    assert doc["lambda"]["throttles"] > 0 and doc["lambda"]["reserved_concurrency"] == 1
    assert doc["cleanup"]["left"] == []
    assert _campaigns_named(plan.names("sit").table, f"{plan.load.data_prefix}{doc['run_id']}-") == []


def test_load_step_runs_in_a_pipeline_context_and_fails_on_a_failed_verdict(sandbox, sandbox_env, load_plan_file,
                                                                           tmp_path):
    from promoter.adapters.aws import AwsSessionFactory
    from promoter.engine.ledger import Ledger
    from promoter.engine.load import LoadStep
    from promoter.engine.pipeline import ArtifactRef, PromoteSettings, StepContext
    from promoter.engine.steps import StepWiring
    from promoter.plan.models import PhaseStep

    plan = load_plan(load_plan_file)
    url = sandbox_env["PROMOTER_API_URL"]

    def context(token: str) -> tuple[StepContext, StepWiring]:
        wiring = StepWiring(aws_for=lambda env: AwsSessionFactory(region=plan.environment(env).region),
                            ports_for=lambda env: None, api_urls={"sit": url}, tokens={"sit": token})
        phase = plan.phase("sit-validation")
        # the step as the plan will declare it (the action is wired into the pipeline's table separately)
        step = PhaseStep.model_construct(id="load-test", action="load")
        ctx = StepContext(plan=plan, phase=phase, step=step, env="sit", pipeline_id="p-load", inputs={}, state={},
                          artifact=ArtifactRef(release="v1.1.0", sha256="ab" * 32, path="x.zip"),
                          ledger=Ledger(tmp_path / "home"), started_by="tester",
                          settings=PromoteSettings(plan=plan, env="sit", load_rate=8, load_duration=5))
        return ctx, wiring

    ctx, wiring = context(sandbox.token("campaigns-admin"))
    step = LoadStep(wiring)
    assert "8 req/s for 5 s" in step.probe(ctx).detail
    outcome = step.run(ctx)
    assert outcome.status in ("passed", "failed") and outcome.outputs["requests"] > 0
    assert outcome.status == ("passed" if outcome.outputs["ok"] else "failed")
    assert {"load-history.csv", "load-result.json", "load-report.html"} <= set(outcome.files)
    record = ctx.ledger.records("sit", kind="load")[-1]
    assert record["pipeline_id"] == "p-load" and record["artifact_sha256"] == "ab" * 32

    # a viewer may read but not create: the writes are refused, the error rate breaks the SLA, the step fails
    ctx, wiring = context(sandbox.token("campaigns-viewer"))
    refused = LoadStep(wiring).run(ctx)
    assert refused.status == "failed" and "error rate" in refused.detail
    assert json.loads(refused.files["load-result.json"])["ok"] is False


def test_ctrl_c_stops_the_run_and_removes_its_test_data(sandbox, sandbox_env, load_plan_file, tmp_path):
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    plan = load_plan(load_plan_file)
    cmd = [sys.executable, "-m", "promoter", "load", "--env", "sit", "--plan", str(load_plan_file), "--token",
           sandbox.token("campaigns-admin"), "--rate", "20", "--duration", "120", "--no-metrics", "--report",
           str(tmp_path / "r"), "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PROMOTER_HOME": str(tmp_path / "home")})
    try:
        # WHEN answers are coming back (a live line with a rate above 0: the first environments started cold)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            rate = re.search(r" s +(\d+) req/s", line)
            if rate and int(rate.group(1)) > 0:
                break
        time.sleep(2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    # THEN it stops well before its 120 s, says so in one JSON document, and leaves nothing in the table
    assert proc.returncode == 1, err
    doc = json.loads(out)
    assert doc["error"] == "Interrupted" and "removed its test data" in doc["message"]
    load = doc["load"]
    assert load["outcome"] == "interrupted", load
    assert load["cleanup"]["created"] + load["cleanup"]["swept"] > 0 and load["cleanup"]["left"] == [], load["cleanup"]
    assert load["totals"]["requests"] > 0
    assert _campaigns_named(plan.names("sit").table, f"{plan.load.data_prefix}{load['run_id']}-") == []
    assert (tmp_path / "r" / "load-result.json").exists()
