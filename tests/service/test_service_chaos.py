"""Fault injection through CHAOS_ERROR_RATE / CHAOS_LATENCY_MS."""

import json

import pytest

from campaigns_lambda import chaos
from campaigns_lambda.config import parse_error_rate, parse_latency_ms

BASE = "/v1.0/campaigns"


@pytest.fixture
def sleeps(monkeypatch):
    recorded = []
    monkeypatch.setattr(chaos, "sleep", recorded.append)
    return recorded


def test_error_rate_one_fails_every_request_with_chaos_code(aws, api, monkeypatch):
    monkeypatch.setenv("CHAOS_ERROR_RATE", "1")
    for method, path, kwargs in [
        ("GET", f"{BASE}/health", {}),
        ("GET", BASE, {}),
        ("POST", BASE, {"json_body": {"name": "never stored"}}),
    ]:
        response = api.request(method, path, **kwargs)
        assert response.status == 500
        assert response.error_code == "chaos_injected"
        assert response.header("Content-Type") == "application/json"
    assert aws.scan_all() == []


def test_without_chaos_settings_nothing_is_injected(aws, api, sleeps):
    statuses = {api.get(f"{BASE}/health").status for _ in range(30)}
    assert statuses == {200}
    assert sleeps == []


def test_error_rate_zero_is_inert(aws, api, monkeypatch):
    monkeypatch.setenv("CHAOS_ERROR_RATE", "0")
    assert {api.get(BASE).status for _ in range(20)} == {200}


def test_partial_error_rate_uses_the_random_draw(aws, api, monkeypatch):
    monkeypatch.setenv("CHAOS_ERROR_RATE", "0.25")
    draws = iter([0.1, 0.9, 0.24, 0.25])
    monkeypatch.setattr(chaos, "random_fraction", lambda: next(draws))
    statuses = [api.get(BASE).status for _ in range(4)]
    assert statuses == [500, 200, 500, 200]


def test_latency_sleeps_per_request(aws, api, monkeypatch, sleeps):
    monkeypatch.setenv("CHAOS_LATENCY_MS", "250")
    assert api.get(BASE).status == 200
    assert api.get(f"{BASE}/health").status == 200
    assert sleeps == [0.25, 0.25]


@pytest.mark.parametrize("value", ["abc", "-0.1", "1.5", "nan", "inf"])
def test_invalid_error_rate_is_ignored_with_warning(aws, api, monkeypatch, capsys, value):
    monkeypatch.setenv("CHAOS_ERROR_RATE", value)
    assert api.get(BASE).status == 200
    logs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    warnings = [log for log in logs if log.get("message") == "ignoring invalid chaos setting"]
    assert all(log["level"] == "WARNING" for log in warnings)
    assert warnings
    assert warnings[0]["setting"] == "CHAOS_ERROR_RATE"


@pytest.mark.parametrize("value", ["soon", "-5", "1.5", "600001"])
def test_invalid_latency_is_ignored(aws, api, monkeypatch, sleeps, value):
    monkeypatch.setenv("CHAOS_LATENCY_MS", value)
    assert api.get(BASE).status == 200
    assert sleeps == []


def test_setting_parsers():
    assert parse_error_rate(None) == 0.0
    assert parse_error_rate(" 0.5 ") == 0.5
    assert parse_error_rate("1") == 1.0
    assert parse_error_rate("2") == 0.0
    assert parse_latency_ms("") == 0
    assert parse_latency_ms("100") == 100
    assert parse_latency_ms("60000") == 60000
    assert parse_latency_ms("60001") == 0


def _invoke_through(api, arn: str):
    from campaigns_lambda import handler as service_handler
    from tests.service.conftest import FakeLambdaContext

    context = FakeLambdaContext()
    context.invoked_function_arn = arn
    raw = service_handler.lambda_handler(api.build_event("GET", f"{BASE}/health"), context)
    return raw["statusCode"]


def test_chaos_via_an_alias_faults_only_invocations_through_that_alias(aws, api, monkeypatch):
    # GIVEN every request should fail, but only through the alias "live"
    monkeypatch.setenv("CHAOS_ERROR_RATE", "1")
    monkeypatch.setenv("CHAOS_VIA", "live")
    fn = "arn:aws:lambda:eu-west-1:123456789012:function:campaigns-api-test"
    # THEN the version invoked by number (the pre-traffic gate), $LATEST, another alias and the unqualified ARN
    # are served, and the alias's callers get the fault
    assert [_invoke_through(api, arn) for arn in (f"{fn}:7", f"{fn}:$LATEST", f"{fn}:blue", fn)] == [200] * 4
    assert _invoke_through(api, f"{fn}:live") == 500


def test_chaos_via_counts_only_the_alias_invocations_toward_start_after(aws, api, monkeypatch):
    monkeypatch.setattr(chaos, "_served", 0)  # a fresh execution environment
    monkeypatch.setenv("CHAOS_ERROR_RATE", "1")
    monkeypatch.setenv("CHAOS_VIA", "live")
    monkeypatch.setenv("CHAOS_START_AFTER", "1")
    fn = "arn:aws:lambda:eu-west-1:123456789012:function:campaigns-api-test"
    statuses = [_invoke_through(api, arn) for arn in (f"{fn}:3", f"{fn}:3", f"{fn}:live", f"{fn}:live")]
    assert statuses == [200, 200, 200, 500]


def test_invalid_chaos_via_is_ignored_with_warning(monkeypatch, capsys):
    from campaigns_lambda.config import parse_via

    assert parse_via(" live ") == "live"
    assert parse_via("") is None
    for bad in ("12", "live:prod", "a" * 129):
        assert parse_via(bad) is None
    logs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert sum(log.get("setting") == "CHAOS_VIA" for log in logs) == 3
