"""The sandbox runs each version under the interpreter its Runtime names, isolated from the tool's own packages,
with boto3 from a runtime layer behind the code, and fails init as Lambda does when the package cannot load."""

from __future__ import annotations

import io
import json
import sys
import uuid
import zipfile
from pathlib import Path

import boto3
import pytest

from promoter.engine.build import build
from promoter.plan.loader import load_plan

pytestmark = pytest.mark.sandbox
ROOT = Path(__file__).resolve().parents[2]

PROBE = b'''
import importlib.util, json, sys
import boto3

def handler(event, context):
    return {"python": "%d.%d" % sys.version_info[:2], "boto3": boto3.__file__, "path": sys.path,
            "tool_importable": importlib.util.find_spec("promoter") is not None,
            "moto_importable": importlib.util.find_spec("moto") is not None}
'''


def _create(lam, role: str, code: bytes, handler: str, runtime: str = "python3.12") -> str:
    name = f"runtime-probe-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime=runtime, Role=role, Handler=handler, Code={"ZipFile": code},
                        Timeout=10, MemorySize=128, Publish=True)
    return name


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture
def role(sandbox):
    return sandbox.state["seed"]["role_arn"]


def test_a_version_runs_under_its_runtime_isolated_with_boto3_behind_its_code(sandbox_env, role):
    lam = boto3.client("lambda")
    name = _create(lam, role, _zip({"probe.py": PROBE}), "probe.handler")
    answer = lam.invoke(FunctionName=name, Qualifier="1", Payload=b"{}")
    assert "FunctionError" not in answer, answer["Payload"].read()
    seen = json.loads(answer["Payload"].read())
    assert seen["python"] == "3.12"
    assert not seen["tool_importable"] and not seen["moto_importable"]  # nothing of the host's site-packages
    code_dir, layer = seen["path"][0], seen["path"][1]
    assert seen["boto3"].startswith(layer) and "runtime-python3.12" in layer  # Lambda's order: code, then runtime
    assert Path(code_dir).parent.name == "code"  # the extracted package, LAMBDA_TASK_ROOT


def test_the_seeded_release_reports_the_interpreter_it_runs_under(sandbox, sandbox_env):
    plan = load_plan(ROOT / "plans" / "PROM-CAMP-001.yaml")
    names = plan.names("sit")
    boto3.client("lambda").invoke(FunctionName=names.function, Qualifier=names.alias, Payload=json.dumps(
        {"httpMethod": "GET", "path": plan.service.health_path, "resource": plan.service.health_path,
         "headers": {}, "requestContext": {}}).encode())
    status = sandbox.status()
    version = next(v for v in status["function"]["versions"] if v["version"] == "1")
    assert version["runtime"] == "python3.12"
    assert version["python"]["version"] == "3.12" and version["python"]["matches_runtime"]
    assert version["python"]["running"] is True


@pytest.mark.skipif(sys.version_info[:2] == (3, 12), reason="the host's wheels are the runtime's here")
def test_a_package_built_for_another_python_fails_init_and_says_why(sandbox_env, role, tmp_path):
    # GIVEN the service built with the host interpreter's wheels (a `local` build), deployed as python3.12
    artifact = build(repo=ROOT, release="v0.0.1", target="local", out_dir=tmp_path)
    lam = boto3.client("lambda")
    name = _create(lam, role, Path(artifact.path).read_bytes(), "campaigns_lambda.handler.lambda_handler")
    # WHEN it is invoked THEN init fails as on Lambda, and the message names the runtime and the remedy
    answer = lam.invoke(FunctionName=name, Qualifier="1", Payload=b"{}")
    assert answer.get("FunctionError") == "Unhandled"
    error = json.loads(answer["Payload"].read())
    host = f"cpython-{sys.version_info.major}{sys.version_info.minor}"
    assert error["errorType"] == "Runtime.ImportModuleError"
    assert "Unable to import module 'campaigns_lambda.handler'" in error["errorMessage"]
    assert f"compiled extensions for {host}" in error["errorMessage"]
    assert "runtime python3.12 runs Python 3.12" in error["errorMessage"]
    assert "--target lambda" in error["errorMessage"]


def test_a_runtime_this_machine_cannot_run_fails_init_naming_where_it_looked(sandbox_env, role):
    lam = boto3.client("lambda")
    name = _create(lam, role, _zip({"probe.py": PROBE}), "probe.handler", runtime="python3.99")
    answer = lam.invoke(FunctionName=name, Qualifier="1", Payload=b"{}")
    assert answer.get("FunctionError") == "Unhandled"
    error = json.loads(answer["Payload"].read())
    assert error["errorType"] == "Sandbox.RuntimeUnavailable"
    assert "cannot run runtime python3.99" in error["errorMessage"]
    assert "$PROMOTER_SANDBOX_PYTHON3_99 (not set)" in error["errorMessage"]
