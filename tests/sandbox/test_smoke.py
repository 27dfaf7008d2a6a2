"""`promoter smoke` against the sandbox's API front: the real service, real tokens, real sockets."""

from __future__ import annotations

import json
from xml.etree import ElementTree as ET

import pytest
from typer.testing import CliRunner

from promoter.adapters.http import HttpClient
from promoter.cli.app import app
from promoter.engine.smoke import run_smoke
from promoter.engine.smoke_requests import SmokeRequest, smoke_requests
from promoter.plan import load_plan

pytestmark = pytest.mark.sandbox


def test_smoke_suite_passes_and_writes_junit(sandbox, sandbox_env, tmp_path, plan_path):
    junit = tmp_path / "smoke.xml"
    result = CliRunner().invoke(
        app, ["smoke", "--env", "sit", "--plan", str(plan_path), "--token", sandbox.token("campaigns-admin"),
              "--junit", str(junit), "--json", "--latency-budget", "5000"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["failed"] == 0
    assert [t["name"] for t in report["tests"]] == [
        "health", "list", "create", "get", "update", "delete", "confirm-deleted"
    ]
    suite = ET.parse(junit).getroot()
    assert suite.get("tests") == "7" and suite.get("failures") == "0"


def test_smoke_token_from_cognito_test_user(sandbox, sandbox_env, monkeypatch, plan_path):
    from promoter.sandbox.seed import TEST_PASSWORD

    monkeypatch.setenv("PROMOTER_SMOKE_USERNAME", "sandbox-admin")
    monkeypatch.setenv("PROMOTER_SMOKE_PASSWORD", TEST_PASSWORD)
    result = CliRunner().invoke(app, ["smoke", "--env", "sit", "--plan", str(plan_path), "--latency-budget", "5000"])
    assert result.exit_code == 0, result.output
    assert "smoke passed: 7 of 7 tests passed" in result.stdout


def test_viewer_token_fails_at_create_and_leaves_nothing_behind(sandbox, sandbox_env, plan_path):
    result = CliRunner().invoke(
        app, ["smoke", "--env", "sit", "--plan", str(plan_path), "--token", sandbox.token("campaigns-viewer"),
              "--json", "--latency-budget", "5000"],
    )
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    create = next(t for t in report["tests"] if t["name"] == "create")
    assert create["ok"] is False and create["status"] == 403
    assert "4-get" in report["skipped"]


def test_a_failure_after_create_still_deletes_the_campaign(sandbox, sandbox_env, plan_path):
    # GIVEN a sequence whose "get" expects an impossible status, so it fails after the create
    plan = load_plan(plan_path)
    broken = tuple(
        SmokeRequest(r.name, r.test, r.method, r.path, 418, r.body, r.required_keys) if r.name == "get" else r
        for r in smoke_requests(plan)
    )
    client = HttpClient(sandbox_env["PROMOTER_API_URL"], token=sandbox.token("campaigns-admin"))
    report = run_smoke(plan, "sit", client, latency_budget_ms=5000, requests=broken)
    names = [c.result.name for c in report.cases]
    # THEN the run fails but the delete ran, and the campaign is gone
    assert not report.ok
    assert names == ["health", "list", "create", "get", "delete"]
    created = next(c.result for c in report.cases if c.result.name == "create").body["id"]
    assert client.request("GET", f"/v1.0/campaigns/{created}").status == 404


def test_unreachable_api_is_a_failed_run_not_a_traceback(plan_path, monkeypatch):
    monkeypatch.setenv("PROMOTER_API_URL", "http://127.0.0.1:9")
    result = CliRunner().invoke(app, ["smoke", "--env", "sit", "--plan", str(plan_path), "--token", "x", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["tests"][0]["status"] is None and "no HTTP answer" in report["tests"][0]["problems"][0]


def test_missing_token_is_refused_with_a_hint(plan_path, monkeypatch):
    monkeypatch.setenv("PROMOTER_API_URL", "http://127.0.0.1:9")
    result = CliRunner().invoke(app, ["smoke", "--env", "sit", "--plan", str(plan_path)])
    assert result.exit_code == 1
    assert "no bearer token" in result.output and "PROMOTER_SMOKE_USERNAME" in result.output
