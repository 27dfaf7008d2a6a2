"""The security report writers (JUnit XML, SARIF 2.1.0 checked against the standard's required shape) and the
checks' pure decisions: log sampling, TLS-only policies, table snapshots, schemathesis' and ZAP's reports."""

from __future__ import annotations

import json
from xml.etree import ElementTree as ET

import jsonschema
import pytest

from promoter.engine.security.fuzz import parse_ndjson, results_from, zap_results
from promoter.engine.security.injection import compare_snapshots
from promoter.engine.security.report import SecurityReport, TestResult, to_junit, to_sarif
from promoter.engine.security.storage import denies_insecure_transport, scan_log_events

# The parts of the SARIF 2.1.0 schema (sarif-schema-2.1.0.json) a log must satisfy: required properties, the
# version constant, the level enumeration, and the shapes of messages, rules and locations.
SARIF_REQUIRED = {
    "type": "object",
    "required": ["version", "runs"],
    "properties": {
        "$schema": {"type": "string", "format": "uri"},
        "version": {"const": "2.1.0"},
        "runs": {"type": "array", "items": {
            "type": "object",
            "required": ["tool"],
            "properties": {
                "tool": {"type": "object", "required": ["driver"], "properties": {"driver": {
                    "type": "object", "required": ["name"],
                    "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                                   "rules": {"type": "array", "items": {
                                       "type": "object", "required": ["id"],
                                       "properties": {"id": {"type": "string"},
                                                      "shortDescription": {"$ref": "#/$defs/message"},
                                                      "defaultConfiguration": {"type": "object", "properties": {
                                                          "level": {"$ref": "#/$defs/level"}}}}}}}}}},
                "results": {"type": "array", "items": {
                    "type": "object", "required": ["message"],
                    "properties": {
                        "ruleId": {"type": "string"}, "level": {"$ref": "#/$defs/level"},
                        "message": {"$ref": "#/$defs/message"},
                        "locations": {"type": "array", "items": {"type": "object", "properties": {
                            "physicalLocation": {"type": "object", "properties": {
                                "artifactLocation": {"type": "object", "properties": {"uri": {"type": "string"}}},
                                "region": {"type": "object", "properties": {
                                    "startLine": {"type": "integer", "minimum": 1}}}}},
                            "logicalLocations": {"type": "array", "items": {"type": "object"}}}}}}}},
                "invocations": {"type": "array", "items": {"type": "object",
                                                           "required": ["executionSuccessful"]}},
            },
        }},
    },
    "$defs": {
        "level": {"enum": ["none", "note", "warning", "error"]},
        "message": {"type": "object", "anyOf": [{"required": ["text"]}, {"required": ["id"]}],
                    "properties": {"text": {"type": "string"}}},
    },
}


def sample_report() -> SecurityReport:
    report = SecurityReport(env="sit", api_url="http://127.0.0.1:1", checks=["authz", "storage", "infra"])
    report.results = [
        TestResult("authz", "DELETE /v1.0/campaigns/{campaign_id} [campaigns-viewer, valid]", "failed", "high",
                   "expected 403, got 204", "DELETE /v1.0/campaigns/{campaign_id}",
                   details={"expected": 403, "actual": 204}),
        TestResult("authz", "GET /v1.0/campaigns [anonymous, no-token]", "passed", "high", "", "GET /v1.0/campaigns"),
        TestResult("storage", "bucket policy requires TLS", "failed", "medium", "no bucket policy", "bucket"),
        TestResult("infra", "checkov CKV_AWS_1 [aws_s3_bucket.x]", "failed", "low", "title", "aws_s3_bucket.x",
                   file="campaigns_lambda/terraform/s3.tf", line=12),
        TestResult("infra", "trivy over the Terraform configuration", "skipped", "high", "trivy is not installed"),
    ]
    return report


def test_the_verdict_fails_on_a_high_finding_only():
    report = sample_report()
    assert not report.ok and [r.severity for r in report.blocking] == ["high"]
    assert report.counts() == {"passed": 1, "failed": 3, "skipped": 1}
    assert report.findings_by_severity() == {"critical": 0, "high": 1, "medium": 1, "low": 1}
    report.results = report.results[1:]
    assert report.ok and report.to_dict()["verdict"] == "pass"
    assert not SecurityReport(env="sit", api_url="x").ok, "a run that tested nothing does not pass"


def test_junit_has_one_suite_per_check_and_one_case_per_test():
    root = ET.fromstring(to_junit(sample_report()))
    assert root.tag == "testsuites" and root.get("tests") == "5" and root.get("failures") == "3"
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert list(suites) == ["security.authz", "security.storage", "security.infra"]
    authz = suites["security.authz"]
    assert authz.get("tests") == "2" and authz.get("failures") == "1"
    failed = authz.find("testcase[@name='DELETE /v1.0/campaigns/{campaign_id} [campaigns-viewer, valid]']/failure")
    assert failed.get("type") == "high" and failed.get("message") == "expected 403, got 204"
    assert "actual: 204" in failed.text
    assert suites["security.infra"].find("testcase/skipped").get("message") == "trivy is not installed"


