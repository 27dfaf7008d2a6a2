"""A fresh sandbox for ``sit`` per test, from a copy of the plan whose fuzzing is bounded for a test's budget."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from promoter.plan import load_plan

ENV = "sit"
ROOT = Path(__file__).resolve().parents[2]


def bounded_plan():
    """The real plan, its fuzzing bounded to a few examples and seconds; every other threshold as it is."""
    plan = load_plan()
    security = plan.security.model_copy(update={"fuzz_max_examples": 2, "fuzz_max_seconds": 8})
    return plan.model_copy(update={"security": security})


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    from promoter.sandbox.manager import Sandbox

    plan = bounded_plan()
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(plan.model_dump(mode="json"), sort_keys=False))
    sb = Sandbox.up(plan=plan, env=ENV, state_dir=tmp_path / "sandbox", plan_path=plan_file)
    try:
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        for key, value in sb.env_vars().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("PROMOTER_PLAN", str(plan_file))
        monkeypatch.setenv("PROMOTER_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("PROMOTER_REPO", str(ROOT))
        yield SimpleNamespace(sb=sb, plan=plan, plan_file=plan_file, home=tmp_path / "home",
                              state_dir=tmp_path / "sandbox", api=sb.env_vars()["PROMOTER_API_URL"],
                              names=plan.names(ENV), env={**os.environ})
    finally:
        sb.down()
