"""``action: integration``: the project's integration test suite against the environment, as a pipeline step.

The suite is the service's own (``tests/integration/test_campaigns_api.py`` in the checkout, the runbook's
``pytest test_campaigns_api.py --env=sit``); the step runs it with pytest in a child process against the
environment's API URL with the smoke tests' bearer token, keeps its JUnit report as evidence, and fails on any
failed test. Skipped tests are reported with their reasons (the suite skips what this environment cannot show).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promoter.engine.pipeline import Probe, StepContext, StepOutcome

SUITE = Path("tests") / "integration" / "test_campaigns_api.py"
TIMEOUT_SECONDS = 900


@dataclass(frozen=True)
class SuiteResult:
    tests: int
    failures: int
    errors: int
    skipped: int
    seconds: float
    failed: list[str] = field(default_factory=list)
    skip_reasons: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failures == 0 and self.errors == 0 and self.tests > self.skipped

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "tests": self.tests, "failures": self.failures, "errors": self.errors,
                "skipped": self.skipped, "seconds": round(self.seconds, 2), "failed": self.failed,
                "skip_reasons": self.skip_reasons}


def parse_junit(xml_text: str, seconds: float) -> SuiteResult:
    """Counts, failed test names and skip reasons from pytest's JUnit XML (pure)."""
    root = ET.fromstring(xml_text)
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests = failures = errors = skipped = 0
    failed: list[str] = []
    reasons: list[str] = []
    for suite in suites:
        for case in suite.iter("testcase"):
            tests += 1
            name = f"{case.get('classname')}::{case.get('name')}"
            if case.find("failure") is not None:
                failures += 1
                failed.append(f"{name}: {(case.find('failure').get('message') or '')[:300]}")  # type: ignore[union-attr]
            elif case.find("error") is not None:
                errors += 1
                failed.append(f"{name}: {(case.find('error').get('message') or '')[:300]}")  # type: ignore[union-attr]
            elif case.find("skipped") is not None:
                skipped += 1
                reason = case.find("skipped").get("message") or ""  # type: ignore[union-attr]
                if reason and reason not in reasons:
                    reasons.append(reason)
    return SuiteResult(tests, failures, errors, skipped, seconds, failed, reasons)


class IntegrationStep:
    def __init__(self, wiring: Any) -> None:
        self.w = wiring

    def _suite(self, ctx: StepContext) -> Path:
        return Path(ctx.settings.repo or Path.cwd()) / SUITE

    def probe(self, ctx: StepContext) -> Probe:
        return Probe("run", f"the integration suite {SUITE} against {ctx.env}")

    def run(self, ctx: StepContext) -> StepOutcome:
        from promoter.engine.steps import SmokeStep

        suite = self._suite(ctx)
        if not suite.is_file():
            return StepOutcome("failed", f"the checkout has no integration suite at {suite}")
        if importlib.util.find_spec("pytest") is None:
            return StepOutcome("failed", "the integration suite needs pytest, which is not installed with promoter "
                               "here: pip install 'promoter[validation]'")
        url = SmokeStep(self.w)._url(ctx)
        env = dict(os.environ)
        for key, value in (self.w.suite_env.get(ctx.env) or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        token = self.w.tokens.get(ctx.env)
        if token and not env.get("PROMOTER_TOKEN_ADMIN"):
            env["PROMOTER_TOKEN_ADMIN"] = token
        with tempfile.TemporaryDirectory(prefix="promoter-integration-") as tmp:
            junit = Path(tmp) / "integration-junit.xml"
            command = [sys.executable, "-m", "pytest", str(suite), f"--env={ctx.env}", f"--api-url={url}",
                       f"--junitxml={junit}", "-q", "-p", "no:cacheprovider", "-o", "addopts="]
            ctx.note(f"integration suite against {url}")
            started = time.monotonic()
            try:
                proc = subprocess.run(command, cwd=suite.parents[2], env=env, capture_output=True, text=True,
                                      timeout=TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                return StepOutcome("failed", f"the integration suite ran longer than {TIMEOUT_SECONDS} s")
            seconds = time.monotonic() - started
            if not junit.is_file():
                return StepOutcome("failed", f"the integration suite did not run (exit {proc.returncode}): "
                                   + (proc.stderr or proc.stdout)[-600:], files={"integration.log": proc.stdout
                                                                                + proc.stderr})
            xml_text = junit.read_text(encoding="utf-8")
        result = parse_junit(xml_text, seconds)
        files = {"integration-junit.xml": xml_text, "integration.json": result.to_dict(),
                 "integration.log": proc.stdout[-200_000:]}
        ctx.ledger.append(ctx.env, "integration", api_url=url, pipeline_id=ctx.pipeline_id,
                          artifact_sha256=ctx.artifact.sha256, release=ctx.artifact.release, **result.to_dict())
        ran = result.tests - result.skipped
        summary = (f"{ran - result.failures - result.errors}/{ran} integration tests passed against {url} in "
                   f"{seconds:.1f} s" + (f", {result.skipped} skipped" if result.skipped else ""))
        if not result.ok:
            why = "; ".join(result.failed[:5]) or "no test ran"
            return StepOutcome("failed", f"{summary}: {why}", result.to_dict(), files=files)
        return StepOutcome("passed", summary, result.to_dict(), files=files)
