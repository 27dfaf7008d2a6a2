"""The API front: Cognito authorizer, proxy events to the real service, weighted routing, metrics and logs."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

pytestmark = pytest.mark.sandbox
ALIAS_CACHE_S = 0.3  # the API front reads the alias weights at most every 250 ms


def settle() -> None:
    time.sleep(ALIAS_CACHE_S)


def call(fronts, method: str, path: str, token: str | None = None, body: dict | None = None,
         bearer: bool = True) -> tuple[int, dict, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}" if bearer else token
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(fronts.api_url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw, status, got = resp.read(), resp.status, dict(resp.headers)
    except urllib.error.HTTPError as err:
        raw, status, got = err.read(), err.code, dict(err.headers)
    return status, (json.loads(raw) if raw else {}), got


def test_health_needs_no_token(fronts):
    status, body, _ = call(fronts, "GET", "/v1.0/campaigns/health")
    assert status == 200
    assert body["status"] == "ok" and body["release"] == "v1.0.0"


def test_no_or_bad_token_is_401_from_the_front(fronts):
    assert call(fronts, "GET", "/v1.0/campaigns") [:2] == (401, {"message": "Unauthorized"})
    assert call(fronts, "GET", "/v1.0/campaigns", token="not.a.jwt")[:2] == (401, {"message": "Unauthorized"})
    forged = fronts.tokens["admin"][:-4] + ("AAAA" if not fronts.tokens["admin"].endswith("AAAA") else "BBBB")
    assert call(fronts, "GET", "/v1.0/campaigns", token=forged)[0] == 401
    # an access token is not an ID token
    assert call(fronts, "GET", "/v1.0/campaigns", token=fronts.tokens["admin-access"])[0] == 401


def test_unknown_route_is_missing_authentication_token(fronts):
    status, body, _ = call(fronts, "GET", "/v2/other", token=fronts.tokens["admin"])
    assert status == 403 and body == {"message": "Missing Authentication Token"}


def test_crud_with_each_group(fronts):
    viewer, editor, admin = (fronts.tokens[u] for u in ("viewer", "editor", "admin"))
    status, created, headers = call(fronts, "POST", "/v1.0/campaigns", editor, {"name": "Spring sale"})
    assert status == 201, created
    campaign_id = created["id"]
    assert headers["Location"].endswith(campaign_id)

    status, got, _ = call(fronts, "GET", f"/v1.0/campaigns/{campaign_id}", viewer, bearer=False)
    assert status == 200 and got["name"] == "Spring sale"
    status, listed, _ = call(fronts, "GET", "/v1.0/campaigns?limit=10", viewer)
    assert status == 200 and campaign_id in json.dumps(listed)

    assert call(fronts, "POST", "/v1.0/campaigns", viewer, {"name": "Nope"})[0] == 403
    assert call(fronts, "DELETE", f"/v1.0/campaigns/{campaign_id}", editor)[0] == 403
    assert call(fronts, "DELETE", f"/v1.0/campaigns/{campaign_id}", admin)[0] in (200, 204)
    assert call(fronts, "GET", f"/v1.0/campaigns/{campaign_id}", viewer)[0] == 404


def test_weighted_routing_metrics_and_logs(fronts):
    lam = fronts.client("lambda", front=True)
    alias = lam.get_alias(FunctionName=fronts.function, Name=fronts.alias)
    lam.update_alias(FunctionName=fronts.function, Name=fronts.alias, FunctionVersion="1",
                     RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}}, RevisionId=alias["RevisionId"])
    settle()
    try:
        releases = Counter()
        for _ in range(400):
            status, body, _ = call(fronts, "GET", "/v1.0/campaigns/health")
            assert status == 200
            releases[body["release"]] += 1
    finally:
        current = lam.get_alias(FunctionName=fronts.function, Name=fronts.alias)
        lam.update_alias(FunctionName=fronts.function, Name=fronts.alias, FunctionVersion="1",
                         RoutingConfig={"AdditionalVersionWeights": {}}, RevisionId=current["RevisionId"])
        settle()
    share = releases["v1.1.0"] / 400
    assert 0.05 <= share <= 0.16, releases

    with urllib.request.urlopen(f"{fronts.api_url}/__sandbox/stats") as resp:
        stats = json.loads(resp.read())
    assert stats["versions"]["2"] == releases["v1.1.0"]

    fronts.flush()
    cw = fronts.client("cloudwatch")
    window = {"StartTime": datetime.now(UTC) - timedelta(hours=1), "EndTime": datetime.now(UTC) + timedelta(minutes=5),
              "Period": 7200}

    def total(namespace: str, metric: str, dims: dict[str, str], stat: str = "Sum") -> float:
        points = cw.get_metric_statistics(Namespace=namespace, MetricName=metric, Statistics=[stat],
                                          Dimensions=[{"Name": k, "Value": v} for k, v in dims.items()],
                                          **window)["Datapoints"]
        return sum(p[stat] for p in points)

    by_version = {"FunctionName": fronts.function, "Resource": f"{fronts.function}:{fronts.alias}"}
    assert total("AWS/Lambda", "Invocations", {**by_version, "ExecutedVersion": "2"}) == releases["v1.1.0"]
    assert total("AWS/Lambda", "Invocations", {**by_version, "ExecutedVersion": "1"}) >= releases["v1.0.0"]
    assert total("AWS/Lambda", "Errors", {**by_version, "ExecutedVersion": "2"}) == 0
    assert total("AWS/Lambda", "Duration", {**by_version, "ExecutedVersion": "2"}, "SampleCount") == releases["v1.1.0"]
    assert total("AWS/ApiGateway", "Count", {"ApiName": fronts.rest_api, "Stage": "v1"}) >= 400

    logs = fronts.client("logs")
    group = f"/aws/lambda/{fronts.function}"
    streams = [s["logStreamName"] for s in logs.describe_log_streams(logGroupName=group)["logStreams"]]
    assert any(re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[2\][0-9a-f]{32}", s) for s in streams), streams
    stream = next(s for s in streams if "[2]" in s)
    messages = [e["message"] for e in logs.get_log_events(logGroupName=group, logStreamName=stream)["events"]]
    assert any(m.startswith("START RequestId:") and m.endswith("Version: 2") for m in messages)
    assert any(m.startswith("REPORT RequestId:") and "Duration:" in m for m in messages)


def test_a_function_error_is_502_and_counted_as_a_lambda_error(fronts):
    # GIVEN version 3 whose handler does not exist, and the alias on it
    lam = fronts.client("lambda", front=True)
    lam.update_function_configuration(FunctionName=fronts.function, Handler="campaigns_lambda.handler.missing")
    broken = lam.publish_version(FunctionName=fronts.function)["Version"]
    lam.update_function_configuration(FunctionName=fronts.function, Handler="campaigns_lambda.handler.lambda_handler")
    alias = lam.get_alias(FunctionName=fronts.function, Name=fronts.alias)
    lam.update_alias(FunctionName=fronts.function, Name=fronts.alias, FunctionVersion=broken,
                     RevisionId=alias["RevisionId"])
    settle()
    try:
        # WHEN a request arrives
        status, body, _ = call(fronts, "GET", "/v1.0/campaigns/health")
    finally:
        alias = lam.get_alias(FunctionName=fronts.function, Name=fronts.alias)
        lam.update_alias(FunctionName=fronts.function, Name=fronts.alias, FunctionVersion="1",
                         RevisionId=alias["RevisionId"])
    # THEN API Gateway's answer, and Lambda's Errors for that version
    assert (status, body) == (502, {"message": "Internal server error"})
    fronts.flush()
    cw = fronts.client("cloudwatch")
    points = cw.get_metric_statistics(
        Namespace="AWS/Lambda", MetricName="Errors", Statistics=["Sum"], Period=7200,
        StartTime=datetime.now(UTC) - timedelta(hours=1), EndTime=datetime.now(UTC) + timedelta(minutes=5),
        Dimensions=[{"Name": "FunctionName", "Value": fronts.function},
                    {"Name": "Resource", "Value": f"{fronts.function}:{fronts.alias}"},
                    {"Name": "ExecutedVersion", "Value": broken}])["Datapoints"]
    assert sum(p["Sum"] for p in points) == 1
    # and the front's stats stamp the version's first failed answer (version 1 never failed)
    with urllib.request.urlopen(f"{fronts.api_url}/__sandbox/stats") as resp:
        stats = json.loads(resp.read())
    assert stats["first_seen"][broken] <= stats["first_failed"][broken] and "1" not in stats["first_failed"]
    settle()
    assert call(fronts, "GET", "/v1.0/campaigns/health")[0] == 200


def test_a_header_sent_twice_reaches_the_event_with_both_values():
    # GIVEN the fronts' HTTP server with a front that keeps what it is handed
    import http.client
    import threading
    from urllib.parse import urlsplit

    from promoter.sandbox.api_front import ApiFront
    from promoter.sandbox.lambda_front import FrontHandler, FrontServer, Reply

    class Recorder:
        wants_multi_headers = True

        def __init__(self):
            self.seen = {}

        def handle(self, method, path, headers, body, multi_headers=None):
            self.seen = {"headers": headers, "multi": multi_headers}
            return Reply(200, {"Content-Type": "application/json"}, b"{}")

    server = FrontServer(("127.0.0.1", 0), FrontHandler)
    server.front = recorder = Recorder()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        # WHEN a request carries X-Tag twice
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
        conn.putrequest("GET", "/v1.0/campaigns?tag=a&tag=b")
        conn.putheader("X-Tag", "one")
        conn.putheader("X-Tag", "two")
        conn.putheader("Accept", "application/json")
        conn.endheaders()
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        server.shutdown()
        server.server_close()
    # THEN the front gets every value, and the proxy event holds them as API Gateway does
    assert recorder.seen["multi"]["X-Tag"] == ["one", "two"]
    assert "Host" not in recorder.seen["multi"]
    api = ApiFront(moto_url="http://127.0.0.1:9", lambda_url="http://127.0.0.1:9", function="f", alias="live",
                   rest_api="api", base_path="/v1.0/campaigns", health_path="/v1.0/campaigns/health",
                   region="eu-west-1", user_pool_id="eu-west-1_x")
    event = api.build_event("GET", urlsplit("/v1.0/campaigns?tag=a&tag=b"), recorder.seen["headers"], b"",
                            "/v1.0/campaigns", None, None, "req-1", "123456789012", recorder.seen["multi"])
    assert event["headers"]["X-Tag"] == "two"
    assert event["multiValueHeaders"]["X-Tag"] == ["one", "two"]
    assert event["multiValueHeaders"]["Accept"] == ["application/json"]
    assert event["multiValueQueryStringParameters"] == {"tag": ["a", "b"]}
    assert event["queryStringParameters"] == {"tag": "b"}


def test_a_worker_killed_mid_request_is_502_an_error_and_then_replaced(fronts):
    # GIVEN version N whose requests take 3 s (CHAOS_LATENCY_MS), with the alias on it
    import os
    import signal
    import threading

    lam = fronts.client("lambda", front=True)
    config = lam.get_function_configuration(FunctionName=fronts.function)
    variables = config["Environment"]["Variables"]
    lam.update_function_configuration(FunctionName=fronts.function,
                                      Environment={"Variables": {**variables, "CHAOS_LATENCY_MS": "3000"}})
    slow = lam.publish_version(FunctionName=fronts.function)["Version"]
    lam.update_function_configuration(FunctionName=fronts.function, Environment={"Variables": variables})
    alias = lam.get_alias(FunctionName=fronts.function, Name=fronts.alias)
    lam.update_alias(FunctionName=fronts.function, Name=fronts.alias, FunctionVersion=slow,
                     RevisionId=alias["RevisionId"])
    settle()
    answers = []
    try:
        # WHEN its worker is killed while it serves a request
        request = threading.Thread(target=lambda: answers.append(call(fronts, "GET", "/v1.0/campaigns/health")))
        request.start()
        deadline = time.monotonic() + 10
        victims = []
        while not victims and time.monotonic() < deadline:
            time.sleep(0.3)
            with urllib.request.urlopen(f"{fronts.lambda_url}/__sandbox/workers") as resp:
                victims = [w["pid"] for w in json.loads(resp.read())
                           if w["function"] == fronts.function and w["version"] == slow and w["alive"]]
        assert victims, "no worker of the slow version appeared"
        time.sleep(0.5)  # inside the 3 s the request takes
        os.kill(victims[0], signal.SIGKILL)
        request.join(timeout=30)
        # THEN the caller gets API Gateway's 502, and the next request runs in a new worker
        assert answers and answers[0][:2] == (502, {"message": "Internal server error"})
        assert call(fronts, "GET", "/v1.0/campaigns/health")[0] == 200
    finally:
        alias = lam.get_alias(FunctionName=fronts.function, Name=fronts.alias)
        lam.update_alias(FunctionName=fronts.function, Name=fronts.alias, FunctionVersion="1",
                         RevisionId=alias["RevisionId"])
        settle()
    # AND Lambda counted the crash as an Error of that version
    fronts.flush()
    points = fronts.client("cloudwatch").get_metric_statistics(
        Namespace="AWS/Lambda", MetricName="Errors", Statistics=["Sum"], Period=7200,
        StartTime=datetime.now(UTC) - timedelta(hours=1), EndTime=datetime.now(UTC) + timedelta(minutes=5),
        Dimensions=[{"Name": "FunctionName", "Value": fronts.function},
                    {"Name": "Resource", "Value": f"{fronts.function}:{fronts.alias}"},
                    {"Name": "ExecutedVersion", "Value": slow}])["Datapoints"]
    assert sum(p["Sum"] for p in points) == 1
