"""``promoter security``: the runbook's security week as one run of named tests, in stages:

1. the route table and its permissions, read from the service in the checkout; the OpenAPI document checked
   against it;
2. the authorization matrix (every route x every group and a user in no group x each token variant);
3. injection and stored XSS, with the table snapshotted before and after;
4. fuzzing from the OpenAPI document with schemathesis (bounded in examples and time), and what it created removed;
5. transport and storage (table SSE, the bucket's encryption, public access block and TLS-only policy, the
   function's logs sampled for secrets);
6. the Terraform scanners (checkov, trivy) where installed, else skipped with the reason;
7. OWASP ZAP's API scan in Docker, when asked.

Every stage runs even when an earlier one found something, so one report says everything; the verdict fails on
any high or critical finding. The reports (JUnit XML, SARIF 2.1.0, JSON) are written to the report directory.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from promoter.engine.security import fuzz, injection, matrix, openapi, storage
from promoter.engine.security.report import SecurityReport, TestResult, to_junit, to_sarif
from promoter.engine.security.routes import RouteTable, load_route_table
from promoter.engine.security.tokens import TokenSource
from promoter.plan.models import Plan

ADMIN = "campaigns-admin"
REPORT_FILES = ("security-junit.xml", "security.sarif.json", "security.json")
_SCANNER_SEVERITY = {"CRITICAL": "critical", "HIGH": "high", "MEDIUM": "medium", "LOW": "low"}


@dataclass
class SecuritySettings:
    plan: Plan
    env: str
    repo: Path
    api_url: str
    report_dir: Path
    max_examples: int | None = None  # None: the plan's security.fuzz_max_examples
    max_seconds: float | None = None  # None: the plan's security.fuzz_max_seconds
    zap: bool = False
    admin: str = ADMIN  # the principal whose token injection and fuzzing use


class _Sender:
    """``send(method, path, headers=, json_body=)`` over the project's HTTP client; a fixed token when given."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        from promoter.adapters.http import HttpClient

        self.client = HttpClient(base_url, token=token, timeout=20)

    def __call__(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                 json_body: Any = None) -> Any:
        return self.client.request(method, path, json_body=json_body, headers=headers, auth=True)

    def close(self) -> None:
        self.client.close()


def _timed(results: list[TestResult], started: float) -> list[TestResult]:
    if not results:
        return results
    share = (time.perf_counter() - started) / len(results)
    from dataclasses import replace

    return [r if r.duration_s else replace(r, duration_s=share) for r in results]


def _scan_table(ddb: Any, table: str) -> Callable[[], list[dict[str, Any]]]:
    def scan() -> list[dict[str, Any]]:
        items = []
        for page in ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
            items += page.get("Items", [])
        return [{k: _plain(v) for k, v in item.items()} for item in items]

    return scan


def _plain(value: dict[str, Any]) -> Any:
    (kind, inner), = value.items()
    if kind == "M":
        return {k: _plain(v) for k, v in inner.items()}
    if kind == "L":
        return [_plain(v) for v in inner]
    return inner


def document_results(doc: dict[str, Any], table: RouteTable, where: str) -> TestResult:
    problems = openapi.mismatches(doc, table, {})
    return TestResult("openapi", "document matches the route table", "failed" if problems else "passed", "medium",
                      "; ".join(problems), where, details={"routes": len(table.routes)})


def infra_scan(settings: SecuritySettings, progress: Callable[[str], None]) -> list[TestResult]:
    from promoter.adapters.scanners import INSTALL_HINT, CheckovScanner, TrivyScanner, find_scanner
    from promoter.errors import ConfigurationError

    source = settings.repo / settings.plan.terraform.directory
    results = []
    for name, klass in (("checkov", CheckovScanner), ("trivy", TrivyScanner)):
        binary = find_scanner(name, settings.repo)
        test = f"{name} over the Terraform configuration"
        if binary is None:
            results.append(TestResult("infra", test, "skipped", "high",
                                      f"{name} is not installed in this checkout; {INSTALL_HINT}"))
            continue
        if not source.is_dir():
            results.append(TestResult("infra", test, "skipped", "high", f"no Terraform configuration in {source}"))
            continue
        progress(f"{name} over {source}")
        report = settings.report_dir / f"{name}-configuration.json"
        try:
            found = klass(binary).scan(source, report, plan=False)
        except ConfigurationError as exc:
            results.append(TestResult("infra", test, "failed", "high", exc.message))
            continue
        results.append(TestResult("infra", test, "passed", "high", f"{len(found)} findings"))
        for f in found:
            severity = _SCANNER_SEVERITY.get(str(f.get("severity") or "").upper(), "medium")
            results.append(TestResult("infra", f"{name} {f['check_id']} [{f.get('resource', '')}]", "failed",
                                      severity, f.get("title", ""), f.get("resource") or None,
                                      file=str(Path(settings.plan.terraform.directory) / f.get("file", "")),
                                      line=int(f.get("line") or 0)))
    return results


