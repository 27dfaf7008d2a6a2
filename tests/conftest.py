"""Fixtures every test gets: a stable terminal, no real AWS, a private ledger directory."""

from __future__ import annotations

import pytest

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