def test_sarif_is_a_valid_2_1_0_log_with_one_result_per_finding():
    log = to_sarif(sample_report(), tool_version="0.1.0")
    jsonschema.validate(log, SARIF_REQUIRED)
    run = log["runs"][0]
    assert [r["level"] for r in run["results"]] == ["error", "warning", "note"]
    rule_ids = {rule["id"] for rule in run["tool"]["driver"]["rules"]}
    assert {r["ruleId"] for r in run["results"]} <= rule_ids
    first = run["results"][0]
    assert first["properties"]["test"] == "DELETE /v1.0/campaigns/{campaign_id} [campaigns-viewer, valid]"
    assert first["locations"][0]["logicalLocations"][0]["fullyQualifiedName"].startswith("DELETE ")
    physical = run["results"][2]["locations"][0]["physicalLocation"]
    assert physical == {"artifactLocation": {"uri": "campaigns_lambda/terraform/s3.tf"}, "region": {"startLine": 12}}
    json.dumps(log)  # serialisable as is


def test_sarif_shape_check_can_fail():
    log = to_sarif(sample_report())
    log["runs"][0]["results"][0]["level"] = "high"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(log, SARIF_REQUIRED)


def test_log_sampling_finds_tokens_jwts_bodies_and_the_injection_marker():
    jwt_text = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJl"
    messages = [
        '{"level":"INFO","message":"request completed","status_code":200}',
        f'{{"message":"auth","authorization":"Bearer {jwt_text}"}}',
        '{"message":"event","body":"{\\"name\\": \\"x\\"}"}',
        "created sec-check-0123456789 campaign",
    ]
    hits = scan_log_events(messages, markers=("sec-check-0123456789",))
    assert hits == {"bearer token": 1, "JWT": 1, "request body": 1, "request body (injection marker)": 1}
    assert scan_log_events(messages[:1]) == {}


def test_a_tls_only_policy_denies_every_principal_without_secure_transport():
    deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    assert denies_insecure_transport({"Statement": [deny]})
    assert denies_insecure_transport({"Statement": {**deny, "Principal": {"AWS": "*"}}})
    assert not denies_insecure_transport({"Statement": [{**deny, "Effect": "Allow"}]})
    assert not denies_insecure_transport({"Statement": [{**deny, "Principal": {"AWS": "arn:aws:iam::1:root"}}]})
    assert not denies_insecure_transport({"Statement": [{**deny, "Condition": {}}]})


def test_snapshots_compare_everything_but_the_checks_own_items():
    before = {"a": "1", "b": "2", "c": "3"}
    after = {"a": "1", "b": "changed", "own": "x", "new": "4"}
    assert compare_snapshots(before, after, {"own"}) == {"added": ["new"], "removed": ["c"], "modified": ["b"]}
    assert compare_snapshots(before, {**before, "own": "x"}, {"own"}) == {"added": [], "removed": [], "modified": []}


def _scenario(label: str, *checks: tuple[str, str]) -> str:
    entries = [{"name": n, "status": s, **({"failure_info": {"failure": {"title": "Server error"},
                                                             "code_sample": "curl -X GET x"}}
                                           if s == "failure" else {})} for n, s in checks]
    return json.dumps({"ScenarioFinished": {"status": "success", "recorder": {"label": label,
                                                                             "checks": {"c1": entries}}}})


def test_schemathesis_events_become_one_test_per_operation_and_check():
    text = "\n".join([
        json.dumps({"Initialize": {"schemathesis_version": "4"}}),
        _scenario("GET /v1.0/campaigns", ("not_a_server_error", "success"), ("ignored_auth", "success")),
        _scenario("GET /v1.0/campaigns", ("not_a_server_error", "failure")),
        "not json",
    ])
    operations = parse_ndjson(text)
    assert operations["GET /v1.0/campaigns"]["checks"]["not_a_server_error"]["passed"] == 1
    assert operations["GET /v1.0/campaigns"]["checks"]["not_a_server_error"]["failed"] == 1
    results = {r.name: r for r in results_from(operations, ["GET /v1.0/campaigns", "POST /v1.0/campaigns"])}
    failed = results["not_a_server_error [GET /v1.0/campaigns]"]
    assert failed.status == "failed" and failed.severity == "high" and "Server error" in failed.message
    assert results["ignored_auth [GET /v1.0/campaigns]"].status == "passed"
    assert results["ignored_auth [POST /v1.0/campaigns]"].status == "skipped"


def test_zap_alerts_become_findings_by_risk():
    data = {"site": [{"@name": "http://api", "alerts": [
        {"alert": "SQL Injection", "pluginid": "40018", "riskcode": "3", "riskdesc": "High (Medium)",
         "instances": [{"uri": "http://api/v1.0/campaigns"}]},
        {"alert": "X-Content-Type-Options Header Missing", "pluginid": "10021", "riskcode": "1", "instances": []},
    ]}]}
    results = zap_results(data)
    assert [(r.name, r.severity, r.status) for r in results] == [
        ("SQL Injection [40018]", "high", "failed"), ("X-Content-Type-Options Header Missing [10021]", "low", "failed")]
    assert zap_results({"site": []})[0].status == "passed"
