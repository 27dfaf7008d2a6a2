"""The Lambda front: Invoke executed locally with Lambda's contract, and AWS's 412 guards."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import time
import urllib.request
import zipfile
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from promoter.sandbox.metrics import emf_datapoints

pytestmark = pytest.mark.sandbox


def invoke(lam, payload: dict, qualifier: str | None = "1", function: str = "probe", **kw):
    args = {"FunctionName": function, "Payload": json.dumps(payload).encode(), **kw}
    if qualifier:
        args["Qualifier"] = qualifier
    response = lam.invoke(**args)
    return response, json.loads(response["Payload"].read() or b"null")


def probe_workers(fronts) -> list[dict]:
    with urllib.request.urlopen(f"{fronts.lambda_url}/__sandbox/workers") as resp:
        return [w for w in json.loads(resp.read()) if w["function"] == "probe" and w["alive"]]


def test_invoke_by_version_runs_that_version_with_its_configuration(fronts):
    lam = fronts.client("lambda", front=True)
    response, body = invoke(lam, {"hello": 1}, LogType="Tail")
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert response["ExecutedVersion"] == "1"
    assert body["version"] == "1" and body["flavour"] == "one"
    assert body["arn"].endswith(":function:probe:1")
    assert 0 < body["remaining"] <= 2000
    tail = base64.b64decode(response["LogResult"]).decode()
    assert "START RequestId:" in tail and "probe event {'hello': 1}" in tail and "REPORT RequestId:" in tail


def test_invoke_by_alias_and_unqualified(fronts):
    lam = fronts.client("lambda", front=True)
    lam.update_function_configuration(FunctionName="probe", Environment={"Variables": {"FLAVOUR": "two"}})
    lam.publish_version(FunctionName="probe")  # version 2: same code, other environment
    lam.create_alias(FunctionName="probe", Name="stable", FunctionVersion="1")
    response, body = invoke(lam, {}, qualifier="stable")
    assert response["ExecutedVersion"] == "1" and body["flavour"] == "one"
    assert body["arn"].endswith(":function:probe:stable")
    response, body = invoke(lam, {}, qualifier="2")
    assert response["ExecutedVersion"] == "2" and body["flavour"] == "two"
    response, body = invoke(lam, {}, qualifier=None)
    assert response["ExecutedVersion"] == "$LATEST" and body["flavour"] == "two"
    # versions run in separate execution environments
    assert invoke(lam, {}, qualifier="1")[1]["pid"] != invoke(lam, {}, qualifier="2")[1]["pid"]


def test_an_invoke_routed_for_an_alias_names_the_alias_in_the_context(fronts):
    # GIVEN the API front's kind of call: version 1 by number, attributed to an alias (X-Sandbox-Resource)
    request = urllib.request.Request(
        f"{fronts.lambda_url}/2015-03-31/functions/probe/invocations?Qualifier=1", data=b"{}", method="POST",
        headers={"Content-Type": "application/json", "X-Sandbox-Resource": "routed"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        body = json.loads(resp.read())
        executed = resp.headers["X-Amz-Executed-Version"]
    # THEN version 1 ran, and as on Lambda its invoked_function_arn is the alias's ARN the caller used
    assert executed == "1" and body["version"] == "1"
    assert body["arn"].endswith(":function:probe:routed")


def test_handler_exception_is_an_unhandled_function_error(fronts):
    lam = fronts.client("lambda", front=True)
    response, body = invoke(lam, {"action": "raise"})
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "RuntimeError" and body["errorMessage"] == "probe failure"
    assert any("probe.py" in frame for frame in body["stackTrace"])
    # the environment survives a handled exception
    assert invoke(lam, {})[1]["version"] == "1"


def test_worker_exit_is_runtime_exit_error_and_the_next_call_works(fronts):
    lam = fronts.client("lambda", front=True)
    before = invoke(lam, {})[1]["pid"]
    response, body = invoke(lam, {"action": "exit"})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ExitError"
    assert "exit status 7" in body["errorMessage"]
    after = invoke(lam, {})[1]
    assert after["version"] == "1" and after["pid"] != before


def test_timeout_is_a_function_error_and_the_worker_is_replaced(fronts):
    lam = fronts.client("lambda", front=True)
    before = invoke(lam, {})[1]["pid"]
    started = time.monotonic()
    response, body = invoke(lam, {"action": "sleep", "seconds": 30})
    assert time.monotonic() - started < 10
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 2.00 seconds" in body["errorMessage"]
    after = invoke(lam, {})[1]
    assert after["version"] == "1" and after["pid"] != before


def test_a_killed_worker_is_replaced(fronts):
    lam = fronts.client("lambda", front=True)
    pid = invoke(lam, {})[1]["pid"]
    assert pid in [w["pid"] for w in probe_workers(fronts)]
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    response, body = invoke(lam, {})
    assert "FunctionError" not in response
    assert body["pid"] != pid


def test_unknown_version_or_function_is_resource_not_found(fronts):
    lam = fronts.client("lambda", front=True)
    for kwargs in ({"FunctionName": "probe", "Qualifier": "99"}, {"FunctionName": "no-such-function"},
                   {"FunctionName": "probe", "Qualifier": "no-such-alias"}):
        with pytest.raises(ClientError) as caught:
            lam.invoke(Payload=b"{}", **kwargs)
        assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_update_alias_with_a_stale_revision_is_refused(fronts):
    lam = fronts.client("lambda", front=True)
    created = lam.create_alias(FunctionName="probe", Name="guarded", FunctionVersion="1")
    updated = lam.update_alias(FunctionName="probe", Name="guarded", FunctionVersion="1",
                               RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}},
                               RevisionId=created["RevisionId"])
    assert updated["RevisionId"] != created["RevisionId"]
    assert lam.get_alias(FunctionName="probe", Name="guarded")["RevisionId"] == updated["RevisionId"]
    listed = {a["Name"]: a for a in lam.list_aliases(FunctionName="probe")["Aliases"]}
    assert listed["guarded"]["RevisionId"] == updated["RevisionId"]
    with pytest.raises(ClientError) as caught:
        lam.update_alias(FunctionName="probe", Name="guarded", FunctionVersion="2", RevisionId=created["RevisionId"])
    assert caught.value.response["Error"]["Code"] == "PreconditionFailedException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    alias = lam.get_alias(FunctionName="probe", Name="guarded")
    assert alias["FunctionVersion"] == "1"  # the refused update changed nothing
    assert alias["RoutingConfig"]["AdditionalVersionWeights"] == {"2": 0.5}


def test_publish_version_with_another_code_sha_is_refused(fronts):
    lam = fronts.client("lambda", front=True)
    latest = lam.get_function_configuration(FunctionName="probe")["CodeSha256"]
    with pytest.raises(ClientError) as caught:
        lam.publish_version(FunctionName="probe", CodeSha256=base64.b64encode(b"x" * 32).decode())
    assert caught.value.response["Error"]["Code"] == "PreconditionFailedException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert lam.publish_version(FunctionName="probe", CodeSha256=latest)["CodeSha256"] == latest


def test_embedded_metric_format_output_becomes_metrics(fronts):
    lam = fronts.client("lambda", front=True)
    for _ in range(3):
        assert "FunctionError" not in invoke(lam, {"action": "emf"})[0]
    fronts.flush()
    points = fronts.client("cloudwatch").get_metric_statistics(
        Namespace="ProbeApi", MetricName="ServerErrors", Statistics=["Sum"], Period=7200,
        StartTime=datetime.now(UTC) - timedelta(hours=1), EndTime=datetime.now(UTC) + timedelta(minutes=5),
        Dimensions=[{"Name": "service", "Value": "probe"}, {"Name": "function_version", "Value": "1"}])["Datapoints"]
    assert sum(p["Sum"] for p in points) == 3


def test_emf_parsing_on_plain_data():
    line = json.dumps({"_aws": {"CloudWatchMetrics": [{"Namespace": "N", "Dimensions": [["a"], []],
                                                        "Metrics": [{"Name": "M", "Unit": "Count"}]}]},
                       "a": "x", "M": [1, 2]})
    points = emf_datapoints(line)
    assert sorted((p.dimensions, p.value) for p in points) == [((), 1.0), ((), 2.0), ((("a", "x"),), 1.0),
                                                               ((("a", "x"),), 2.0)]
    assert emf_datapoints("plain text") == [] and emf_datapoints('{"_aws": 1}') == []



def test_over_the_concurrency_limit_is_429_and_counted_as_a_throttle(fronts, tmp_path):
    # GIVEN a Lambda front that allows one execution at a time, and a function created through it
    import socket
    import subprocess
    import sys
    import threading
    import zipfile

    import boto3

    from promoter.plan.loader import load_plan

    package = tmp_path / "probe.zip"
    with zipfile.ZipFile(package, "w") as zf:
        zf.writestr("probe.py", "import time\n\ndef handler(event, context):\n"
                                "    time.sleep(float(event.get('seconds', 0)))\n    return {'ok': True}\n")

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    front = subprocess.Popen(
        [sys.executable, "-m", "promoter.sandbox.lambda_front", "--port", str(port), "--moto-url", fronts.moto_url,
         "--state-dir", str(tmp_path), "--region", fronts.region, "--concurrency-limit", "1",
         "--flush-interval", "60"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{url}/__sandbox/health", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                assert front.poll() is None and time.monotonic() < deadline, "the Lambda front did not start"
                time.sleep(0.1)
        from botocore.config import Config

        lam = boto3.client("lambda", endpoint_url=url, region_name=fronts.region, aws_access_key_id="testing",
                           aws_secret_access_key="testing",
                           config=Config(retries={"mode": "standard", "total_max_attempts": 1}))  # SDKs retry a 429
        role = fronts.client("iam").get_role(RoleName=load_plan().names("sit").execution_role)["Role"]["Arn"]
        lam.create_function(FunctionName="throttle-probe", Runtime="python3.12", Role=role, Handler="probe.handler",
                            Code={"ZipFile": package.read_bytes()}, Timeout=10)
        busy = threading.Thread(target=invoke, args=(lam, {"seconds": 3}, None, "throttle-probe"))
        busy.start()
        try:
            time.sleep(1.0)  # the sleeping invocation holds the only execution slot
            # WHEN a second invocation arrives meanwhile
            with pytest.raises(ClientError) as caught:
                invoke(lam, {}, None, "throttle-probe")
        finally:
            busy.join(timeout=20)
        # THEN it is refused as Lambda refuses it, and the next one, with the slot free, runs
        assert caught.value.response["Error"]["Code"] == "TooManyRequestsException"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert "FunctionError" not in invoke(lam, {}, None, "throttle-probe")[0]
        # AND the throttle is a Throttles datapoint of the function, the runs are Invocations
        with urllib.request.urlopen(urllib.request.Request(f"{url}/__sandbox/flush", method="POST", data=b"")) as r:
            assert r.status == 200
        window = {"StartTime": datetime.now(UTC) - timedelta(hours=1),
                  "EndTime": datetime.now(UTC) + timedelta(minutes=5), "Period": 7200}
        cw = fronts.client("cloudwatch")

        def total(metric: str) -> float:
            points = cw.get_metric_statistics(Namespace="AWS/Lambda", MetricName=metric, Statistics=["Sum"],
                                              Dimensions=[{"Name": "FunctionName", "Value": "throttle-probe"}],
                                              **window)["Datapoints"]
            return sum(p["Sum"] for p in points)

        assert total("Throttles") == 1
        assert total("Invocations") == 2
    finally:
        front.terminate()
        front.wait(timeout=15)


def test_duration_is_the_handlers_run_and_start_up_is_init_duration(fronts):
    import re

    from promoter.plan.loader import load_plan

    # GIVEN a function whose module takes a second to import and whose handler returns at once
    lam = fronts.client("lambda", front=True)
    role = fronts.client("iam").get_role(RoleName=load_plan().names("sit").execution_role)["Role"]["Arn"]
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as zf:
        zf.writestr("probe.py", "import time\ntime.sleep(1.0)\n\n\ndef handler(event, context):\n"
                                "    return {'ok': True}\n")
    lam.create_function(FunctionName="slow-init", Runtime="python3.12", Role=role, Handler="probe.handler",
                        Code={"ZipFile": package.getvalue()}, Timeout=10)
    # WHEN its first (cold) invocation runs
    response, body = invoke(lam, {}, None, "slow-init", LogType="Tail")
    assert body == {"ok": True}
    report = next(line for line in base64.b64decode(response["LogResult"]).decode().splitlines()
                  if line.startswith("REPORT"))
    # THEN the import time is Init Duration, and Duration is only the handler's run
    init = float(re.search(r"Init Duration: ([0-9.]+) ms", report).group(1))
    duration = float(re.search(r"\tDuration: ([0-9.]+) ms", report).group(1))
    assert init >= 1000, report
    assert duration < 500, report
