"""The security run's results as data, and its two report formats: JUnit XML (one test case per named test) and
SARIF 2.1.0 (one rule per check, one result per failed test).

A test is ``passed``, ``failed`` (with a severity: critical, high, medium, low) or ``skipped`` (with the reason).
The verdict fails on any failed test of severity high or critical.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal
from xml.etree import ElementTree as ET

Severity = Literal["critical", "high", "medium", "low"]
Status = Literal["passed", "failed", "skipped"]
SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low")
BLOCKING: frozenset[str] = frozenset({"critical", "high"})
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_SARIF_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note"}


@dataclass(frozen=True)
class TestResult:
    """One named test of one check (``authz``, ``injection``, ``fuzz``, ``storage``, ``infra``, ``zap``)."""

    __test__ = False  # a result, not a test class for pytest to collect

    check: str
    name: str
    status: Status
    severity: Severity = "high"  # what a failure of this test weighs
    message: str = ""
    location: str | None = None  # a route (``DELETE /v1.0/campaigns/{campaign_id}``) or a resource
    file: str | None = None  # a source file and line (the Terraform scanners' findings)
    line: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0

    @property
    def finding(self) -> bool:
        return self.status == "failed"

    def to_dict(self) -> dict[str, Any]:
        data = {"check": self.check, "name": self.name, "status": self.status, "severity": self.severity,
                "message": self.message, "location": self.location, "duration_s": round(self.duration_s, 3)}
        if self.file:
            data.update(file=self.file, line=self.line)
        if self.details:
            data["details"] = self.details
        return data


@dataclass
class SecurityReport:
    env: str
    api_url: str
    results: list[TestResult] = field(default_factory=list)
    duration_s: float = 0.0
    checks: list[str] = field(default_factory=list)  # the checks run, in order
    extra: dict[str, Any] = field(default_factory=dict)  # figures of a check (the matrix's enforcement)

    @property
    def findings(self) -> list[TestResult]:
        return [r for r in self.results if r.finding]

    @property
    def blocking(self) -> list[TestResult]:
        return [r for r in self.findings if r.severity in BLOCKING]

    @property
    def ok(self) -> bool:
        return bool(self.results) and not self.blocking

    def counts(self) -> dict[str, int]:
        by_status = Counter(r.status for r in self.results)
        return {s: by_status.get(s, 0) for s in ("passed", "failed", "skipped")}

    def findings_by_severity(self) -> dict[str, int]:
        found = Counter(r.severity for r in self.findings)
        return {s: found.get(s, 0) for s in SEVERITIES}

    def summary(self) -> str:
        c = self.counts()
        sev = ", ".join(f"{n} {s}" for s, n in self.findings_by_severity().items() if n) or "none"
        verdict = "passed" if self.ok else "FAILED"
        return (f"security {verdict}: {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped; "
                f"findings: {sev}")

    def to_dict(self) -> dict[str, Any]:
        return {"env": self.env, "api_url": self.api_url, "ok": self.ok, "verdict": "pass" if self.ok else "fail",
                "counts": self.counts(), "findings": self.findings_by_severity(), "checks": list(self.checks),
                "duration_s": round(self.duration_s, 2), **self.extra, "tests": [r.to_dict() for r in self.results]}


def to_junit(report: SecurityReport) -> str:
    """One ``testsuite`` per check, one ``testcase`` per test; a failure's ``type`` is its severity."""
    suites = ET.Element("testsuites", name=f"promoter.security.{report.env}", tests=str(len(report.results)),
                        failures=str(len(report.findings)), time=f"{report.duration_s:.3f}")
    for check in report.checks or sorted({r.check for r in report.results}):
        mine = [r for r in report.results if r.check == check]
        suite = ET.SubElement(suites, "testsuite", name=f"security.{check}", tests=str(len(mine)),
                              failures=str(sum(r.status == "failed" for r in mine)),
                              skipped=str(sum(r.status == "skipped" for r in mine)),
                              time=f"{sum(r.duration_s for r in mine):.3f}")
        for r in mine:
            case = ET.SubElement(suite, "testcase", classname=f"security.{report.env}.{check}", name=r.name,
                                 time=f"{r.duration_s:.3f}")
            if r.status == "failed":
                failure = ET.SubElement(case, "failure", message=r.message or "failed", type=r.severity)
                failure.text = "\n".join(x for x in (r.location, _detail_text(r.details)) if x)
            elif r.status == "skipped":
                ET.SubElement(case, "skipped", message=r.message or "skipped")
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)


def _detail_text(details: dict[str, Any]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in details.items())


def _rule_id(check: str, name: str) -> str:
    import re

    return f"{check}/" + re.sub(r"[^a-z0-9_.]+", "-", name.split("[", 1)[0].strip().lower()).strip("-")


def to_sarif(report: SecurityReport, *, tool_version: str = "0") -> dict[str, Any]:
    """A SARIF 2.1.0 log: one run of ``promoter-security``; each failed test is a result (level from its severity,
    ``properties.severity`` and ``security-severity`` for code-scanning UIs); passed and skipped tests are not."""
    rules: dict[str, dict[str, Any]] = {}
    results = []
    for r in report.findings:
        rule_id = _rule_id(r.check, r.name)
        rules.setdefault(rule_id, {
            "id": rule_id, "name": rule_id.replace("/", "-"),
            "shortDescription": {"text": f"{r.check}: {r.name.split('[', 1)[0].strip()}"},
            "defaultConfiguration": {"level": _SARIF_LEVEL[r.severity]},
            "properties": {"security-severity": _security_severity(r.severity), "tags": ["security", r.check]},
        })
        result: dict[str, Any] = {
            "ruleId": rule_id, "level": _SARIF_LEVEL[r.severity],
            "message": {"text": f"{r.name}: {r.message}" if r.message else r.name},
            "properties": {"severity": r.severity, "test": r.name, **({"details": r.details} if r.details else {})},
        }
        location: dict[str, Any] = {}
        if r.file:
            location["physicalLocation"] = {"artifactLocation": {"uri": r.file},
                                            **({"region": {"startLine": r.line}} if r.line > 0 else {})}
        if r.location:
            location["logicalLocations"] = [{"fullyQualifiedName": r.location, "kind": "resource"}]
        if location:
            result["locations"] = [location]
        results.append(result)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "promoter-security", "version": tool_version,
                                "rules": list(rules.values())}},
            "results": results,
            "invocations": [{"executionSuccessful": True,
                             "properties": {"env": report.env, "api_url": report.api_url,
                                            "counts": report.counts()}}],
        }],
    }


def _security_severity(severity: str) -> str:
    return {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "2.0"}[severity]
