"""The sandbox fixtures: one sandbox for env ``sit`` per test session, and its variables applied to a test."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from promoter.plan.loader import default_plan_path, load_plan

SANDBOX_ENV = "sit"
_measured: dict[str, float] = {}


@pytest.fixture(scope="session")
def plan_path() -> Path:
    return default_plan_path().resolve()


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory, plan_path):
    """A running, seeded sandbox for ``sit`` in a private state dir; taken down at the end of the session."""
    from promoter.sandbox.manager import Sandbox

    state_dir = tmp_path_factory.mktemp("sandbox-state")
    started = time.monotonic()
    handle = Sandbox.up(plan=load_plan(plan_path), env=SANDBOX_ENV, state_dir=state_dir, plan_path=plan_path)
    _measured["sandbox up (s)"] = round(time.monotonic() - started, 2)
    try:
        yield handle
    finally:
        started = time.monotonic()
        handle.down()
        _measured["sandbox down (s)"] = round(time.monotonic() - started, 2)


@pytest.fixture
def sandbox_env(sandbox, monkeypatch):
    """Point this test's process environment (boto3, subprocesses) at the sandbox, like `eval "$(promoter sandbox
    env)"` does for a shell."""
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for key, value in sandbox.env_vars().items():
        monkeypatch.setenv(key, value)
    return sandbox.env_vars()


def pytest_terminal_summary(terminalreporter):
    if _measured:
        terminalreporter.write_sep("-", "sandbox timings")
        for name, value in _measured.items():
            terminalreporter.write_line(f"{name}: {value}")
