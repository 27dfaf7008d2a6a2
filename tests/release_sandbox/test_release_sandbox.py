"""The release engine end to end against the embedded sandbox, with steady synthetic traffic during deploys.

Bakes are compressed (``--bake 4 --analysis-interval 2``) and the test plan needs 5 canary invocations for a
verdict; thresholds and canary steps are the plan's.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest
from typer.testing import CliRunner

from promoter.adapters.aws import AwsSessionFactory
from promoter.cli.app import app as cli
from promoter.engine import release
from promoter.engine.ledger import Ledger
from promoter.engine.traffic import SteadyTraffic
from promoter.errors import RollbackFailed

pytestmark = pytest.mark.sandbox

ENV = "sit"
CLI_ENV = {"COLUMNS": "120", "NO_COLOR": "1"}
FAST = ["--bake", "4", "--analysis-interval", "2"]


def alias(s) -> dict:
    data = boto3.client("lambda").get_alias(FunctionName=s.names.function, Name=s.names.alias)
    return {"version": data["FunctionVersion"],
            "weights": (data.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}}


def traffic(s, rate: float = 30) -> SteadyTraffic:
    return SteadyTraffic(s.api, s.sb.token("campaigns-viewer"), rate=rate, threads=4)


def deploy_cli(*args: str):
    return CliRunner().invoke(cli, ["deploy", "--env", ENV, "--allow-untagged", "--yes", *args], env=CLI_ENV)


def changes(s) -> list[dict]:
    return Ledger(s.home).records(ENV, kind="alias-change")


def test_good_release_goes_10_50_100_under_traffic(sandbox, built):
    with traffic(sandbox) as load:
        result = deploy_cli("--canary", "--release", "v1.1.0", *FAST, "--json")  # the default lambda build
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["outcome"] == "succeeded"
    assert [c["after"]["weights"] for c in changes(sandbox)] == [{"2": 0.1}, {"2": 0.5}, {}]
    assert alias(sandbox) == {"version": "2", "weights": {}}
    # verdicts were reached on real canary traffic, never on an empty window
    passes = [v for v in record["verdicts"] if v["outcome"] == "pass"]
    assert {v["step"] for v in passes} == {10, 50}
    assert all(v["observation"]["canary"]["invocations"] >= 5 for v in passes)
    assert passes[0]["observation"]["canary"]["p95_ms"] is not None  # the sandbox answers p95
    assert load.stats.by_release.get("v1.1.0", 0) > 0 and load.stats.by_release.get("v1.0.0", 0) > 0


def test_chaos_release_is_rolled_back_at_10_percent(sandbox, built):
    # GIVEN a release that answers 30 % of requests with a 500 once each execution environment has served ten
    # (CHAOS_START_AFTER), so it passes the pre-traffic gate's seven requests and fails under user traffic
    with traffic(sandbox):
        result = deploy_cli("--canary", "--artifact", str(built.good), "--release", "v1.1.0",
                            "--env-var", "CHAOS_ERROR_RATE=0.3", "--env-var", "CHAOS_START_AFTER=10",
                            # a bake long enough for the faults, which begin after ten requests per execution
                            # environment, to show in the 10 % window whichever worker serves the canary
                            "--bake", "12", "--analysis-interval", "2", "--json")
    assert result.exit_code == 3, result.output
    assert alias(sandbox) == {"version": "1", "weights": {}}
    assert [c["after"]["weights"] for c in changes(sandbox)] == [{"2": 0.1}, {}]
    end = Ledger(sandbox.home).records(ENV, kind="run-end")[-1]
    rate = next(c for c in end["verdict"]["checks"] if c["name"] == "error_rate_pct")
    assert rate["ok"] is False and rate["value"] > rate["threshold"] == 5.0


def test_slow_release_is_rolled_back_at_10_percent_on_p95(sandbox, built):
    # GIVEN a release made slower than the plan's p95 threshold (2000 ms) by fault injection; every request
    # still answers correctly, so the pre-traffic gate lets it through and only the canary analysis can stop it
    with traffic(sandbox, rate=20):
        result = deploy_cli("--canary", "--artifact", str(built.good), "--release", "v1.1.0",
                            "--env-var", "CHAOS_LATENCY_MS=2300", *FAST, "--json")
    assert result.exit_code == 3, result.output
    assert alias(sandbox) == {"version": "1", "weights": {}}
    assert [c["after"]["weights"] for c in changes(sandbox)] == [{"2": 0.1}, {}]
    end = Ledger(sandbox.home).records(ENV, kind="run-end")[-1]
    assert end["outcome"] == "rolled-back"
    p95 = next(c for c in end["verdict"]["checks"] if c["name"] == "p95_duration_ms")
    assert p95["ok"] is False and p95["value"] > 2000 and p95["threshold"] == 2000


def test_crashing_release_is_stopped_by_the_pretraffic_gate_with_no_traffic_moved(sandbox, built):
    with traffic(sandbox) as load:
        result = deploy_cli("--canary", "--artifact", str(built.crashing), "--release", "v1.2.0", *FAST)
    assert result.exit_code == 1, result.output
    assert "pre-traffic gate" in result.output
    assert alias(sandbox) == {"version": "1", "weights": {}}
    assert changes(sandbox) == []
    assert load.stats.by_release.get("v1.2.0", 0) == 0
    end = Ledger(sandbox.home).records(ENV, kind="run-end")[-1]
    assert end["outcome"] == "refused"


def test_alias_changed_behind_the_engines_back_is_detected(sandbox, built):
    ports = release.Ports.for_aws(AwsSessionFactory(region=sandbox.sb.region), sandbox.plan, ENV,
                                  Ledger(sandbox.home))
    settings = release.DeploySettings(plan=sandbox.plan, env=ENV, release="v1.1.0", canary=True,
                                      artifact=built.good, allow_untagged=True, bake_seconds=20,
                                      analysis_interval=2)
    outcome: dict = {}

    def run():
        try:
            outcome["record"] = release.deploy(settings, ports)
        except Exception as exc:
            outcome["error"] = exc

    with traffic(sandbox):
        worker = threading.Thread(target=run)
        worker.start()
        _wait_for(lambda: alias(sandbox)["weights"] == {"2": 0.1}, 60)
        boto3.client("lambda").update_alias(FunctionName=sandbox.names.function, Name=sandbox.names.alias,
                                            FunctionVersion="1", RoutingConfig={"AdditionalVersionWeights": {"2": 0.9}})
        worker.join(60)
    assert isinstance(outcome.get("error"), RollbackFailed), outcome
    assert "changed by someone else" in str(outcome["error"])
    assert alias(sandbox) == {"version": "1", "weights": {"2": 0.9}}  # the engine did not fight it


def _promoter(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "promoter", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")


def test_ctrl_c_mid_bake_leaves_the_alias_on_stable(sandbox, built):
    import os

    env = {**os.environ}
    with traffic(sandbox):
        proc = _promoter("deploy", "--env", ENV, "--canary", "--artifact", str(built.good), "--release", "v1.1.0",
                         "--allow-untagged", "--yes", "--bake", "60", "--analysis-interval", "2", env=env)
        try:
            _wait_for(lambda: alias(sandbox)["weights"] == {"2": 0.1}, 60)
            time.sleep(1)
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 3, err
    assert alias(sandbox) == {"version": "1", "weights": {}}
    end = Ledger(sandbox.home).records(ENV, kind="run-end")[-1]
    assert end["outcome"] == "rolled-back" and "interrupted" in end["reason"]


def test_rollback_to_a_tag_after_a_release(sandbox, built):
    result = deploy_cli("--artifact", str(built.good), "--release", "v1.1.0",
                        "--all-at-once", "rehearsing a rollback")  # sit's plan says canary: relaxed, recorded
    assert result.exit_code == 0, result.output
    assert alias(sandbox)["version"] == "2"
    result = CliRunner().invoke(cli, ["rollback", "--env", ENV, "--to", "v1.0.0", "--yes"], env=CLI_ENV)
    assert result.exit_code == 0, result.output
    assert alias(sandbox) == {"version": "1", "weights": {}}
    result = CliRunner().invoke(cli, ["rollback", "--env", ENV, "--to", "v0.9.0", "--yes"], env=CLI_ENV)
    assert result.exit_code == 1 and "v1.0.0 (version 1)" in result.output


def test_two_deploys_at_once_cannot_both_shift(sandbox, built, tmp_path):
    import os

    env = {**os.environ}
    args = ["deploy", "--env", ENV, "--canary", "--artifact", str(built.good), "--release", "v1.1.0",
            "--allow-untagged", "--yes", "--bake", "3", "--analysis-interval", "1", "--on-interrupt", "rollback"]
    with traffic(sandbox):
        procs = [_promoter(*args, env=env) for _ in range(2)]
        results = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], results
    loser = results[[p.returncode for p in procs].index(1)][1]
    assert "locked by" in loser
    # one run, one set of shifts
    runs = [r for r in Ledger(sandbox.home).runs(ENV) if r.get("kind_of_run") == "deploy"]
    assert sorted(r.get("refusal", False) for r in runs) == [False, True]  # the loser's refusal is on record
    assert [c["after"]["weights"] for c in changes(sandbox)] == [{"2": 0.1}, {"2": 0.5}, {}]
    assert Path(built.good).exists()


def _interrupt_and_hold(sandbox, built) -> subprocess.Popen:
    """Start a canary deploy with --on-interrupt hold, Ctrl-C it during the 10 % bake; return the finished process."""
    import os

    proc = _promoter("deploy", "--env", ENV, "--canary", "--artifact", str(built.good), "--release", "v1.1.0",
                     "--allow-untagged", "--yes", "--bake", "60", "--analysis-interval", "2",
                     "--on-interrupt", "hold", env={**os.environ})
    try:
        _wait_for(lambda: alias(sandbox)["weights"] == {"2": 0.1}, 60)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc


def test_interrupt_with_hold_then_abort_returns_to_stable(sandbox, built):
    with traffic(sandbox):
        proc = _interrupt_and_hold(sandbox, built)
    # the alias stays where it was, and the ledger says so
    assert proc.returncode == 130
    assert alias(sandbox) == {"version": "1", "weights": {"2": 0.1}}
    end = Ledger(sandbox.home).records(ENV, kind="run-end")[-1]
    assert end["outcome"] == "interrupted-hold"
    status = CliRunner().invoke(cli, ["status", "--env", ENV, "--json"], env=CLI_ENV)
    assert json.loads(status.stdout)["unfinished_run"] == end["run_id"]

    result = CliRunner().invoke(cli, ["abort", "--env", ENV, "--yes"], env=CLI_ENV)
    assert result.exit_code == 0, result.output
    assert alias(sandbox) == {"version": "1", "weights": {}}


def test_interrupt_with_hold_then_resume_finishes_the_release(sandbox, built):
    with traffic(sandbox):
        proc = _interrupt_and_hold(sandbox, built)
        assert proc.returncode == 130
        result = deploy_cli("--resume", "--canary", *FAST, "--json")
    assert result.exit_code == 0, result.output
    assert alias(sandbox) == {"version": "2", "weights": {}}
    # the resumed run bakes the interrupted 10 % step again, then 50 % and 100 %; traffic never left the canary
    weights = [c["after"]["weights"] for c in changes(sandbox)]
    assert weights == [{"2": 0.1}, {"2": 0.1}, {"2": 0.5}, {}]
    assert [e["outcome"] for e in Ledger(sandbox.home).records(ENV, kind="run-end")] == ["interrupted-hold",
                                                                                        "succeeded"]
