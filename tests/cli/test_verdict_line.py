"""A verdict is one line, the same in the live view and in ``history``: counts, p-value or bound, decision."""

from __future__ import annotations

from promoter.cli.app import app
from promoter.cli.release import LiveDisplay, verdict_line
from promoter.engine.canary import Observation, Thresholds, VersionMetrics, judge
from promoter.engine.ledger import Ledger
from promoter.engine.release import ReleaseEvent
from promoter.plan import load_plan


def _entry(action: str = "rollback") -> dict:
    t = Thresholds.from_plan(load_plan())
    obs = Observation(VersionMetrics("2", invocations=17, server_errors=5, p95_ms=40),
                      VersionMetrics("1", invocations=143, p95_ms=30), 6.0, dlq_messages=0,
                      newest_datapoint=1_000.0, read_at=1_002.0)
    verdict = judge(obs, t, canary_weight=0.1)
    return {"step": 10, "elapsed": 6.0, "action": action, "why": "; ".join(verdict.reasons), "deadline": 908.0,
            "next_analysis": None, **verdict.to_dict()}


def test_verdict_line_names_the_test_numbers_and_decision():
    line = verdict_line(_entry())
    assert line == ("canary 5/17 errors vs stable 0/143, p=5.4e-05 < 0.005: fail -> rollback, "
                    "newest datapoint 2s old")


def test_live_view_prints_the_verdict_line(capsys):
    with LiveDisplay(json_output=False) as display:
        display(ReleaseEvent("verdict", _entry()))
    err = capsys.readouterr().err
    assert "verdict at 10% after 6s: canary 5/17 errors vs stable 0/143, p=5.4e-05 < 0.005: fail" in err


def test_history_prints_the_verdict_line(runner, tmp_path):
    ledger = Ledger(tmp_path)
    ledger.append("sit", "run-start", run_id="r1", kind_of_run="deploy", release="v1.1.0")
    ledger.append("sit", "verdict", run_id="r1", **_entry())
    ledger.append("sit", "run-end", run_id="r1", outcome="rolled-back", reason="canary at 10%")
    result = runner.invoke(app, ["history", "--env", "sit", "--ledger-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "10% after 6s: canary 5/17 errors vs stable 0/143, p=5.4e-05 < 0.005: fail -> rollback" in result.stdout
