"""What makes the sandbox cheaper per request changes nothing it answers: moto's keep-alive WSGI server, the
DynamoDB item fast path and the dispatcher cache answer what moto's own code paths answer; the collector's
freezing keeps what survives; an interpreter's version is asked once."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import subprocess
import sys
import threading
from decimal import Decimal

import pytest

from promoter.sandbox import moto_server
from promoter.sandbox.wsgi import SOCKET_KEY, RequestAborted, WSGIServer

ITEMS = [
    {"id": {"S": "a"}, "n": {"N": "12.5"}, "empty": {"S": ""}, "flag": {"BOOL": False}, "nothing": {"NULL": True}},
    {"id": {"S": "b"}, "tags": {"SS": ["x", "y"]}, "nums": {"NS": ["1", "2"]},
     "nested": {"M": {"inner": {"L": [{"S": "p"}, {"N": "3"}, {"M": {"deep": {"BOOL": True}}}]}}}},
    {"id": {"S": "c"}, "blob": {"B": b"\x00\xffbinary"}, "blobs": {"BS": [b"one", b"two"]},
     "mixed": {"L": [{"B": b"\x01"}, {"S": "s"}]}},
    {"id": {"S": "d"}, "unicode": {"S": "caf\u00e9 \u2603 \U0001f600"}, "list": {"L": []}, "map": {"M": {}}},
]


def _serialize_both(operation: str, result: dict) -> tuple[str, str]:
    """The body moto writes for ``result`` with the fast path, and with moto's own structure serializer."""
    from moto.core import serialize
    from moto.core.utils import get_service_model
    from moto.dynamodb.responses import DynamoResult

    moto_server.patch_dynamodb_item_serialization()
    model = get_service_model("dynamodb").operation_model(operation)

    def body() -> str:
        serializer = serialize.JSONSerializer(model, value_picker=serialize.XFormedAttributePicker())
        return serializer.serialize(DynamoResult(result).result)["body"]

    fast = body()
    cls = serialize.BaseJSONSerializer
    patched = cls._serialize_type_structure
    cls._serialize_type_structure = cls._promoter_original_structure
    try:
        slow = body()
    finally:
        cls._serialize_type_structure = patched
    return fast, slow


def _as_dynamo_types(item: dict) -> dict:
    from moto.dynamodb.models.dynamo_type import DynamoType

    return {name: DynamoType(value) for name, value in item.items()}


@pytest.mark.parametrize("item", ITEMS, ids=[i["id"]["S"] for i in ITEMS])
def test_get_item_body_is_what_moto_writes(item: dict) -> None:
    fast, slow = _serialize_both("GetItem", {"Item": _as_dynamo_types(item)})
    assert fast == slow
    assert json.loads(fast)["Item"]["id"] == item["id"]


def test_scan_body_is_what_moto_writes() -> None:
    result = {"Count": len(ITEMS), "ScannedCount": len(ITEMS), "Items": [_as_dynamo_types(i) for i in ITEMS],
              "LastEvaluatedKey": {"id": {"S": "d"}}}
    fast, slow = _serialize_both("Scan", result)
    assert fast == slow
    decoded = json.loads(fast)
    assert decoded["Items"][2]["blob"] == {"B": base64.b64encode(b"\x00\xffbinary").decode()}
    assert decoded["Items"][1]["nested"]["M"]["inner"]["L"][2] == {"M": {"deep": {"BOOL": True}}}


def test_attribute_value_wire_leaves_what_it_cannot_write_to_moto() -> None:
    slow = moto_server._SLOW
    assert moto_server.attribute_value_wire({"S": "x"}) == {"S": "x"}
    assert moto_server.attribute_value_wire({"B": b"x"}) is slow
    assert moto_server.attribute_value_wire({"M": {"a": {"B": b"x"}}}) is slow
    assert moto_server.attribute_value_wire({"N": Decimal("1")}) is slow
    assert moto_server.attribute_value_wire({"S": "x", "N": "1"}) is slow
    assert moto_server.attribute_value_wire("S") is slow


