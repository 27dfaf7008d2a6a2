"""The fault matrix: one cell per fault, each a real ``promoter`` process against the sandbox under traffic.

Every cell asserts the exit code, where the alias ends, and that the ledger is complete: every alias intent has its
change, every run has an end record. Faults in the AWS APIs come from the sandbox's own fault hook
(``/__sandbox/faults``); interrupts are real signals to the promoter process. The README's fault matrix lists
these cells.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import boto3
import pytest
from typer.testing import CliRunner

from promoter.cli.app import app as cli
from promoter.engine.ledger import Ledger
from promoter.engine.traffic import SteadyTraffic

pytestmark = pytest.mark.sandbox

ENV = "sit"
CLI_ENV = {"COLUMNS": "120", "NO_COLOR": "1"}


def alias(s) -> dict:
    data = boto3.client("lambda").get_alias(FunctionName=s.names.function, Name=s.names.alias)
    return {"version": data["FunctionVersion"],
            "weights": (data.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}}


def traffic(s, rate: float = 30) -> SteadyTraffic:
    return SteadyTraffic(s.api, s.sb.token("campaigns-viewer"), rate=rate, threads=4)


def promoter(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "promoter", *args], env={**os.environ}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def deploy(built, *extra: str, bake: str = "60", artifact=None) -> subprocess.Popen:
    return promoter("deploy", "--env", ENV, "--artifact", str(artifact or built.good), "--release", "v1.1.0",
                    "--allow-untagged", "--yes", "--bake", bake, "--analysis-interval", "2", *extra)


def cli_run(*args: str):
    return CliRunner().invoke(cli, [*args, "--env", ENV, "--yes"] if args[0] in ("abort", "rollback")
                              else [*args, "--env", ENV], env=CLI_ENV)


def wait_for(predicate, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def finish(proc: subprocess.Popen, timeout: float = 90) -> tuple[int, str]:
    try:
        _out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err


def complete_ledger(s) -> list[dict]:
    """Every alias intent has its outcome (the change, or the failure that left the alias as it was) and every
    started run has an end; returns the runs."""
    ledger = Ledger(s.home)
    records = ledger.records(ENV)
    assert ledger.torn_lines == []
    intents = Counter((r["run_id"], str(r["step"])) for r in records if r["kind"] == "alias-intent")
    done = Counter((r["run_id"], str(r["step"])) for r in records if r["kind"] in ("alias-change", "alias-failed"))
    assert intents == done, (intents, done)
    runs = ledger.runs(ENV)
    assert all(r.get("outcome") for r in runs), [r for r in runs if not r.get("outcome")]
    return runs


def last_end(s) -> dict:
    return Ledger(s.home).records(ENV, kind="run-end")[-1]


# -- interrupts ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("step", [10, 50])
def test_three_quick_ctrl_c_at_each_bake_roll_back_with_a_record(sandbox, built, step):
    with traffic(sandbox):
        proc = deploy(built, "--canary", bake="6")
        wait_for(lambda: alias(sandbox)["weights"] == {"2": step / 100})
        time.sleep(0.5)
        for _ in range(3):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.003)
        code, err = finish(proc)
    assert code == 3, err
    assert alias(sandbox) == {"version": "1", "weights": {}}
    end = last_end(sandbox)
    # signals arriving closer together than the interpreter checks for them count once
    assert end["outcome"] == "rolled-back" and 1 <= end["interrupts"] <= 3
    complete_ledger(sandbox)


def test_three_quick_ctrl_c_during_the_build_change_nothing_and_are_recorded(sandbox, tmp_path):
    proc = promoter("deploy", "--env", ENV, "--canary", "--release", "v1.1.0", "--target", "local",
                    "--allow-untagged", "--yes", "--out", str(tmp_path / "dist"))
    for line in proc.stderr:  # the build announces itself before the slow part
        if "vendoring dependencies" in line:
            break
    for _ in range(3):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.003)
    code, err = finish(proc)
    assert code == 1, err
    assert "interrupted before" in err  # before anything changed (or, had the build just finished, any traffic)
    assert alias(sandbox) == {"version": "1", "weights": {}}
    runs = complete_ledger(sandbox)
    assert [r["outcome"] for r in runs] == ["aborted"]


def test_three_quick_ctrl_c_during_the_pre_traffic_gate_move_nothing(sandbox, built):
    # GIVEN the gate's direct invocations slowed (1.5 s each), and no user traffic to share the fault with
    sandbox.sb.add_fault({"service": "lambda", "operation": "Invoke", "kind": "latency", "latency_ms": 1500,
                          "count": 7})
    proc = deploy(built, "--canary", bake="6")
    lam = boto3.client("lambda")
    wait_for(lambda: len(lam.list_versions_by_function(FunctionName=sandbox.names.function)["Versions"]) == 3)
    time.sleep(0.5)
    for _ in range(3):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.003)
    code, err = finish(proc)
    assert code == 1, err
    assert "interrupted before any traffic moved" in err
    assert alias(sandbox) == {"version": "1", "weights": {}}
    assert last_end(sandbox)["outcome"] == "aborted"
    complete_ledger(sandbox)


def test_sigterm_mid_bake_rolls_back(sandbox, built):
    with traffic(sandbox):
        proc = deploy(built, "--canary")
        wait_for(lambda: alias(sandbox)["weights"] == {"2": 0.1})
        proc.send_signal(signal.SIGTERM)
        code, err = finish(proc)
    assert code == 3, err
    assert alias(sandbox) == {"version": "1", "weights": {}}
    assert last_end(sandbox)["outcome"] == "rolled-back"
    complete_ledger(sandbox)


# -- kill -9 -----------------------------------------------------------------------------------------------------------
def _killed_at_10(sandbox, built) -> str:
    proc = deploy(built, "--canary")
    wait_for(lambda: alias(sandbox)["weights"] == {"2": 0.1})
    proc.kill()
    proc.communicate()
    (run,) = [r for r in Ledger(sandbox.home).runs(ENV) if r.get("kind_of_run") == "deploy"]
    # every command now says the holder is dead and names its unfinished run
    refused = cli_run("rollback", "--to", "v1.0.0")
    assert refused.exit_code == 1
    assert "no longer running" in refused.output and f"run {run['run_id']} is unfinished" in refused.output
    assert f"promoter deploy --env {ENV} --resume" in refused.output
    assert cli_run("lock", "break").exit_code == 0  # a dead holder needs no --force
    return run["run_id"]


def test_kill_9_then_resume_finishes_the_release(sandbox, built):
    with traffic(sandbox):
        run_id = _killed_at_10(sandbox, built)
        code, err = finish(promoter("deploy", "--env", ENV, "--resume", "--yes", "--bake", "4",
                                    "--analysis-interval", "2"))
    assert code == 0, err
    assert alias(sandbox) == {"version": "2", "weights": {}}
    runs = complete_ledger(sandbox)
    assert [r["outcome"] for r in runs if r["run_id"] == run_id] == ["succeeded"]


def test_kill_9_then_abort_returns_to_stable(sandbox, built):
    with traffic(sandbox):
        run_id = _killed_at_10(sandbox, built)
    result = cli_run("abort")
    assert result.exit_code == 0, result.output
    assert alias(sandbox) == {"version": "1", "weights": {}}
    assert last_end(sandbox)["run_id"] == run_id and last_end(sandbox)["outcome"] == "aborted"
    complete_ledger(sandbox)


# -- the lock ----------------------------------------------------------------------------------------------------------
def test_breaking_a_live_lock_is_refused_and_forcing_it_stops_the_holder(sandbox, built):
    with traffic(sandbox):
        proc = deploy(built, "--canary", bake="8")
        wait_for(lambda: alias(sandbox)["weights"] == {"2": 0.1})
        refused = cli_run("lock", "break")
        assert refused.exit_code == 1 and "still running" in refused.output
        assert cli_run("lock", "break", "--force").exit_code == 0
        code, err = finish(proc)
    # the holder stopped at its next alias change without touching the alias
    assert code == 4, err
    assert "lock of sit was broken" in err
    assert alias(sandbox) == {"version": "1", "weights": {"2": 0.1}}
    (lost,) = Ledger(sandbox.home).records(ENV, kind="lock-lost")
    assert Ledger(sandbox.home).records(ENV, kind="lock-broken")[-1]["forced"] is True
    # and the run it left is finished by whoever now acts: one end record
    result = cli_run("abort")
    assert result.exit_code == 0, result.output
    assert alias(sandbox) == {"version": "1", "weights": {}}
    runs = complete_ledger(sandbox)
    assert [r["outcome"] for r in runs if r["run_id"] == lost["run_id"]] == ["aborted"]
    assert len(Ledger(sandbox.home).records(ENV, kind="run-end", run_id=lost["run_id"])) == 1


# -- AWS faults through the sandbox's fault hook -----------------------------------------------------------------
def test_a_lost_update_alias_reply_is_recognised_and_the_release_carries_on(sandbox, built):
    with traffic(sandbox):
        proc = deploy(built, "--canary", bake="4")
        wait_for(lambda: alias(sandbox)["weights"] == {"2": 0.1})
        # the next UpdateAlias (to 50 %) is applied and its reply dropped; the SDK retries with the same RevisionId
        sandbox.sb.add_fault({"service": "lambda", "operation": "UpdateAlias", "kind": "drop", "count": 1})
        code, err = finish(proc)
    assert code == 0, err
    assert alias(sandbox) == {"version": "2", "weights": {}}
    settled = [c for c in Ledger(sandbox.home).records(ENV, kind="alias-change") if c.get("settled")]
    assert [c["step"] for c in settled] == [50]
    assert sandbox.sb.faults()[0]["hits"] == 1
    complete_ledger(sandbox)


def test_a_rollback_throttled_a_few_times_still_lands_on_stable(sandbox, built):
    with traffic(sandbox):
        proc = deploy(built, "--canary", "--env-var", "CHAOS_ERROR_RATE=0.5", "--env-var", "CHAOS_START_AFTER=10",
                      bake="12")
        wait_for(lambda: alias(sandbox)["weights"] == {"2": 0.1})
        sandbox.sb.add_fault({"service": "lambda", "operation": "UpdateAlias", "kind": "throttle", "count": 2})
        code, err = finish(proc)
    assert code == 3, err
    assert alias(sandbox) == {"version": "1", "weights": {}}
    assert sandbox.sb.faults()[0]["hits"] == 2
    complete_ledger(sandbox)


def test_a_rollback_throttled_past_its_retries_is_exit_4_and_abort_finishes_it(sandbox, built):
    with traffic(sandbox):
        proc = deploy(built, "--canary", "--env-var", "CHAOS_ERROR_RATE=0.5", "--env-var", "CHAOS_START_AFTER=10",
                      bake="12")
        wait_for(lambda: alias(sandbox)["weights"] == {"2": 0.1})
        sandbox.sb.add_fault({"service": "lambda", "operation": "UpdateAlias", "kind": "throttle", "seconds": 300})
        code, err = finish(proc, timeout=150)
        assert code == 4, err
        assert "promoter abort --env sit" in err
        assert alias(sandbox) == {"version": "1", "weights": {"2": 0.1}}
        assert last_end(sandbox)["outcome"] == "rollback-failed"
        sandbox.sb.clear_faults()
        result = cli_run("abort")
    assert result.exit_code == 0, result.output
    assert alias(sandbox) == {"version": "1", "weights": {}}
    assert last_end(sandbox)["outcome"] == "aborted"
    complete_ledger(sandbox)


def test_status_when_the_lambda_api_is_unreachable_shows_the_local_state(sandbox, built):
    with traffic(sandbox):
        proc = deploy(built, "--canary", "--on-interrupt", "hold")
        wait_for(lambda: alias(sandbox)["weights"] == {"2": 0.1})
        proc.send_signal(signal.SIGINT)
        code, err = finish(proc)
    assert code == 130, err
    sandbox.sb.add_fault({"service": "lambda", "kind": "error", "status": 503, "seconds": 120})
    result = CliRunner().invoke(cli, ["status", "--env", ENV, "--json"], env=CLI_ENV)
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["unfinished_run"] == last_end(sandbox)["run_id"]
    assert data["last_alias"]["weights"] == {"2": 0.1}
    assert "503" in data["aws_error"] or "ServiceException" in data["aws_error"]
    sandbox.sb.clear_faults()
    complete_ledger(sandbox)


def test_a_plan_with_a_duplicate_key_is_refused_and_recorded(sandbox, built, tmp_path):
    text = sandbox.plan_file.read_text()
    assert "  error_rate_pct: 5.0\n" in text
    bad = tmp_path / "dup.yaml"
    bad.write_text(text.replace("  error_rate_pct: 5.0\n", "  error_rate_pct: 5.0\n  error_rate_pct: 100\n", 1))
    code, err = finish(promoter("deploy", "--env", ENV, "--plan", str(bad), "--artifact", str(built.good),
                                "--release", "v1.1.0", "--allow-untagged", "--yes"))
    assert code == 1 and "duplicate key" in err
    assert alias(sandbox) == {"version": "1", "weights": {}}
    (refusal,) = Ledger(sandbox.home).records(ENV, kind="refusal")
    assert refusal["error"] == "PlanError"
