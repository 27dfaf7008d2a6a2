"""A moto server and the two sandbox fronts as real processes on loopback, seeded for the SIT environment.

The service is deployed through the Lambda front exactly as a release would: the ``local`` build of
``campaigns_lambda`` as version 1 (release v1.0.0) and version 2 (v1.1.0), alias ``live`` on version 1. A tiny
probe function (raise, exit, sleep) exercises the error contract.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest

from promoter.plan.loader import load_plan

ENV = "sit"
PASSWORD = "Sandbox-Passw0rd!"
GROUPS = ("campaigns-viewer", "campaigns-editor", "campaigns-admin")
PROBE_SOURCE = """
import json, os, time

def handler(event, context):
    print("probe event", event)
    action = event.get("action")
    if action == "raise":
        raise RuntimeError("probe failure")
    if action == "exit":
        os._exit(7)
    if action == "emf":
        print(json.dumps({"_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [{
            "Namespace": "ProbeApi", "Dimensions": [["service", "function_version"]],
            "Metrics": [{"Name": "ServerErrors", "Unit": "Count"}]}]},
            "service": "probe", "function_version": context.function_version, "ServerErrors": 1}))
    if action == "sleep":
        time.sleep(float(event.get("seconds", 5)))
    return {"version": context.function_version, "pid": os.getpid(), "flavour": os.environ.get("FLAVOUR"),
            "arn": context.invoked_function_arn, "remaining": context.get_remaining_time_in_millis()}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, deadline_s: float = 20.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} not healthy after {deadline_s}s")


def probe_zip(source: str = PROBE_SOURCE) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("probe.py", source)
    return buf.getvalue()


