"""Which interpreter runs a Lambda runtime in the sandbox: found, verified by running it, or refused with where
it looked. Candidates here are real executables (small shell scripts that answer like a Python would, or fail
like pyenv's shim does without a selected version)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from promoter.sandbox import runtimes
from promoter.sandbox.runtimes import Interpreter, RuntimeUnavailable, native_mismatch, resolve_interpreter


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


@pytest.fixture(autouse=True)
def _fresh(monkeypatch, tmp_path):
    resolve_interpreter.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    monkeypatch.delenv("PROMOTER_SANDBOX_PYTHON3_12", raising=False)
    yield
    resolve_interpreter.cache_clear()


def test_a_shim_that_cannot_run_is_passed_over_for_pyenvs_version(tmp_path):
    # GIVEN pyenv's shim on PATH, which exits 127 without PYENV_VERSION, and a real 3.12 under pyenv's versions
    _script(tmp_path / "bin" / "python3.12", "exit 127")
    real = _script(tmp_path / "pyenv" / "versions" / "3.12.1" / "bin" / "python3.12", "echo 3.12")
    _script(tmp_path / "pyenv" / "versions" / "3.11.7" / "bin" / "python3.12", "echo 3.11")
    # WHEN the runtime is resolved THEN pyenv's 3.12 is chosen, having been run to prove it
    found = resolve_interpreter("python3.12")
    assert found == Interpreter("python3.12", str(real), "3.12", "pyenv")
    assert found.matches_runtime


def test_the_override_variable_comes_first_and_is_reported_when_it_is_another_python(tmp_path, monkeypatch):
    _script(tmp_path / "pyenv" / "versions" / "3.12.1" / "bin" / "python3.12", "echo 3.12")
    monkeypatch.setenv("PROMOTER_SANDBOX_PYTHON3_12", sys.executable)
    found = resolve_interpreter("python3.12")
    assert found.path == sys.executable and found.found_by == "$PROMOTER_SANDBOX_PYTHON3_12"
    assert found.matches_runtime == (found.version == "3.12")


def test_no_interpreter_names_every_place_it_looked_and_what_to_do(tmp_path):
    _script(tmp_path / "bin" / "python3.12", "exit 127")
    with pytest.raises(RuntimeUnavailable) as caught:
        resolve_interpreter("python3.12")
    text = str(caught.value)
    assert "runtime python3.12: no interpreter for python3.12 found" in text
    assert "$PROMOTER_SANDBOX_PYTHON3_12 (not set)" in text
    assert f"PATH {tmp_path / 'bin' / 'python3.12'} (exits 127)" in text
    assert "uv (not installed)" in text
    assert "pyenv install 3.12" in text and "--target local" in text


def test_a_runtime_that_is_not_python_is_refused():
    with pytest.raises(RuntimeUnavailable, match=r"'nodejs20\.x' is not a Python runtime"):
        resolve_interpreter("nodejs20.x")


def test_uv_is_asked_when_nothing_else_has_the_version(tmp_path):
    real = _script(tmp_path / "uvpython" / "python3.12", "echo 3.12")
    _script(tmp_path / "bin" / "uv", f'[ "$1 $2 $3" = "python find 3.12" ] && echo {real}')
    assert resolve_interpreter("python3.12") == Interpreter("python3.12", str(real), "3.12", "uv")


def test_the_runtime_layer_holds_boto3_and_is_built_once(tmp_path):
    interpreter = Interpreter("python3.12", sys.executable, "3.12", "test")
    layer = runtimes.runtime_layer(interpreter, tmp_path)
    for name in ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3"):
        assert (layer / name / "__init__.py").is_file(), name
    assert (layer / "six.py").is_file()
    assert list((layer / "botocore").glob("__pycache__/*.pyc"))  # byte-compiled once, not in every cold start
    stamp = (layer / ".complete").stat().st_mtime_ns
    assert runtimes.runtime_layer(interpreter, tmp_path) == layer
    assert (layer / ".complete").stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_extensions_for_another_python_are_named(tmp_path):
    (tmp_path / "pydantic_core").mkdir()
    (tmp_path / "pydantic_core" / "_pydantic_core.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    (tmp_path / "ok.cpython-312-x86_64-linux-gnu.so").write_bytes(b"")
    interpreter = Interpreter("python3.12", "/x", "3.12", "test")
    assert native_mismatch(tmp_path, interpreter) == ["cpython-311"]
    assert native_mismatch(tmp_path, Interpreter("python3.11", "/x", "3.11", "test")) == ["cpython-312"]


@pytest.mark.skipif(not os.environ.get("PYENV_ROOT") and not (Path.home() / ".pyenv").exists(), reason="no pyenv")
def test_this_machine_has_the_runtime_the_plan_names(monkeypatch):
    # The sandbox's promise on this kind of machine: python3.12 can be found and run.
    monkeypatch.undo()
    resolve_interpreter.cache_clear()
    found = resolve_interpreter("python3.12")
    assert found.matches_runtime, found
