"""``promoter security`` against the embedded sandbox: the shipped service passes; a release whose DELETE route
lost its permission check fails the security step, naming that route's cells."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import boto3
import pytest
from typer.testing import CliRunner

from promoter.cli.app import app as cli
from promoter.engine.ledger import Ledger

pytestmark = pytest.mark.sandbox

ENV = "sit"
CLI_ENV = {"COLUMNS": "120", "NO_COLOR": "1"}
DELETE_ROUTE = "DELETE /v1.0/campaigns/{campaign_id}"


def test_the_shipped_service_passes_every_check(sandbox, tmp_path):
    report_dir = tmp_path / "report"
    result = CliRunner().invoke(cli, ["security", "--env", ENV, "--report", str(report_dir), "--json"],
                                env=CLI_ENV)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["verdict"] == "pass"
    assert doc["checks"] == ["openapi", "authz", "injection", "fuzz", "storage", "infra"]
    # every cell of the matrix judged (the sandbox can sign the expired and foreign-audience tokens) and enforced
    assert doc["authorization"]["cells"] == 8 * (1 + 4 * 5) and doc["authorization"]["enforced_pct"] == 100.0
    by_name = {t["name"]: t for t in doc["tests"]}
    assert by_name[f"{DELETE_ROUTE} [campaigns-editor, valid]"]["details"]["actual"] == 403
    assert by_name[f"{DELETE_ROUTE} [campaigns-admin, expired]"]["details"]["actual"] == 401
    assert by_name["stored description [script-tag]"]["status"] == "passed"
    assert by_name["table unchanged outside the check's items"]["status"] == "passed"
    assert by_name["table encrypted at rest (SSE)"]["status"] == "passed"
    assert by_name["function logs carry no tokens or request bodies"]["status"] == "passed"
    fuzzed = [t for t in doc["tests"] if t["check"] == "fuzz" and t["status"] == "passed"]
    assert len(fuzzed) >= 8, "schemathesis ran its checks on the operations"
    assert not [t for t in doc["tests"] if t["status"] == "failed" and t["severity"] in ("high", "critical")]
    # the reports and the ledger record
    for name in ("security-junit.xml", "security.sarif.json", "security.json"):
        assert (report_dir / name).stat().st_size > 0
    assert json.loads((report_dir / "security.sarif.json").read_text())["version"] == "2.1.0"
    record = Ledger(sandbox.home).records(ENV, kind="security")[-1]
    assert record["verdict"] == "pass" and record["ok"] is True
    # nothing the checks created is left in the table
    ddb = boto3.client("dynamodb")
    assert ddb.scan(TableName=sandbox.names.table, Select="COUNT")["Count"] == 0


def _without_delete_permission(source: Path, target: Path) -> Path:
    """The release as built, with the DELETE route's permission check removed (and nothing else changed)."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "campaigns_lambda/routes/campaigns.py":
                guarded = b'@router.delete("/<campaign_id>", middlewares=[require(Permission.DELETE)])'
                assert guarded in data
                data = data.replace(guarded, b'@router.delete("/<campaign_id>")')
            dst.writestr(info, data)
    return target


def test_a_release_that_drops_a_permission_check_fails_the_security_step(sandbox, tmp_path):
    from promoter.adapters.aws import AwsSessionFactory
    from promoter.engine.ledger import Ledger as StepLedger
    from promoter.engine.pipeline import ArtifactRef, PromoteSettings, StepContext
    from promoter.engine.security import SecurityStep
    from promoter.engine.steps import StepWiring
    from promoter.sandbox.tokens import SandboxTokens

    # GIVEN the sandbox serving a release whose DELETE route no longer checks the delete permission
    broken = _without_delete_permission(sandbox.state_dir / "artifacts" / "campaigns_lambda-v1.0.0-lambda.zip",
                                        tmp_path / "campaigns_lambda-v1.0.1-broken.zip")
    deployed = CliRunner().invoke(cli, ["deploy", "--env", ENV, "--artifact", str(broken), "--release", "v1.0.1",
                                        "--allow-untagged", "--yes", "--all-at-once", "security test", "--json"],
                                  env=CLI_ENV)
    assert deployed.exit_code == 0, deployed.output
    alias = boto3.client("lambda").get_alias(FunctionName=sandbox.names.function, Name=sandbox.names.alias)
    assert alias["FunctionVersion"] == "2"

    # WHEN the security step runs against it
    plan = sandbox.plan
    phase = next(p for p in plan.phases if p.env == ENV)
    region = plan.environment(ENV).region
    wiring = StepWiring(aws_for=lambda _env: AwsSessionFactory(region=region), ports_for=lambda _env: None,
                        api_urls={ENV: sandbox.api})
    step = SecurityStep(wiring, tokens_for=lambda _env: SandboxTokens(sandbox.state_dir))
    settings = PromoteSettings(plan=plan, env=ENV, repo=Path(__file__).resolve().parents[2],
                               security_max_examples=1)
    ctx = StepContext(plan=plan, phase=phase, step=phase.steps[0], env=ENV, pipeline_id="p-security-test",
                      artifact=ArtifactRef(release="v1.0.1", sha256="0" * 64, path=broken),
                      inputs={}, state={}, ledger=StepLedger(sandbox.home), started_by="tester",
                      settings=settings)
    outcome = step.run(ctx)

    # THEN it fails, naming exactly the DELETE route's cells the release no longer enforces
    assert outcome.status == "failed", outcome.detail
    assert outcome.outputs["authorization"]["failed_by_route"].keys() == {DELETE_ROUTE}
    failed = set(outcome.outputs["authorization"]["failed_by_route"][DELETE_ROUTE])
    assert failed == {f"{DELETE_ROUTE} [campaigns-viewer, valid]", f"{DELETE_ROUTE} [campaigns-editor, valid]",
                      f"{DELETE_ROUTE} [none, valid]"}, outcome.detail
    assert outcome.detail.startswith("3 high findings: ") and all(name in outcome.detail for name in failed)
    sarif = json.loads(outcome.files["security.sarif.json"])
    flagged = {r["properties"]["test"] for r in sarif["runs"][0]["results"] if r["level"] == "error"}
    assert flagged == failed
    assert "campaigns-viewer, valid" in outcome.files["security-junit.xml"]
    assert StepLedger(sandbox.home).records(ENV, kind="security")[-1]["verdict"] == "fail"
