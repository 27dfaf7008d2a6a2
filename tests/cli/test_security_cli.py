"""``promoter security`` and ``promoter openapi`` on the command line: usage errors, refusals and --json."""

from __future__ import annotations

import json

import pytest
import yaml

from promoter.cli.app import app
from promoter.engine.security.fuzz import require_docker
from promoter.errors import ConfigurationError


@pytest.fixture(autouse=True)
def _no_sandbox(monkeypatch, tmp_path):
    for var in ("PROMOTER_SANDBOX", "PROMOTER_SECURITY_PASSWORD", "PROMOTER_API_URL", "PROMOTER_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PROMOTER_HOME", str(tmp_path / "home"))


@pytest.mark.parametrize(("args", "error"), [
    (["--env", "nope"], "UnknownEnvironment"),
    (["--env", "sit", "--max-examples", "0"], "BadParameter"),
    (["--env", "sit", "--api-url", "ftp://example.com"], "UsageError"),
])
def test_usage_errors_exit_2_with_one_json_document(runner, args, error):
    result = runner.invoke(app, ["security", *args, "--json"])
    assert result.exit_code == 2, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["exit_code"] == 2 and doc["error"] == error


def test_without_test_user_credentials_it_refuses_before_sending_anything(runner):
    result = runner.invoke(app, ["security", "--env", "sit", "--api-url", "http://127.0.0.1:9", "--json"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["error"] == "ConfigurationError" and "PROMOTER_SECURITY_PASSWORD" in doc["hint"]


def test_zap_without_docker_fails_clearly(runner, monkeypatch, tmp_path):
    import shutil

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(shutil.which("git"))  # the checkout is still found; no docker command here
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(ConfigurationError, match="Docker engine"):
        require_docker()
    result = runner.invoke(app, ["security", "--env", "sit", "--api-url", "http://127.0.0.1:9", "--zap",
                                 "--sandbox", str(tmp_path), "--json"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["error"] == "ConfigurationError" and "needs a Docker engine" in doc["message"]
    assert "leave out --zap" in doc["hint"]


def test_openapi_prints_the_document(runner):
    result = runner.invoke(app, ["openapi"])
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(result.stdout)
    assert doc["openapi"].startswith("3.") and "/v1.0/campaigns/{campaign_id}" in doc["paths"]
    as_json = json.loads(runner.invoke(app, ["openapi", "--json"]).stdout)
    assert as_json == doc
    assert json.loads(runner.invoke(app, ["openapi", "--format", "json"]).stdout) == doc


def test_openapi_refuses_an_unknown_format(runner):
    result = runner.invoke(app, ["openapi", "--format", "xml", "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"] == "UsageError"


def test_help_teaches_with_examples(runner):
    result = runner.invoke(app, ["security", "--help"])
    assert result.exit_code == 0
    assert "promoter security --env sit --max-examples 10 --json" in result.output
    assert "--zap" in result.output and "Docker" in result.output
