"""The artifact: byte-for-byte reproducible, importable, and the same bytes whatever the release tag."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from promoter.engine.build import build
from promoter.errors import UsageError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("vendor-cache")


def test_same_inputs_give_identical_bytes(tmp_path, cache):
    first = build(repo=REPO, release="v9.9.9", target="local", out_dir=tmp_path / "a", cache_dir=cache)
    second = build(repo=REPO, release="v9.9.9", target="local", out_dir=tmp_path / "b", cache_dir=cache)
    assert Path(first.path).read_bytes() == Path(second.path).read_bytes()
    assert first.sha256 == second.sha256 and first.size == second.size



def test_two_tags_of_one_commit_give_one_artifact(tmp_path, cache):
    # the runbook tags one commit v1.0.0-sit and later v1.0.0-prod: one release, one sha256
    sit = build(repo=REPO, release="v1.0.0-sit", target="local", out_dir=tmp_path / "sit", cache_dir=cache)
    prod = build(repo=REPO, release="v1.0.0-prod", target="local", out_dir=tmp_path / "prod", cache_dir=cache)
    assert Path(sit.path).name != Path(prod.path).name
    assert Path(sit.path).read_bytes() == Path(prod.path).read_bytes() and sit.sha256 == prod.sha256


def test_zip_layout_is_normalised(tmp_path, cache):
    artifact = build(repo=REPO, release="v1.2.3", target="local", out_dir=tmp_path, cache_dir=cache)
    with zipfile.ZipFile(artifact.path) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        assert names == sorted(names)
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
        assert {(i.external_attr >> 16) & 0o777 for i in infos} == {0o644}
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        assert not [n for n in names if n.startswith("campaigns_lambda/terraform/")]
        assert not [n for n in names if n.split("/")[0] in {"boto3", "botocore", "s3transfer"}]
        assert "campaigns_lambda/RELEASE" not in names  # the tag is configuration (RELEASE_VERSION), not code
        assert "campaigns_lambda/handler.py" in names
        assert any(n.startswith("aws_lambda_powertools/") for n in names)
        assert any(n.startswith("pydantic_core/") for n in names)


def test_handler_imports_from_the_built_local_zip(tmp_path, cache):
    # GIVEN the artifact unpacked where nothing else of the project is importable
    artifact = build(repo=REPO, release="v7.0.0", target="local", out_dir=tmp_path / "dist", cache_dir=cache)
    root = tmp_path / "unpacked"
    with zipfile.ZipFile(artifact.path) as zf:
        zf.extractall(root)
    import boto3

    runtime_site = str(Path(boto3.__file__).parent.parent)  # the Lambda runtime provides boto3
    script = f"""
import json, sys
sys.path[:0] = [{str(root)!r}]
sys.path.append({runtime_site!r})
import campaigns_lambda.handler as h, pydantic
event = {{"resource": "/v1.0/campaigns/health", "path": "/v1.0/campaigns/health", "httpMethod": "GET",
          "headers": {{}}, "multiValueHeaders": {{}}, "queryStringParameters": None, "pathParameters": None,
          "requestContext": {{"requestId": "r-1", "stage": "v1", "resourcePath": "/v1.0/campaigns/health",
                             "httpMethod": "GET", "path": "/v1/v1.0/campaigns/health", "identity": {{}}}},
          "body": None, "isBase64Encoded": False}}
from types import SimpleNamespace
ctx = SimpleNamespace(function_name="campaigns-handler-test", function_version="1", memory_limit_in_mb=256,
                      invoked_function_arn="arn:aws:lambda:eu-west-1:123456789012:function:campaigns-handler-test",
                      aws_request_id="req-1", log_group_name="/aws/lambda/x", log_stream_name="s",
                      get_remaining_time_in_millis=lambda: 10000)
resp = h.lambda_handler(event, ctx)
print(json.dumps({{"handler": h.__file__, "pydantic": pydantic.__file__, "resp": resp}}))
"""
    env = {"PATH": "/usr/bin:/bin", "CAMPAIGNS_TABLE": "campaigns-missing", "TEMPLATES_BUCKET": "b",
           "AWS_DEFAULT_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
           "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1", "AWS_CONFIG_FILE": "/dev/null",
           "RELEASE_VERSION": "v7.0.0"}  # what deploy sets in the function's configuration
    # -S: no site-packages, so only the artifact (and the runtime's boto3) can satisfy imports
    proc = subprocess.run([sys.executable, "-S", "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert data["handler"].startswith(str(root))
    assert data["pydantic"].startswith(str(root))
    body = json.loads(data["resp"]["body"])
    assert data["resp"]["statusCode"] == 503  # the table is unreachable
    assert body["release"] == "v7.0.0"


def test_bad_target_and_tag_are_refused(tmp_path):
    with pytest.raises(UsageError, match="unknown build target"):
        build(repo=REPO, release="v1", target="arm", out_dir=tmp_path)
    for bad in ("../v1", "bad tag", "v1\tx", "-v1", ".hidden", "v" * 129, "v1;rm"):
        with pytest.raises(UsageError, match="invalid release tag"):
            build(repo=REPO, release=bad, target="local", out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # refused before anything is written


def test_lambda_target_vendors_python312_manylinux_wheels(tmp_path, cache):
    artifact = build(repo=REPO, release="v1.0.0", target="lambda", out_dir=tmp_path, cache_dir=cache)
    with zipfile.ZipFile(artifact.path) as zf:
        native = [n for n in zf.namelist() if n.endswith(".so")]
    assert native, "pydantic-core ships a compiled module"
    assert all("cpython-312-x86_64-linux-gnu" in n for n in native), native
    assert artifact.target == "lambda" and artifact.path.endswith("-lambda.zip")
