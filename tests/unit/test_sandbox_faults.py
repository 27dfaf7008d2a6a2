"""The sandbox's fault rules on plain data: what they hit, for how long, and the errors they answer."""

from __future__ import annotations

import json

import pytest

from promoter.sandbox import faults
from promoter.sandbox.faults import FaultBook


def test_a_rule_hits_its_service_and_operation_for_its_count():
    book = FaultBook()
    book.add({"service": "lambda", "operation": "UpdateAlias", "kind": "drop", "count": 2})
    assert book.take("lambda", "GetAlias") is None
    assert book.take("sqs", "UpdateAlias") is None
    assert book.take("lambda", "UpdateAlias").kind == "drop"
    assert book.take("lambda", "UpdateAlias").hits == 2
    assert book.take("lambda", "UpdateAlias") is None  # spent
    (rule,) = book.list()
    assert rule["hits"] == 2 and rule["active"] is False


def test_a_rule_for_a_time_ends_when_the_time_is_up(monkeypatch):
    now = {"t": 1000.0}
    monkeypatch.setattr(faults.time, "time", lambda: now["t"])
    book = FaultBook()
    book.add({"service": "cloudwatch", "kind": "throttle", "seconds": 5})  # every operation, by its SigV4 name
    assert book.take("monitoring", "GetMetricStatistics").kind == "throttle"
    now["t"] = 1004.9
    assert book.take("monitoring", "DescribeAlarms") is not None
    now["t"] = 1005.0
    assert book.take("monitoring", "DescribeAlarms") is None


@pytest.mark.parametrize(("rule", "message"), [
    ({"kind": "error"}, "needs a service"),
    ({"service": "lambda", "kind": "explode"}, "choose one of"),
    ({"service": "lambda", "kind": "error", "status": 404}, "5xx"),
    ({"service": "lambda", "kind": "latency"}, "latency_ms"),
    ({"service": "lambda", "kind": "error", "count": 0}, "count"),
    ({"service": "lambda", "kind": "error", "seconds": -1}, "seconds"),
    ({"service": "lambda", "kind": "error", "forever": True}, "unknown fault fields: forever"),
])
def test_a_bad_rule_is_refused_with_the_reason(rule, message):
    status, body = FaultBook().endpoint("POST", json.dumps(rule).encode())
    assert status == 400 and message in json.loads(body)["message"]


def test_lambda_operations_and_signed_services_are_recognised():
    assert faults.lambda_operation("PUT", "/2015-03-31/functions/f/aliases/live") == "UpdateAlias"
    assert faults.lambda_operation("GET", "/2015-03-31/functions/f/aliases/live") == "GetAlias"
    assert faults.lambda_operation("POST", "/2015-03-31/functions/f/versions") == "PublishVersion"
    assert faults.lambda_operation("POST", "/2015-03-31/functions/f/invocations") == "Invoke"
    assert faults.lambda_operation("GET", "/2016-08-19/account-settings") == "GetAccountSettings"
    auth = ("AWS4-HMAC-SHA256 Credential=AKID/20261201/eu-west-1/monitoring/aws4_request, SignedHeaders=host, "
            "Signature=0")
    assert faults.signed_service(auth) == "monitoring"
    assert faults.signed_service(None) is None


def test_throttle_and_error_answers_speak_each_protocol():
    throttle = faults.Fault.from_dict({"service": "lambda", "kind": "throttle"}, 0)
    status, headers, body = faults.error_body(throttle, "rest-json")
    assert status == 429 and headers["x-amzn-ErrorType"] == "TooManyRequestsException"
    status, _headers, body = faults.error_body(throttle, "query")
    assert status == 400 and b"<Code>Throttling</Code>" in body
    error = faults.Fault.from_dict({"service": "sqs", "kind": "error", "status": 503}, 0)
    status, _headers, body = faults.error_body(error, "json")
    assert status == 503 and json.loads(body)["__type"] == "InternalFailure"