def _remove_fuzz_leftovers(before: set[str], scan: Callable[[], list[dict[str, Any]]], subject: str,
                           send: Callable[..., Any], base_path: str) -> TestResult:
    leftovers = [str(i.get("id")) for i in scan() if str(i.get("id")) not in before and i.get("created_by") == subject]
    failed = [i for i in leftovers
              if send("DELETE", f"{base_path}/{quote(i, safe='')}").status not in (204, 404)]
    return TestResult(fuzz.CHECK, "fuzzing's own items deleted", "failed" if failed else "passed", "medium",
                      f"could not delete {failed[:5]}" if failed else "", "table",
                      details={"deleted": len(leftovers) - len(failed)})


def run_security(settings: SecuritySettings, tokens: TokenSource, aws: Any,
                 progress: Callable[[str], None] = lambda _m: None) -> SecurityReport:
    """Run every stage against ``settings.api_url`` with ``tokens``; ``aws`` is the environment's session
    factory (``.client(name)``)."""
    plan, env = settings.plan, settings.env
    if settings.zap:
        fuzz.require_docker()  # before anything runs: --zap without Docker is refused, not half done
    names = plan.names(env)
    base = plan.service.base_path.rstrip("/")
    settings.report_dir.mkdir(parents=True, exist_ok=True)
    report = SecurityReport(env=env, api_url=settings.api_url)
    started_run = time.perf_counter()

    def stage(name: str, fn: Callable[[], list[TestResult]]) -> None:
        report.checks.append(name)
        started = time.perf_counter()
        report.results.extend(_timed(fn(), started))

    table = load_route_table(settings.repo, plan.service.handler)
    doc_path = settings.repo / plan.security.openapi
    doc = openapi.load_document(doc_path)
    stage("openapi", lambda: [document_results(doc, table, plan.security.openapi)])

    anonymous = _Sender(settings.api_url)
    admin = _Sender(settings.api_url, tokens.token(settings.admin))
    try:
        stage("authz", lambda: matrix.run_matrix(table, anonymous, tokens, progress))
        ddb = aws.client("dynamodb")
        scan = _scan_table(ddb, names.table)
        marker = f"sec-check-{uuid.uuid4().hex[:10]}"
        stage("injection", lambda: injection.run_injection(admin, base, scan, names.table_partition_key,
                                                           progress, marker=marker))

        def fuzzing() -> list[TestResult]:
            before = {str(i.get("id")) for i in scan()}
            from promoter.engine.security.tokens import parts

            subject = parts(tokens.token(settings.admin))[1].get("sub")
            try:
                return fuzz.run_schemathesis(
                    doc_path, settings.api_url, tokens.token(settings.admin), [r.key for r in table.routes],
                    max_examples=settings.max_examples or plan.security.fuzz_max_examples,
                    max_time=settings.max_seconds or plan.security.fuzz_max_seconds,
                    report_dir=settings.report_dir / "schemathesis", progress=progress)
            finally:
                leftovers = _remove_fuzz_leftovers(before, scan, subject, admin, base)
                report.results.append(leftovers)

        stage("fuzz", fuzzing)

        def transport() -> list[TestResult]:
            progress("transport and storage: table, bucket, logs")
            found = [storage.table_encryption(ddb, names.table)]
            owner = next((d.owner for d in plan.dependencies if d.resource == "templates_bucket"), None)
            found += storage.bucket_checks(aws.client("s3"), names.templates_bucket, owner)
            found.append(storage.log_sample(aws.client("logs"), names.log_group,
                                            minutes=plan.security.log_sample_minutes,
                                            limit=plan.security.log_sample_events, markers=(marker,)))
            return found

        stage("storage", transport)
        stage("infra", lambda: infra_scan(settings, progress))
        if settings.zap:
            stage("zap", lambda: fuzz.run_zap(doc_path, settings.api_url, tokens.token(settings.admin),
                                              settings.report_dir, image=plan.security.zap_image, progress=progress))
    finally:
        anonymous.close()
        admin.close()
    report.duration_s = time.perf_counter() - started_run
    report.extra = {"authorization": matrix.enforcement(report.results)}
    write_reports(report, settings.report_dir)
    return report


def write_reports(report: SecurityReport, directory: Path) -> dict[str, Path]:
    from promoter import __version__

    directory.mkdir(parents=True, exist_ok=True)
    paths = {name: directory / name for name in REPORT_FILES}
    paths["security-junit.xml"].write_text(to_junit(report), encoding="utf-8")
    paths["security.sarif.json"].write_text(json.dumps(to_sarif(report, tool_version=__version__), indent=2),
                                            encoding="utf-8")
    paths["security.json"].write_text(json.dumps(report.to_dict(), indent=2, default=str), encoding="utf-8")
    return paths
