"""Fixtures every test gets: a stable terminal, no real AWS, a private ledger directory."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import yaml

# A suite started as a background job (``cmd &`` without job control) inherits SIGINT ignored, and the ignore
# passes on to every child; the tests of Ctrl-C need Python's own handler, as an engineer's terminal gives it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

_AWS_VARS_TO_CLEAR = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_LAMBDA",
    "PROMOTER_API_URL",
    "PROMOTER_TOKEN",
    "PROMOTER_ENV",
    "PROMOTER_PLAN",
    "PROMOTER_SANDBOX",
    "PROMOTER_REPO",
    "PROMOTER_STATE",
    "GITHUB_ACTIONS",  # a job of the workflows runs the suite too; identities there are github:LOGIN
)


@pytest.fixture(autouse=True)
def _isolated_environment(request, monkeypatch, tmp_path_factory):
    if "integration" in request.node.path.parts:  # runs against a real environment, with its credentials
        return
    for name in _AWS_VARS_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("TERM", "dumb")
    monkeypatch.setenv("PROMOTER_HOME", str(tmp_path_factory.mktemp("promoter-home")))


_SIGN_OFFS = [("integration", "sit-integration", "Integration tests passed in SIT"),
              ("load", "sit-load-test", "Load test in SIT passed"),
              ("security", "sit-security-scan", "Security scans of the SIT release clean")]


@pytest.fixture
def signoff_plan(tmp_path) -> Path:
    """A copy of the shipped plan whose SIT validation is four recorded sign-offs instead of steps that measure:
    for tests of how the pipeline pauses, resumes and counts approvals."""
    shipped = Path(__file__).resolve().parents[1] / "plans" / "PROM-CAMP-001.yaml"
    data = yaml.safe_load(shipped.read_text())
    known = {c["id"] for c in data["manual_checks"]}
    data["manual_checks"] += [{"id": gate, "title": title, "envs": ["sit"]} for _s, gate, title in _SIGN_OFFS
                              if gate not in known]
    phase = next(p for p in data["phases"] if p["id"] == "sit-validation")
    phase["steps"] = [{"id": step, "title": title, "action": "approval", "gate": gate}
                      for step, gate, title in _SIGN_OFFS] + [s for s in phase["steps"] if s["id"] == "signoff"]
    path = tmp_path / "signoff-plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