def test_items_round_trip_through_boto3_with_the_fast_path() -> None:
    import boto3
    from moto import mock_aws

    moto_server.patch_dynamodb_item_serialization()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="eu-west-1")
        client.create_table(TableName="t", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                            BillingMode="PAY_PER_REQUEST")
        for item in ITEMS:
            client.put_item(TableName="t", Item=item)
        for item in ITEMS:
            assert client.get_item(TableName="t", Key={"id": item["id"]})["Item"] == item
        scanned = sorted(client.scan(TableName="t")["Items"], key=lambda i: i["id"]["S"])
        assert scanned == sorted(ITEMS, key=lambda i: i["id"]["S"])


def test_dispatcher_looks_each_host_up_once() -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    app = moto_server.cached_dispatcher(create_backend_app)
    calls = []
    original = DomainDispatcherApplication.get_backend_for_host

    def counting(self, host):
        calls.append(host)
        return original(self, host)

    DomainDispatcherApplication.get_backend_for_host = counting
    try:
        hosts = ["dynamodb.eu-west-1.amazonaws.com", "monitoring.eu-west-1.amazonaws.com"]
        first = [app.get_backend_for_host(h) for h in hosts]
        again = [app.get_backend_for_host(h) for h in hosts]
    finally:
        DomainDispatcherApplication.get_backend_for_host = original
    reference = DomainDispatcherApplication(create_backend_app)
    assert first == again == [reference.get_backend_for_host(h) for h in hosts] == ["dynamodb", "cloudwatch"]
    assert calls == hosts
    assert app.get_backend_for_host(None) is None


# -- the keep-alive WSGI server ------------------------------------------------------------------------------
@pytest.fixture
def echo_server():
    seen: list[dict] = []

    def app(environ, start_response):
        body = environ["wsgi.input"].read()
        seen.append({k: v for k, v in environ.items() if isinstance(v, str)})
        if environ["PATH_INFO"] == "/drop":
            environ[SOCKET_KEY].shutdown(socket.SHUT_RDWR)
            raise RequestAborted("dropped")
        if environ["PATH_INFO"] == "/boom":
            raise ValueError("broken application")
        if environ["REQUEST_METHOD"] == "HEAD":
            start_response("200 OK", [("Content-Length", "1234"), ("X-Kind", "head")])
            return [b""]
        payload = json.dumps({"path": environ["PATH_INFO"], "query": environ["QUERY_STRING"],
                              "raw": environ["RAW_URI"], "length": len(body), "body": body.decode()}).encode()
        start_response("201 Created", [("Content-Type", "application/json"), ("Content-Length", "999")])
        return [payload[:10], payload[10:]]

    server = WSGIServer(("127.0.0.1", 0), app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


def test_requests_share_one_connection(echo_server) -> None:
    port, seen = echo_server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for n in range(3):
        conn.request("POST", f"/a%2Fb/{n}?x=1", body=b"hello" * n, headers={"X-Amz-Meta-my_key": "v"})
        resp = conn.getresponse()
        data = json.loads(resp.read())
        assert resp.status == 201
        assert int(resp.getheader("Content-Length")) == len(json.dumps(data).encode())  # the real length
        assert data == {"path": f"/a/b/{n}", "query": "x=1", "raw": f"/a%2Fb/{n}?x=1", "length": 5 * n,
                        "body": "hello" * n}
    assert len({s["REMOTE_PORT"] for s in seen}) == 1  # one TCP connection served all three
    assert seen[0]["HTTP_X_AMZ_META_MY_KEY"] == "v"  # S3 metadata keeps its underscore, as under werkzeug
    conn.close()


def test_chunked_body_is_read_whole(echo_server) -> None:
    port, _ = echo_server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("PUT", "/chunked", body=iter([b"abc", b"defg"]), encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})
    data = json.loads(conn.getresponse().read())
    assert data["body"] == "abcdefg" and data["length"] == 7
    conn.request("GET", "/after")  # the connection is still in step
    assert json.loads(conn.getresponse().read())["path"] == "/after"


def test_head_keeps_the_declared_length_and_sends_no_body(echo_server) -> None:
    port, _ = echo_server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("HEAD", "/object")
    resp = conn.getresponse()
    assert resp.getheader("Content-Length") == "1234" and resp.read() == b""
    conn.request("GET", "/next")
    assert json.loads(conn.getresponse().read())["path"] == "/next"


