"""CLI fixtures: a CliRunner with a fixed terminal, plan copies to break, and the moto account of tests/aws."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
PLAN_TEXT = (ROOT / "plans" / "PROM-CAMP-001.yaml").read_text()

# The seeding helpers and moto fixtures live in tests/aws/conftest.py; load them under their own module name.
_spec = importlib.util.spec_from_file_location("promoter_tests_aws_seed", ROOT / "tests" / "aws" / "conftest.py")
aws_seed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(aws_seed)
plan = aws_seed.plan
aws_credentials = aws_seed.aws_credentials
account = aws_seed.account


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("PROMOTER_ENV", raising=False)
    monkeypatch.delenv("PROMOTER_PLAN", raising=False)
    return CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})


@pytest.fixture
def cli():
    from promoter.cli.app import app

    return app


@pytest.fixture
def broken_plan(tmp_path: Path):
    """``broken_plan(old, new)`` writes a copy of the real plan with one text replacement and returns its path."""

    def make(old: str, new: str, name: str = "plan.yaml") -> Path:
        assert old in PLAN_TEXT, old
        path = tmp_path / name
        path.write_text(PLAN_TEXT.replace(old, new, 1))
        return path

    return make


def line_of(path: Path, text: str) -> int:
    """1-based line of the first line containing ``text``."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(text)


@pytest.fixture
def find_line():
    return line_of
