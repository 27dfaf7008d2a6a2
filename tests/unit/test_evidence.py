"""The evidence pack: written at each end of a pipeline run, hashes chained, verified, tampering named."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from promoter.engine.evidence import svg_chart, timeline, verify_pack, write_pack
from promoter.engine.ledger import Ledger
from promoter.engine.pipeline import ArtifactRef, PipelinePorts, PromoteSettings, StepOutcome, promote
from promoter.errors import RefusedError
from promoter.plan import load_plan

PLAN = load_plan(Path(__file__).resolve().parents[2] / "plans" / "PROM-CAMP-001.yaml")
SHA = "f" * 64


def deploy_run(ledger: Ledger, run_id: str = "r1") -> None:
    """The records a canary deploy leaves: publish, shifts 10 -> 100, verdicts with their numbers, end."""
    add = lambda kind, **d: ledger.append("sit", kind, run_id=run_id, **d)  # noqa: E731
    add("run-start", kind_of_run="deploy", artifact={"sha256": SHA}, steps=[{"weight": 10}, {"weight": 100}])
    add("step", name="publish", status="published", version="2")
    add("alias-change", step=10, before={"version": "1", "weights": {}}, after={"version": "1", "weights": {"2": 0.1}})
    add("verdict", step=10, elapsed=2.0, outcome="pass", action="advance", why="healthy",
        observation={"canary": {"invocations": 40, "error_rate_pct": 0.5, "p95_ms": 80}},
        checks=[{"name": "error_rate", "threshold": 5.0}])
    add("alias-change", step=100, before={"version": "1", "weights": {"2": 0.1}}, after={"version": "2", "weights": {}})
    add("run-end", outcome="succeeded", reason="version 2 serves 100% of live")


class Deploy:
    def __init__(self, ledger):
        self.ledger = ledger

    def probe(self, ctx):
        raise AssertionError

    def run(self, ctx):
        deploy_run(self.ledger)
        return StepOutcome("passed", "succeeded", {"run_id": "r1", "outcome": "succeeded"},
                           files={"deploy-record.json": {"run_id": "r1"}})


class Passing:
    def __init__(self, files=None):
        self.files = files or {}

    def probe(self, ctx):
        raise AssertionError

    def run(self, ctx):
        outputs = {"routes": [{"version": "2", "release": "v1.1.0", "percent": 100.0, "sha256": SHA}]}
        return StepOutcome("passed", f"{ctx.step.action} ok", outputs, files=self.files)


@pytest.fixture
def promoted(tmp_path):
    ledger = Ledger(tmp_path / "home")
    ops = {a: Passing() for a in ("preflight", "infra-plan", "infra-apply", "status")}
    ops["smoke"] = Passing({"smoke-junit.xml": "<testsuite tests='6' failures='0'/>"})
    ops["deploy"] = Deploy(ledger)
    ports = PipelinePorts(operations=ops, ledger=ledger, identity=lambda: "arn:starter",
                          artifact=lambda _s, _p: ArtifactRef("v1.1.0", SHA, "a.zip"), evidence=write_pack)
    run = promote(PromoteSettings(plan=PLAN, env="sit", phase="sit-promotion"), ports)
    return ledger, run


def test_a_pipeline_run_ends_with_a_pack_that_verifies(promoted):
    ledger, run = promoted
    pack = run.evidence
    folder = Path(pack["folder"])
    index = json.loads((folder / "index.json").read_text())
    assert {"pipeline.json", "approvals.json", "report.md", "report.html", "deploy-r1.json",
            "sit-promotion--smoke--smoke-junit.xml", "sit-promotion--deploy--deploy-record.json"} <= set(index["files"])
    assert index["previous"] is None
    report = (folder / "report.md").read_text()
    assert "v1.1.0" in report and SHA in report and "arn:starter" in report and "version 2 (v1.1.0) 100 %" in report
    assert "| 10 % | 2.0 s | pass | advance | 40 | 0.5 % | 80 ms |" in report
    page = (folder / "report.html").read_text()
    # self-contained: the chart is inline SVG, nothing is loaded from elsewhere
    assert "<svg" in page and "<polyline" in page
    assert "src=" not in page and "href=" not in page and "<link" not in page
    with tarfile.open(pack["archive"]) as tar:
        assert {Path(m.name).name for m in tar.getmembers()} == set(index["files"]) | {"index.json"}
    assert verify_pack(ledger, run.pipeline_id)["ok"]


def test_tampering_is_named_and_packs_are_chained(promoted):
    ledger, run = promoted
    folder = Path(run.evidence["folder"])
    (folder / "sit-promotion--smoke--smoke-junit.xml").write_text("<testsuite tests='6' failures='0'/> edited")
    with pytest.raises(RefusedError, match=r"sit-promotion--smoke--smoke-junit\.xml changed"):
        verify_pack(ledger, run.pipeline_id)
    second = write_pack(ledger, "sit", run.pipeline_id)
    index = json.loads((Path(second["folder"]) / "index.json").read_text())
    assert index["previous"]["index_sha256"] == run.evidence["index_sha256"]
    assert verify_pack(ledger, run.pipeline_id)["ok"]  # the latest pack, over the files as they are now
    (folder / "index.json").write_text("{}")
    with pytest.raises(RefusedError, match="previous pack's index"):
        verify_pack(ledger, run.pipeline_id)


def test_evidence_show_and_verify_commands(promoted, monkeypatch):
    from promoter.cli.app import app

    ledger, run = promoted
    runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})
    shown = runner.invoke(app, ["evidence", "show", run.pipeline_id, "--ledger-dir", str(ledger.root)])
    assert shown.exit_code == 0, shown.output
    assert "report.html" in shown.stdout and "# Promotion" in shown.stdout
    verified = runner.invoke(app, ["evidence", "verify", run.pipeline_id, "--ledger-dir", str(ledger.root), "--json"])
    assert verified.exit_code == 0 and json.loads(verified.stdout)["ok"] is True
    (Path(run.evidence["folder"]) / "report.md").write_text("rewritten")
    failed = runner.invoke(app, ["evidence", "verify", run.pipeline_id, "--ledger-dir", str(ledger.root), "--json"])
    assert failed.exit_code == 1 and "report.md changed" in json.loads(failed.stdout)["message"]


def test_the_timeline_follows_weights_and_error_rates(tmp_path):
    ledger = Ledger(tmp_path)
    deploy_run(ledger)
    series = timeline(ledger.records("sit", run_id="r1"))
    assert [w for _t, w in series["weight"]] == [0.0, 10.0, 100.0, 100.0]
    assert [e for _t, e in series["errors"]] == [0.5]
    svg = svg_chart(series, 5.0, "canary")
    assert svg.startswith("<svg") and "rollback threshold 5 %" in svg and "0.5 % errors" in svg
