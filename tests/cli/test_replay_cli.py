"""``promoter replay`` through the CLI: one JSON document on every outcome, offline, on a real ledger."""

from __future__ import annotations

import json

from promoter.engine.canary import Observation, Thresholds, VersionMetrics
from promoter.engine.ledger import Ledger


def _faulty_run(ledger: Ledger) -> None:
    """A deploy whose canary showed 12 errors in 60 invocations at 10 % and was rolled back."""
    t = Thresholds(error_rate_pct=5, p95_duration_ms=2000, throttles_per_minute=10, dlq_messages=0,
                   min_invocations=5, alpha=0.005)
    obs = Observation(VersionMetrics("2", invocations=60, server_errors=12, p95_ms=80, duration_samples=60),
                      VersionMetrics("1", invocations=540, p95_ms=70, duration_samples=540), 20.0, dlq_messages=0)
    ledger.append("sit", "run-start", run_id="R1", kind_of_run="deploy", release="v1.1.0", stable_version="1",
                  steps=[{"weight": 10, "bake_seconds": 60}, {"weight": 100, "bake_seconds": 0}])
    ledger.append("sit", "verdict", run_id="R1", step=10, elapsed=20, action="rollback", deadline=100,
                  outcome="fail", observation=obs.to_dict(), thresholds=t.to_dict(),
                  judged_with={"canary_weight": 0.1, "preexisting_alarms": [], "bake_seconds": 60,
                               "extension_seconds": 40, "on_inconclusive": "fail", "data_seen": True})
    ledger.append("sit", "run-end", run_id="R1", outcome="rolled-back", reason="canary at 10%")


def test_replay_prints_one_document_and_finds_the_env(runner, cli, tmp_path):
    _faulty_run(Ledger(tmp_path))
    result = runner.invoke(cli, ["replay", "R1", "--threshold", "error_rate_pct=25", "--ledger-dir", str(tmp_path),
                                 "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["env"] == "sit" and doc["comparison"] == "never" and doc["intervals"][0]["replayed"] == "wait"
    same = json.loads(runner.invoke(cli, ["replay", "R1", "--ledger-dir", str(tmp_path), "--json"]).stdout)
    assert same["comparison"] == "same" and same["intervals"][0]["replayed_outcome"] == "fail"


def test_replay_failures_are_json_too(runner, cli, tmp_path):
    _faulty_run(Ledger(tmp_path))
    bad = runner.invoke(cli, ["replay", "R1", "--threshold", "latency=3", "--ledger-dir", str(tmp_path), "--json"])
    assert bad.exit_code == 2 and json.loads(bad.stdout)["error"] == "UsageError"
    missing = runner.invoke(cli, ["replay", "R9", "--ledger-dir", str(tmp_path), "--json"])
    assert missing.exit_code == 1 and "none of the ledgers" in json.loads(missing.stdout)["message"]
    text = runner.invoke(cli, ["replay", "--env", "sit", "--last", "3", "--threshold", "error_rate_pct=25",
                               "--ledger-dir", str(tmp_path)])
    assert text.exit_code == 0 and "1 rolled back, 0 would have; 0 rollbacks added, 1 avoided" in text.stdout
