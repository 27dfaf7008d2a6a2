"""Per-version request and 5xx counts in the embedded metric format, and faults that start after N requests."""

import json

import pytest

from campaigns_lambda import chaos
from campaigns_lambda.config import parse_start_after
from campaigns_lambda.handler import reset_state
from campaigns_lambda.observability import METRICS_NAMESPACE, SERVICE_NAME, VERSION_DIMENSION
from promoter.plan import load_plan

BASE = "/v1.0/campaigns"


def _emf_records(text: str) -> list[dict]:
    records = []
    for line in text.splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and "_aws" in data:
            records.append(data)
    return records


@pytest.fixture(autouse=True)
def _fresh_counter(monkeypatch):
    monkeypatch.setattr(chaos, "_served", 0)


def test_every_answer_emits_requests_and_server_errors_by_version(aws, api, capsys, monkeypatch):
    api.get(f"{BASE}/health")
    monkeypatch.setenv("CHAOS_ERROR_RATE", "1")
    reset_state()  # settings are read once per cold start
    api.get(f"{BASE}/health")
    records = _emf_records(capsys.readouterr().out)
    assert len(records) == 2
    for record in records:
        (directive,) = record["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == METRICS_NAMESPACE
        assert sorted(directive["Dimensions"][0]) == sorted([VERSION_DIMENSION, "service"])
        assert record["service"] == SERVICE_NAME and record["Requests"] == [1.0]
    assert [r["ServerErrors"] for r in records] == [[0.0], [1.0]]


def test_metric_names_agree_with_the_plan():
    # the canary analysis reads what the plan names: it must be what the service emits
    metrics = load_plan().metrics
    assert metrics.service_namespace == METRICS_NAMESPACE
    assert metrics.service_name == SERVICE_NAME
    assert metrics.version_dimension == VERSION_DIMENSION
    assert metrics.server_error_metric == "ServerErrors"


def test_faults_begin_only_after_the_configured_number_of_requests(aws, api, monkeypatch):
    monkeypatch.setenv("CHAOS_ERROR_RATE", "1")
    monkeypatch.setenv("CHAOS_START_AFTER", "3")
    statuses = [api.get(f"{BASE}/health").status for _ in range(6)]
    assert statuses == [200, 200, 200, 500, 500, 500]


@pytest.mark.parametrize(("raw", "expected"), [(None, 0), ("", 0), ("7", 7), ("-1", 0), ("x", 0)])
def test_start_after_parsing(raw, expected):
    assert parse_start_after(raw) == expected