def test_a_dropped_reply_closes_the_connection_unanswered(echo_server) -> None:
    port, _ = echo_server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("POST", "/drop", body=b"x")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        conn.getresponse()


def test_an_application_error_is_a_500_and_the_server_goes_on(echo_server) -> None:
    port, _ = echo_server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/boom")
    resp = conn.getresponse()
    assert resp.status == 500 and b"internal error" in resp.read()
    conn.request("GET", "/fine")
    assert conn.getresponse().status == 201


def test_heap_walks_freeze_what_survives() -> None:
    code = (
        "import gc, time\n"
        "from promoter.sandbox.moto_server import short_heap_walks\n"
        "short_heap_walks(interval=0.05)\n"
        "start = gc.get_freeze_count()\n"
        "keep = [[i] for i in range(20000)]\n"
        "time.sleep(0.5)\n"
        "print(start > 0, gc.get_freeze_count() - start >= 20000)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["True", "True"]


def test_an_interpreter_is_asked_its_version_once_per_file(tmp_path, monkeypatch) -> None:
    from promoter.sandbox import runtimes

    calls = []
    real_run = subprocess.run

    def counting(cmd, *args, **kwargs):
        calls.append(cmd[0])
        return real_run(cmd, *args, **kwargs)

    interpreter = tmp_path / "python3"
    interpreter.symlink_to(sys.executable)
    monkeypatch.setattr(runtimes.subprocess, "run", counting)
    first = runtimes._version_of(str(interpreter))
    assert runtimes._version_of(str(interpreter)) == first
    assert first == (f"{sys.version_info[0]}.{sys.version_info[1]}", "")
    assert len(calls) == 1
    broken = tmp_path / "broken"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    assert runtimes._version_of(str(broken)) == (None, "exits 3")
    assert runtimes._version_of(str(broken)) == (None, "exits 3")
    assert len(calls) == 3  # a failure is asked again


def test_statistics_read_only_their_own_metric(monkeypatch) -> None:
    import datetime as dt

    import boto3
    from moto import mock_aws
    from moto.cloudwatch import models

    moto_server.patch_cloudwatch_percentiles()
    moto_server.patch_cloudwatch_exact_dimensions()
    with mock_aws():
        cw = boto3.client("cloudwatch", region_name="eu-west-1")
        now = dt.datetime.now(dt.UTC)
        cw.put_metric_data(Namespace="AWS/Lambda", MetricData=[
            {"MetricName": "Duration", "Dimensions": [{"Name": "FunctionName", "Value": "f"}], "Timestamp": now,
             "Values": [10.0, 20.0, 30.0], "Counts": [1, 2, 1], "Unit": "Milliseconds"},
            {"MetricName": "Invocations", "Dimensions": [{"Name": "FunctionName", "Value": "f"}], "Timestamp": now,
             "StatisticValues": {"SampleCount": 4, "Sum": 4, "Minimum": 1, "Maximum": 1}}])
        cw.put_metric_data(Namespace="Other", MetricData=[{"MetricName": "Duration", "Value": 999.0,
                                                           "Timestamp": now}])
        monkeypatch.setattr(models.CloudWatchBackend, "get_all_metrics",
                            lambda self: (_ for _ in ()).throw(AssertionError("walked every datapoint")))
        window = {"StartTime": now - dt.timedelta(minutes=1), "EndTime": now + dt.timedelta(minutes=1),
                  "Period": 60}
        point = cw.get_metric_statistics(Namespace="AWS/Lambda", MetricName="Duration",
                                         Dimensions=[{"Name": "FunctionName", "Value": "f"}],
                                         ExtendedStatistics=["p50", "p100"], **window)["Datapoints"][0]
        assert point["ExtendedStatistics"] == {"p50": 20.0, "p100": 30.0}
        count = cw.get_metric_statistics(Namespace="AWS/Lambda", MetricName="Invocations",
                                         Dimensions=[{"Name": "FunctionName", "Value": "f"}],
                                         Statistics=["Sum"], **window)["Datapoints"][0]
        assert count["Sum"] == 4.0
