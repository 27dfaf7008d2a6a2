"""Structured logs: correlation by request id, never the body or the Authorization token."""

import json

BASE = "/v1.0/campaigns"
TOKEN = "eyJraWQiOiJleGFtcGxlIiwiYWxnIjoiUlMyNTYifQ.placeholder.signature"


def log_lines(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def test_logs_have_request_id_but_no_body_or_token(aws, api, capsys):
    marker = "BODY-MARKER-4f1c2a"
    request_id = "req-logging-7781"
    capsys.readouterr()

    created = api.post(BASE, json_body={"name": marker, "description": marker}, request_id=request_id)
    rejected = api.post(BASE, json_body={"name": marker, "bogus": marker}, request_id=request_id)

    assert created.status == 201
    assert rejected.status == 422
    output = capsys.readouterr().out
    assert output, "expected log output on stdout"
    assert TOKEN not in output
    assert marker not in output
    assert request_id in output
    logs = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    completed = [log for log in logs if log.get("message") == "request completed"]
    assert [log["status_code"] for log in completed] == [201, 422]
    for log in completed:
        assert log["correlation_id"] == request_id
        assert log["service"] == "campaigns-api"
        assert log["http_method"] == "POST"
        assert log["path"] == BASE


def test_log_event_setting_cannot_leak_the_event(aws, api, capsys, monkeypatch):
    monkeypatch.setenv("POWERTOOLS_LOGGER_LOG_EVENT", "true")
    capsys.readouterr()
    api.post(BASE, json_body={"name": "LEAK-CHECK-991"})
    output = capsys.readouterr().out
    assert "LEAK-CHECK-991" not in output
    assert TOKEN not in output


def test_each_request_gets_its_own_correlation_id(aws, api, capsys):
    capsys.readouterr()
    api.get(BASE, request_id="first-request")
    api.get(BASE, request_id="second-request")
    completed = [log for log in log_lines(capsys) if log.get("message") == "request completed"]
    assert [log["correlation_id"] for log in completed] == ["first-request", "second-request"]
