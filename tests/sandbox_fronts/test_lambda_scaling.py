"""The Lambda front scales execution environments as Lambda does, throttles beyond the function's reserved or the
account's concurrency, reaps environments of versions no alias points at; the API front answers unknown methods as
API Gateway does."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.request
from urllib.parse import urlsplit

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

pytestmark = pytest.mark.sandbox

PROBE = """
import os, time

def handler(event, context):
    if event.get("action") == "sleep":
        time.sleep(float(event.get("seconds", 1)))
    return {"version": context.function_version, "pid": os.getpid()}
"""


def probe_zip() -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("probe.py", PROBE)
    return buf.getvalue()


def _lambda(fronts):
    import boto3

    return boto3.client("lambda", endpoint_url=fronts.lambda_url, region_name=fronts.region,
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=60))


def _function(fronts, name: str) -> None:
    lam = _lambda(fronts)
    role = fronts.client("iam").list_roles()["Roles"][0]["Arn"]
    lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="probe.handler",
                        Code={"ZipFile": probe_zip()}, Timeout=20)
    lam.publish_version(FunctionName=name)


def _invoke(lam, name: str, payload: dict, qualifier: str = "1") -> dict:
    answer = lam.invoke(FunctionName=name, Qualifier=qualifier, Payload=json.dumps(payload).encode())
    assert "FunctionError" not in answer, answer
    return json.loads(answer["Payload"].read())


def _workers(fronts, name: str) -> list[dict]:
    with urllib.request.urlopen(f"{fronts.lambda_url}/__sandbox/workers") as resp:
        return [w for w in json.loads(resp.read()) if w["function"] == name and w["alive"]]


def test_concurrent_invocations_get_an_execution_environment_each(fronts):
    # GIVEN twelve invocations at once, each holding its environment for ten seconds (the environments start a
    # few at a time, all well within that)
    _function(fronts, "scale-probe")
    lam = _lambda(fronts)
    pids: list[int] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            pids.append(_invoke(lam, "scale-probe", {"action": "sleep", "seconds": 10})["pid"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    # THEN none waited for another's environment: twelve environments, as Lambda scales out
    assert errors == []
    assert len(set(pids)) == 12
    assert len(_workers(fronts, "scale-probe")) == 12


def test_reserved_concurrency_throttles_the_function_beyond_it(fronts):
    _function(fronts, "reserved-probe")
    lam = _lambda(fronts)
    lam.put_function_concurrency(FunctionName="reserved-probe", ReservedConcurrentExecutions=1)
    busy = threading.Thread(target=_invoke, args=(lam, "reserved-probe", {"action": "sleep", "seconds": 3}))
    busy.start()
    try:
        import time

        time.sleep(1.5)
        with pytest.raises(ClientError) as caught:
            _invoke(lam, "reserved-probe", {})
    finally:
        busy.join(60)
    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert error["Error"]["Code"] == "TooManyRequestsException"
    assert error.get("Reason") == "ReservedFunctionConcurrentInvocationLimitExceeded"
    # with the reservation removed, the same call runs
    lam.delete_function_concurrency(FunctionName="reserved-probe")
    assert _invoke(lam, "reserved-probe", {})["version"] == "1"
    stats = json.loads(urllib.request.urlopen(f"{fronts.lambda_url}/__sandbox/stats").read())["versions"]
    assert next(s for s in stats if s["function"] == "reserved-probe")["throttles"] == 1


def test_environments_of_versions_no_alias_points_at_are_reaped(fronts):
    _function(fronts, "reap-probe")
    lam = _lambda(fronts)
    lam.update_function_configuration(FunctionName="reap-probe", Environment={"Variables": {"FLAVOUR": "two"}})
    assert lam.publish_version(FunctionName="reap-probe", Description="second")["Version"] == "2"
    lam.create_alias(FunctionName="reap-probe", Name="live", FunctionVersion="1",
                     RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
    _invoke(lam, "reap-probe", {}, "1")
    _invoke(lam, "reap-probe", {}, "2")
    assert {w["version"] for w in _workers(fronts, "reap-probe")} == {"1", "2"}
    # WHEN the alias stops pointing at version 1
    lam.update_alias(FunctionName="reap-probe", Name="live", FunctionVersion="2",
                     RoutingConfig={"AdditionalVersionWeights": {}})
    # THEN its environments are gone; version 2's stay warm
    assert {w["version"] for w in _workers(fronts, "reap-probe")} == {"2"}


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "CONNECT", "PROPFIND", "BREW"])
def test_unknown_methods_are_answered_as_api_gateway_does(fronts, method):
    parts = urlsplit(fronts.api_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request(method, "/v1.0/campaigns", headers={"Authorization": f"Bearer {fronts.tokens['viewer']}"})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 403
    assert resp.getheader("Content-Type") == "application/json"
    assert json.loads(body) == {"message": "Missing Authentication Token"}
    assert resp.getheader("x-amzn-ErrorType") == "MissingAuthenticationTokenException"
