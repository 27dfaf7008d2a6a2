"""promoter installed the way pip and pipx users install it (not editable, into a fresh virtualenv), used from
inside a fresh clone: it builds the clone's code with its dependencies, deploys it to the sandbox as the
runbook's two-tag release, and refuses clearly outside a checkout.

Slow (a venv and a pip install, then a sandbox): marked ``install``; it runs in CI with the rest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.install, pytest.mark.sandbox, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
MARKER = "# shipped from this clone\n"


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _git(clone: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(clone), *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(clone, promoter executable, environment): a non-editable install of a fresh clone into a new venv."""
    base = tmp_path_factory.mktemp("install")
    clone = base / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, capture_output=True)
    _git(clone, "config", "user.email", "ci@example.com")
    _git(clone, "config", "user.name", "CI")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_ENDPOINT", "PROMOTER_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    done = _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                 f"{clone}[sandbox]"], cwd=base, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    promoter = venv / "bin" / "promoter"
    where = _run([str(venv / "bin" / "python"), "-c", "import promoter; print(promoter.__file__)"], base, env)
    assert "site-packages" in where.stdout, where.stdout  # really installed, not a path into the clone
    return clone, promoter, env


def test_outside_a_checkout_it_says_what_is_missing(installed, tmp_path):
    _, promoter, env = installed
    assert _run([str(promoter), "--help"], tmp_path, env).returncode == 0
    done = _run([str(promoter), "status", "--env", "sit", "--json"], tmp_path, env)
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    assert "no repository" in doc["message"] and "not inside a git checkout" in doc["message"]
    assert "--repo DIR" in doc["hint"]


def test_the_clone_is_built_with_its_dependencies_and_deployed_under_two_tags(installed, tmp_path):
    clone, promoter, env = installed
    # GIVEN a change committed in the clone, tagged twice as the runbook does
    handler = clone / "campaigns_lambda" / "handler.py"
    handler.write_text(handler.read_text() + MARKER)
    plan = yaml.safe_load((clone / "plans" / "PROM-CAMP-001.yaml").read_text())
    # seconds-long bakes under the small synthetic load below: one canary step at 50 % gets the evidence a pass
    # needs (about 59 clean invocations for an upper bound under 5 %) in a few seconds
    plan["canary"]["steps"] = [{"weight": 50, "bake_seconds": 900}, {"weight": 100, "bake_seconds": 0}]
    plan["canary"]["max_extension_seconds"] = 60
    (clone / "plans" / "PROM-CAMP-001.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    _git(clone, "commit", "-qam", "change")
    _git(clone, "tag", "v1.1.0-sit")
    _git(clone, "tag", "v1.1.0-prod")

    # WHEN the installed promoter builds from inside the clone
    built = _run([str(promoter), "build", "--release", "v1.1.0-sit", "--out", str(tmp_path / "dist"), "--json"],
                 clone, env)
    assert built.returncode == 0, built.stderr[-3000:]
    artifact = json.loads(built.stdout)
    with zipfile.ZipFile(artifact["path"]) as zf:
        names = zf.namelist()
        assert zf.read("campaigns_lambda/handler.py").decode().endswith(MARKER)  # the clone's code
    assert any(n.startswith("pydantic_core/") and n.endswith(".so") for n in names)  # with its dependencies
    assert all("cpython-312" in n for n in names if n.endswith(".so"))  # for the runtime AWS runs
    assert artifact["files"] > 300

    # AND deploys it, with the default build target, to a sandbox playing SIT
    state = tmp_path / "sandbox"
    up = _run([str(promoter), "sandbox", "up", "--state-dir", str(state), "--json"], clone, env)
    assert up.returncode == 0, up.stderr[-3000:]
    try:
        sandbox_env = {**env, **json.loads(up.stdout)["env"], "PROMOTER_HOME": str(tmp_path / "home")}
        from promoter.engine.traffic import SteadyTraffic
        from promoter.sandbox.manager import Sandbox

        traffic = SteadyTraffic(sandbox_env["PROMOTER_API_URL"], Sandbox.attach(state).token("campaigns-admin"),
                                rate=30, threads=3)
        traffic.start()
        try:
            deployed = _run([str(promoter), "deploy", "--env", "sit", "--canary", "--release", "v1.1.0-sit", "--yes",
                             "--bake", "4", "--analysis-interval", "1", "--out", str(tmp_path / "dist2"), "--json"],
                            clone, sandbox_env)
        finally:
            traffic.stop()
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
        record = json.loads(deployed.stdout)
        assert record["outcome"] == "succeeded" and record["release"] == "v1.1.0-sit"
        status = json.loads(_run([str(promoter), "sandbox", "status", "--state-dir", str(state), "--json"],
                                 clone, sandbox_env).stdout)
        version = next(v for v in status["function"]["versions"] if v["version"] == record["candidate_version"])
        assert "release=v1.1.0-sit" in version["description"]
        assert version["runtime"] == "python3.12"
        assert version["python"]["version"] == "3.12" and version["python"]["matches_runtime"]
    finally:
        _run([str(promoter), "sandbox", "down", "--state-dir", str(state)], clone, env)
