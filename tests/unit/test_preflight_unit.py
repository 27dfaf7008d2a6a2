"""Preflight on plain data: the decisions, the runner (concurrency, exceptions, timeouts), selection, manual items."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from promoter.engine.ledger import Ledger
from promoter.engine.preflight import (
    Check,
    PreflightContext,
    Severity,
    Status,
    checklist,
    run_checks,
    select_checks,
)
from promoter.engine.preflight import decisions as d
from promoter.engine.preflight.core import failed, passed, warned
from promoter.errors import UsageError
from promoter.plan import load_plan

PLAN = load_plan(Path(__file__).resolve().parents[2] / "plans" / "PROM-CAMP-001.yaml")
NOW = datetime(2026, 2, 1, tzinfo=UTC)


class FixedClock:
    def now(self) -> datetime:
        return NOW


class NoAws:
    def client(self, service, region=None, **config):
        raise AssertionError(f"no AWS call expected, got {service}")


def ctx(env="sit", **options) -> PreflightContext:
    return PreflightContext(plan=PLAN, env=env, aws=options.pop("aws", NoAws()), clock=FixedClock(), **options)


# -- decisions -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("names", "covered"),
    [
        (["api.sit.kimmyai.io"], True),
        (["API.sit.kimmyai.io."], True),
        (["*.sit.kimmyai.io"], True),
        (["*.kimmyai.io"], False),  # a wildcard covers one label only
        (["sit.kimmyai.io"], False),
        (["other.io", "*.sit.kimmyai.io"], True),
        ([], False),
    ],
)
def test_certificate_covers(names, covered):
    assert d.certificate_covers("api.sit.kimmyai.io", names) is covered


def test_wildcard_does_not_cover_the_apex():
    assert not d.certificate_covers("kimmyai.io", ["*.kimmyai.io"])


@pytest.mark.parametrize(("days", "ok"), [(31, True), (30, False), (29, False), (-1, False), (365, True)])
def test_expiry_margin_is_more_than_30_days(days, ok):
    assert d.expiry_ok(NOW + timedelta(days=days), NOW) is ok


def test_certificate_problem_names_the_reason():
    cert = {"DomainName": "api.kimmyai.io", "Status": "ISSUED", "NotAfter": NOW + timedelta(days=90)}
    assert d.certificate_problem(cert, "api.kimmyai.io", NOW) is None
    assert "PENDING_VALIDATION" in d.certificate_problem({**cert, "Status": "PENDING_VALIDATION"}, "api.kimmyai.io",
                                                          NOW)
    assert "12 days left" in d.certificate_problem({**cert, "NotAfter": NOW + timedelta(days=12)}, "api.kimmyai.io",
                                                    NOW)
    assert "does not cover" in d.certificate_problem(cert, "www.kimmyai.io", NOW)


def test_find_zone_prefers_the_most_specific_public_parent():
    zones = [
        {"Name": "kimmyai.io.", "Id": "/hostedzone/A", "Config": {"PrivateZone": False}},
        {"Name": "sit.kimmyai.io.", "Id": "/hostedzone/B", "Config": {"PrivateZone": False}},
        {"Name": "api.sit.kimmyai.io.", "Id": "/hostedzone/C", "Config": {"PrivateZone": True}},
        {"Name": "xsit.kimmyai.io.", "Id": "/hostedzone/D", "Config": {"PrivateZone": False}},
    ]
    assert d.find_zone("api.sit.kimmyai.io", zones)["Id"] == "/hostedzone/B"
    assert d.find_zone("api.kimmyai.io", zones)["Id"] == "/hostedzone/A"
    assert d.find_zone("api.example.com", zones) is None
    assert d.zone_candidates("api.sit.kimmyai.io") == ["api.sit.kimmyai.io", "sit.kimmyai.io", "kimmyai.io"]


def test_key_schema_problem():
    assert d.key_schema_problem([{"AttributeName": "id", "KeyType": "HASH"}], "id") is None
    assert "pk" in d.key_schema_problem([{"AttributeName": "pk", "KeyType": "HASH"}], "id")
    assert "none" in d.key_schema_problem([], "id")


def test_public_access_gaps():
    full = dict.fromkeys(d.PUBLIC_ACCESS_FLAGS, True)
    assert d.public_access_gaps(full) == []
    assert d.public_access_gaps({**full, "BlockPublicPolicy": False}) == ["BlockPublicPolicy"]


def test_trusts_service_reads_dicts_and_encoded_strings():
    doc = {"Statement": [{"Effect": "Allow", "Principal": {"Service": ["lambda.amazonaws.com"]},
                          "Action": "sts:AssumeRole"}]}
    assert d.trusts_service(doc)
    assert d.trusts_service("%7B%22Statement%22%3A%7B%22Effect%22%3A%22Allow%22%2C%22Principal%22%3A%7B%22Service"
                            "%22%3A%22lambda.amazonaws.com%22%7D%2C%22Action%22%3A%22sts%3AAssumeRole%22%7D%7D")
    assert not d.trusts_service({"Statement": [{**doc["Statement"][0], "Effect": "Deny"}]})
    assert not d.trusts_service({"Statement": [{**doc["Statement"][0], "Principal": {"Service": "ec2.amazonaws.com"}}]})


PATTERN = PLAN.code.tag_pattern


@pytest.mark.parametrize(
    ("tags", "requested", "release", "problem"),
    [
        (["v1.0.0"], None, "v1.0.0", None),
        (["v1.0.0-sit", "notes"], None, "v1.0.0-sit", None),
        ([], None, None, "no tag on HEAD"),
        (["latest"], None, None, "no tag on HEAD matches"),
        (["v1.0.0", "v1.0.1"], None, None, "several release tags"),
        (["v1.0.0", "v1.0.1"], "v1.0.1", "v1.0.1", None),
        (["v1.0.0"], "v2.0.0", None, "not tagged v2.0.0"),
        (["release-1"], "release-1", None, "does not match"),
    ],
)
def test_choose_release(tags, requested, release, problem):
    got_release, got_problem = d.choose_release(tags, PATTERN, requested)
    assert got_release == release
    if problem:
        assert problem in got_problem
    else:
        assert got_problem is None


# -- the runner --------------------------------------------------------------------------------------------------
def sleeper(seconds):
    def run(_ctx):
        time.sleep(seconds)
        return passed(f"slept {seconds}")

    return run


def test_checks_run_concurrently():
    # GIVEN five checks that each take 0.3 s
    checks = [Check(f"fake.c{i}", f"fake {i}", Severity.BLOCKER, sleeper(0.3)) for i in range(5)]
    # WHEN they run
    started = time.perf_counter()
    report = run_checks(checks, ctx())
    elapsed = time.perf_counter() - started
    # THEN the wall time is near the slowest, not the sum (1.5 s), and results keep the given order
    assert elapsed < 1.0
    assert [r.id for r in report.results] == [c.id for c in checks]
    assert all(r.status is Status.PASS and r.duration_ms >= 250 for r in report.results)


def test_an_exception_inside_a_check_becomes_a_failed_result():
    def broken(_ctx):
        raise KeyError("Configuration")

    checks = [Check("fake.broken", "broken", Severity.BLOCKER, broken), Check("fake.ok", "ok", Severity.BLOCKER,
                                                                                sleeper(0))]
    report = run_checks(checks, ctx())
    broken_result, ok_result = report.results
    assert broken_result.status is Status.FAIL
    assert "KeyError" in broken_result.evidence
    assert ok_result.status is Status.PASS
    assert not report.ok
    assert [r.id for r in report.blockers] == ["fake.broken"]


def test_a_failing_warning_check_does_not_block():
    checks = [Check("fake.w", "w", Severity.WARNING, lambda _c: failed("meh", "fix it"))]
    report = run_checks(checks, ctx())
    assert report.results[0].status is Status.WARN
    assert report.results[0].remedy == "fix it"
    assert report.ok


def test_warned_finding_on_a_blocker_is_a_warning_and_passes_have_no_remedy():
    checks = [
        Check("fake.a", "a", Severity.BLOCKER, lambda _c: warned("look", "do x")),
        Check("fake.b", "b", Severity.BLOCKER, lambda _c: passed("fine"), remedy="never shown"),
    ]
    report = run_checks(checks, ctx())
    assert [str(r.status) for r in report.results] == ["WARN", "PASS"]
    assert report.results[1].remedy is None
    assert report.ok


def test_a_check_that_hangs_past_the_timeout_fails():
    checks = [Check("fake.slow", "slow", Severity.BLOCKER, sleeper(1.0))]
    started = time.perf_counter()
    report = run_checks(checks, ctx(), timeout_seconds=0.2)
    assert time.perf_counter() - started < 0.9
    assert report.results[0].status is Status.FAIL
    assert "no answer within" in report.results[0].evidence


class DeniedAws:
    def client(self, service, region=None, **config):
        class Client:
            def __getattr__(self, operation):
                def call(**kwargs):
                    raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}},
                                      "DescribeTable")

                return call

        return Client()


def test_access_denied_becomes_a_failed_check_with_the_reason():
    checks = select_checks(checklist(PLAN, "sit"), only=["dynamodb.table"])
    report = run_checks(checks, ctx(aws=DeniedAws()))
    result = report.results[0]
    assert result.status is Status.FAIL
    assert "access denied" in result.evidence and "not allowed" in result.evidence
    assert result.remedy


def test_report_to_dict_shape():
    report = run_checks([Check("fake.a", "a", Severity.BLOCKER, lambda _c: passed("ok"))], ctx("prod"))
    data = report.to_dict()
    assert data["ok"] is True and data["env"] == "prod" and data["account_id"] == "093646564004"
    assert data["counts"]["PASS"] == 1
    assert data["results"][0] == {
        "id": "fake.a", "title": "a", "group": "fake", "severity": "blocker", "status": "PASS", "evidence": "ok",
        "remedy": None, "duration_ms": data["results"][0]["duration_ms"], "record": None,
    }


# -- selection and the checklist ---------------------------------------------------------------------------------
def test_select_by_group_and_id():
    all_checks = checklist(PLAN, "prod")
    no_code = select_checks(all_checks, skip=["code"])
    assert not [c for c in no_code if c.group == "code"] and len(no_code) == len(all_checks) - 3
    only = select_checks(all_checks, only=["dynamodb", "sqs.dlq"])
    assert [c.id for c in only] == ["dynamodb.table", "dynamodb.pitr", "sqs.dlq"]


def test_select_refuses_unknown_names_listing_the_known():
    with pytest.raises(UsageError) as err:
        select_checks(checklist(PLAN, "sit"), only=["dynamo"])
    assert "dynamo" in err.value.message and "dynamodb" in err.value.hint


def test_pitr_severity_follows_require_pitr():
    severity = {
        env: next(c for c in checklist(PLAN, env) if c.id == "dynamodb.pitr").severity for env in PLAN.environments
    }
    assert severity == {"dev": Severity.WARNING, "sit": Severity.WARNING, "prod": Severity.BLOCKER}


def test_manual_items_are_the_gates_and_checks_of_the_env():
    ids = {env: [c.id for c in checklist(PLAN, env) if c.group == "manual"] for env in ("sit", "prod")}
    assert ids["sit"] == ["manual.terraform-approval", "manual.tests-green-in-dev", "manual.changelog"]
    assert ids["prod"] == ["manual.sit-signoff", "manual.change-request", "manual.terraform-approval",
                           "manual.changelog", "manual.security-scan", "manual.rollback-team",
                           "manual.customer-notice"]


def test_manual_items_show_how_to_record_and_ledger_approvals(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.append("prod", "approval", gate="sit-signoff", approver="Tech Lead")
    ledger.append("sit", "approval", gate="change-request", approver="wrong env")
    checks = select_checks(checklist(PLAN, "prod"), only=["manual"])
    report = run_checks(checks, ctx("prod", approvals=ledger))
    results = {r.id: r for r in report.results}
    assert all(r.status is Status.MANUAL for r in report.results)
    assert report.ok  # manual items never fail the run
    signoff = results["manual.sit-signoff"]
    assert signoff.evidence.startswith("recorded: Tech Lead at ")
    assert signoff.record["approver"] == "Tech Lead"
    change = results["manual.change-request"]
    assert change.evidence == "not recorded"
    assert "promoter approve --env prod --gate change-request" in change.remedy
    assert "--env prod" in results["manual.terraform-approval"].remedy  # ENV is filled in