@dataclass
class Fronts:
    moto_url: str
    lambda_url: str
    api_url: str
    region: str
    function: str
    alias: str
    rest_api: str
    pool_id: str
    tokens: dict[str, str]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def client(self, service: str, front: bool = False):
        url = self.lambda_url if front else self.moto_url
        return boto3.client(service, endpoint_url=url, region_name=self.region, aws_access_key_id="testing",
                            aws_secret_access_key="testing")

    def flush(self) -> None:
        req = urllib.request.Request(f"{self.api_url}/__sandbox/flush", method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 200


@pytest.fixture(scope="session")
def fronts(tmp_path_factory) -> Fronts:
    from promoter.engine.build import build

    state = tmp_path_factory.mktemp("sandbox-fronts")
    plan_path = Path(__file__).resolve().parents[2] / "plans" / "PROM-CAMP-001.yaml"
    plan = load_plan(plan_path)
    names = plan.names(ENV)
    region = plan.environment(ENV).region
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "MOTO_ACCOUNT_ID": plan.environment(ENV).account_id}
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    procs: dict[str, subprocess.Popen] = {}
    moto_port, lambda_port, api_port = free_port(), free_port(), free_port()
    moto_url = f"http://127.0.0.1:{moto_port}"
    lambda_url = f"http://127.0.0.1:{lambda_port}"
    api_url = f"http://127.0.0.1:{api_port}"
    try:
        procs["moto"] = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                          str(moto_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         env=env)
        procs["lambda"] = subprocess.Popen(
            [sys.executable, "-m", "promoter.sandbox.lambda_front", "--port", str(lambda_port), "--moto-url",
             moto_url, "--state-dir", str(state / "lambda"), "--region", region, "--flush-interval", "0.5"],
            stdout=open(state / "lambda_front.log", "ab"), stderr=subprocess.STDOUT, env=env)  # noqa: SIM115
        wait_healthy(f"{moto_url}/moto-api/", procs["moto"])
        wait_healthy(f"{lambda_url}/__sandbox/health", procs["lambda"])

        def client(service: str, url: str = moto_url):
            return boto3.client(service, endpoint_url=url, region_name=region, aws_access_key_id="testing",
                                aws_secret_access_key="testing")

        # what the dependency projects and Terraform would have created
        role = client("iam").create_role(RoleName=names.execution_role, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        client("dynamodb").create_table(
            TableName=names.table, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": names.table_partition_key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": names.table_partition_key, "AttributeType": "S"}])
        client("s3").create_bucket(Bucket=names.templates_bucket,
                                   CreateBucketConfiguration={"LocationConstraint": region})
        cognito = client("cognito-idp")
        pool_id = cognito.create_user_pool(PoolName=names.user_pool)["UserPool"]["Id"]
        client_id = cognito.create_user_pool_client(UserPoolId=pool_id, ClientName=names.user_pool_client,
                                                    ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH"],
                                                    )["UserPoolClient"]["ClientId"]
        tokens = {}
        for group in GROUPS:
            cognito.create_group(GroupName=group, UserPoolId=pool_id)
            user = group.split("-", 1)[1]
            cognito.admin_create_user(UserPoolId=pool_id, Username=user, TemporaryPassword=PASSWORD)
            cognito.admin_set_user_password(UserPoolId=pool_id, Username=user, Password=PASSWORD, Permanent=True)
            cognito.admin_add_user_to_group(UserPoolId=pool_id, Username=user, GroupName=group)
            auth = cognito.admin_initiate_auth(UserPoolId=pool_id, ClientId=client_id,
                                               AuthFlow="ADMIN_USER_PASSWORD_AUTH",
                                               AuthParameters={"USERNAME": user, "PASSWORD": PASSWORD})
            tokens[user] = auth["AuthenticationResult"]["IdToken"]
            tokens[user + "-access"] = auth["AuthenticationResult"]["AccessToken"]

        procs["api"] = subprocess.Popen(
            [sys.executable, "-m", "promoter.sandbox.api_front", "--port", str(api_port), "--moto-url", moto_url,
             "--lambda-url", lambda_url, "--env", ENV, "--plan", str(plan_path), "--state-dir", str(state / "api"),
             "--region", region, "--user-pool-id", pool_id, "--flush-interval", "0.5"],
            stdout=open(state / "api_front.log", "ab"), stderr=subprocess.STDOUT, env=env)  # noqa: SIM115

        # the release: two versions of the real service, deployed through the Lambda front
        lam = client("lambda", lambda_url)
        environment = {"CAMPAIGNS_TABLE": names.table, "TEMPLATES_BUCKET": names.templates_bucket}
        for number, release in enumerate(("v1.0.0", "v1.1.0"), start=1):
            artifact = build(repo=Path(__file__).resolve().parents[2], release=release, target="lambda",
                             out_dir=state / "dist")
            code = Path(artifact.path).read_bytes()
            if number == 1:
                lam.create_function(FunctionName=names.function, Runtime=plan.service.runtime, Role=role,
                                    Handler=plan.service.handler, Code={"ZipFile": code},
                                    Timeout=plan.service.timeout_seconds, MemorySize=plan.service.memory_mb,
                                    Environment={"Variables": {**environment, "RELEASE_VERSION": release}})
            else:
                lam.update_function_code(FunctionName=names.function, ZipFile=code)
                lam.update_function_configuration(
                    FunctionName=names.function,
                    Environment={"Variables": {**environment, "RELEASE_VERSION": release}})
            published = lam.publish_version(FunctionName=names.function, CodeSha256=artifact.code_sha256,
                                            Description=release)
            assert published["Version"] == str(number)
        lam.create_alias(FunctionName=names.function, Name=names.alias, FunctionVersion="1")

        # the probe function for the error contract
        lam.create_function(FunctionName="probe", Runtime="python3.12", Role=role, Handler="probe.handler",
                            Code={"ZipFile": probe_zip()}, Timeout=2, Environment={"Variables": {"FLAVOUR": "one"}})
        lam.publish_version(FunctionName="probe")
        wait_healthy(f"{api_url}/__sandbox/health", procs["api"])
        yield Fronts(moto_url=moto_url, lambda_url=lambda_url, api_url=api_url, region=region,
                     function=names.function, alias=names.alias, rest_api=names.rest_api, pool_id=pool_id,
                     tokens=tokens, procs=procs)
    finally:
        for name in ("api", "lambda", "moto"):
            proc = procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
