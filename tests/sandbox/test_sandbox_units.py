"""Pure parts of the sandbox: percentile maths, alarm requests from the plan, the seeded certificate."""

from __future__ import annotations

import datetime as dt

import pytest

from promoter.plan.loader import load_plan
from promoter.sandbox.moto_server import dimension_key, nearest_rank, parse_percentile
from promoter.sandbox.seed import alarm_request, self_signed_certificate


@pytest.mark.parametrize(
    ("stat", "expected"),
    [("p95", 95.0), ("p99.9", 99.9), ("p0", 0.0), ("p100", 100.0), ("Sum", None), ("tm90", None), ("p101", None)],
)
def test_parse_percentile(stat, expected):
    assert parse_percentile(stat) == expected


def test_dimension_key_ignores_order_and_tells_sets_apart():
    a = [{"Name": "FunctionName", "Value": "f"}, {"Name": "Resource", "Value": "f:live"}]
    assert dimension_key(a) == dimension_key(list(reversed(a)))
    assert dimension_key(a[:1]) != dimension_key(a)
    assert dimension_key(None) == dimension_key([]) == frozenset()


def test_nearest_rank_on_1_to_100():
    values = list(range(100, 0, -1))  # order must not matter
    assert nearest_rank(values, 95) == 95.0
    assert nearest_rank(values, 50) == 50.0
    assert nearest_rank(values, 100) == 100.0
    assert nearest_rank(values, 0) == 1.0


def test_nearest_rank_small_and_empty_samples():
    assert nearest_rank([], 95) is None
    assert nearest_rank([7.0], 95) == 7.0
    assert nearest_rank([1, 2, 3, 4], 50) == 2.0  # ceil(0.5 * 4) = rank 2


def test_alarm_requests_follow_the_plan():
    plan = load_plan()
    names = plan.names("sit")
    requests = {a.id: alarm_request(a, names, "arn:aws:sns:eu-west-1:1:topic") for a in plan.alarms}
    for alarm in plan.alarms:
        request = requests[alarm.id]
        assert request["AlarmName"] == names.alarms[alarm.id]
        assert request["Threshold"] == alarm.threshold
        assert request["ComparisonOperator"] == alarm.comparison
        assert request["EvaluationPeriods"] == alarm.evaluation_periods
        assert request["AlarmActions"] == ["arn:aws:sns:eu-west-1:1:topic"]
    duration = requests["high-duration"]
    assert duration["ExtendedStatistic"] == "p95" and "Statistic" not in duration
    assert duration["Dimensions"] == [{"Name": "FunctionName", "Value": names.function}]
    assert requests["dlq-messages"]["Dimensions"] == [{"Name": "QueueName", "Value": names.dlq}]
    error_rate = requests["high-error-rate"]["Metrics"]
    assert [m["Id"] for m in error_rate] == ["errors", "invocations", "error_rate"]
    assert error_rate[-1]["ReturnData"] is True


def test_self_signed_certificate_covers_the_domain_for_a_year():
    from cryptography import x509

    cert_pem, key_pem = self_signed_certificate("api.sit.example.io")
    cert = x509.load_pem_x509_certificate(cert_pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["api.sit.example.io"]
    lifetime = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=364) < lifetime <= dt.timedelta(days=365)
    assert b"PRIVATE KEY" in key_pem
