"""API fuzzing from the service's OpenAPI document with schemathesis (its CLI, in a child process), and OWASP ZAP's
API scan in Docker (``--zap``).

schemathesis runs its examples, coverage and fuzzing phases against the environment's API with an admin token,
bounded by ``max_examples`` per operation and ``max_time`` seconds, with the checks not_a_server_error,
status_code_conformance, response_schema_conformance, negative_data_rejection and ignored_auth. Its JSON run
report is read back: each operation x check becomes one test (failed with the failure's title and a sample
request); its own reports stay beside ours. What the fuzzing created (items of the table that were not there
before and that the fuzzing user created) is deleted afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from promoter.engine.security.report import TestResult
from promoter.errors import ConfigurationError

CHECK = "fuzz"
CHECKS = ("not_a_server_error", "status_code_conformance", "response_schema_conformance",
          "negative_data_rejection", "ignored_auth")
SEVERITY = {"not_a_server_error": "high", "ignored_auth": "high", "negative_data_rejection": "medium",
            "status_code_conformance": "medium", "response_schema_conformance": "medium"}
ZAP_CHECK = "zap"


def schemathesis_argv(document: Path, api_url: str, token: str, *, max_examples: int, max_time: float,
                      report_dir: Path, seed: int | None = None) -> list[str]:
    argv = [sys.executable, "-m", "schemathesis.cli", "run", str(document.resolve()), "--url", api_url,
            "--checks", ",".join(CHECKS), "--max-examples", str(max_examples),
            "--max-time", str(max(1, int(max_time))), "--phases", "examples,coverage,fuzzing",
            "--workers", "2", "--request-timeout", "15", "--suppress-health-check", "all",
            "--header", f"Authorization: Bearer {token}", "--report", "junit,ndjson",
            "--report-dir", str(report_dir.resolve()), "--no-color"]
    if seed is not None:
        argv += ["--seed", str(seed)]
    return argv


def parse_ndjson(text: str) -> dict[str, dict[str, Any]]:
    """``"METHOD /path"`` -> {"checks": {check: {"passed": n, "failed": n, "failures": [...]}}} from the
    ``ScenarioFinished`` events of schemathesis' ndjson report (each names its operation in ``recorder.label`` and
    lists, per generated case, the checks run on it with their status)."""
    operations: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        finished = event.get("ScenarioFinished") if isinstance(event, dict) else None
        recorder = (finished or {}).get("recorder") or {}
        label = recorder.get("label")
        if not isinstance(label, str):
            continue
        for checks in (recorder.get("checks") or {}).values():
            for check in checks or []:
                name = check.get("name")
                if name not in CHECKS:
                    continue
                entry = operations.setdefault(label, {"checks": {}})["checks"].setdefault(
                    name, {"passed": 0, "failed": 0, "failures": []})
                if str(check.get("status", "")).lower() == "success":
                    entry["passed"] += 1
                else:
                    entry["failed"] += 1
                    if len(entry["failures"]) < 3:
                        entry["failures"].append(_failure_text(check.get("failure_info") or check))
    return operations


def _failure_text(failure: Any) -> str:
    if isinstance(failure, dict):
        inner = failure.get("failure") if isinstance(failure.get("failure"), dict) else failure
        parts = [inner.get("title"), inner.get("message"), failure.get("code_sample")]
        text = " - ".join(str(x) for x in parts if x)
        return (text or json.dumps(failure, default=str))[:800]
    return str(failure)[:800]


def results_from(operations: dict[str, dict[str, Any]], routes: list[str]) -> list[TestResult]:
    results = []
    for key in routes:
        checks = (operations.get(key) or {}).get("checks", {})
        for check in CHECKS:
            entry = checks.get(check)
            name = f"{check} [{key}]"
            if not entry:
                results.append(TestResult(CHECK, name, "skipped", SEVERITY[check],
                                          "schemathesis generated no case for this check here", key))
            elif entry["failed"]:
                results.append(TestResult(CHECK, name, "failed", SEVERITY[check],
                                          f"{entry['failed']} of {entry['failed'] + entry['passed']} cases failed: "
                                          + (entry["failures"][0] if entry["failures"] else ""), key,
                                          details={"failures": entry["failures"]}))
            else:
                results.append(TestResult(CHECK, name, "passed", SEVERITY[check], "", key,
                                          details={"cases": entry["passed"]}))
    return results


def run_schemathesis(document: Path, api_url: str, token: str, routes: list[str], *, max_examples: int,
                     max_time: float, report_dir: Path,
                     progress: Callable[[str], None] = lambda _m: None) -> list[TestResult]:
    import importlib.util

    if importlib.util.find_spec("schemathesis") is None:
        return [TestResult(CHECK, "schemathesis run", "failed", "high",
                           "schemathesis is not installed, so the API was not fuzzed: "
                           "pip install 'promoter[security]'")]
    report_dir.mkdir(parents=True, exist_ok=True)
    argv = schemathesis_argv(document, api_url, token, max_examples=max_examples, max_time=max_time,
                             report_dir=report_dir)
    progress(f"fuzzing from {document.name}: schemathesis, {max_examples} examples per operation, "
             f"at most {max_time:g} s")
    started = time.perf_counter()
    try:
        # in the report directory: schemathesis keeps its cache of found failures (.schemathesis/) in its cwd
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
                              timeout=max_time + 120, env={**os.environ, "NO_COLOR": "1"}, cwd=report_dir)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [TestResult(CHECK, "schemathesis run", "failed", "high", f"schemathesis did not finish: {exc}")]
    (report_dir / "schemathesis.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    ndjson = next(iter(sorted(report_dir.glob("*.ndjson"))), None)
    if ndjson is None:
        tail = (proc.stderr or proc.stdout).strip()[-600:]
        return [TestResult(CHECK, "schemathesis run", "failed", "high",
                           f"schemathesis wrote no report (exit {proc.returncode}): {tail}")]
    results = results_from(parse_ndjson(ndjson.read_text(encoding="utf-8")), routes)
    elapsed = time.perf_counter() - started
    progress(f"fuzzing: {sum(r.status == 'failed' for r in results)} failed of {len(results)} "
             f"operation checks in {elapsed:.0f} s")
    return results


def run_zap(document: Path, api_url: str, token: str, report_dir: Path, *, image: str,
            progress: Callable[[str], None] = lambda _m: None) -> list[TestResult]:
    """ZAP's API scan (``zap-api-scan.py -f openapi``) in Docker; its JSON report folded in, one test per alert.
    Without a Docker engine this raises: ZAP cannot run here."""
    docker = require_docker()
    work = report_dir / "zap"
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(document, work / "openapi.yaml")
    progress(f"ZAP API scan ({image}) against {api_url}")
    argv = [docker, "run", "--rm", "--network", "host", "-v", f"{work.resolve()}:/zap/wrk:rw", image,
            "zap-api-scan.py", "-t", "/zap/wrk/openapi.yaml", "-f", "openapi", "-J", "zap.json", "-O", api_url,
            "-z", f"-config replacer.full_list(0).description=auth -config replacer.full_list(0).enabled=true "
                  f"-config replacer.full_list(0).matchtype=REQ_HEADER -config "
                  f"replacer.full_list(0).matchstr=Authorization -config "
                  f"replacer.full_list(0).replacement=Bearer\\ {token}"]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    report = work / "zap.json"
    if not report.exists():
        return [TestResult(ZAP_CHECK, "zap api scan", "failed", "high",
                           f"ZAP wrote no report (exit {proc.returncode}): {(proc.stderr or proc.stdout)[-600:]}")]
    return zap_results(json.loads(report.read_text(encoding="utf-8")))


def require_docker() -> str:
    """The docker binary of an engine that answers; raises :class:`ConfigurationError` otherwise."""
    docker = shutil.which("docker")
    answered = False
    if docker is not None:
        try:
            answered = subprocess.run([docker, "info"], capture_output=True, check=False, timeout=20,
                                      stdin=subprocess.DEVNULL).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            answered = False
    if not answered:
        found = "no docker command on PATH" if docker is None else "`docker info` did not answer"
        raise ConfigurationError(f"--zap needs a Docker engine to run the OWASP ZAP image ({found})",
                                 hint="run it where Docker runs (docker info must answer), or leave out --zap")
    return docker


_ZAP_RISK = {"3": "high", "2": "medium", "1": "low", "0": "low"}


def zap_results(data: dict[str, Any]) -> list[TestResult]:
    results = []
    for site in data.get("site") or []:
        for alert in site.get("alerts") or []:
            severity = _ZAP_RISK.get(str(alert.get("riskcode", "1")), "low")
            instances = alert.get("instances") or []
            where = instances[0].get("uri") if instances else site.get("@name")
            results.append(TestResult(ZAP_CHECK, f"{alert.get('alert', 'alert')} [{alert.get('pluginid', '?')}]",
                                      "failed", severity, f"{len(instances)} instances; {alert.get('riskdesc', '')}",
                                      where))
    if not results:
        results.append(TestResult(ZAP_CHECK, "zap api scan", "passed", "high", "no alerts"))
    return results
