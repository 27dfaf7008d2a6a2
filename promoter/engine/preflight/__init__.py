"""``promoter preflight``: the runbook's pre-deployment checklist, every machine-checkable item as a check.

Pipeline: :func:`registry.checklist` builds the checks for an environment from the plan;
:func:`core.select_checks` applies ``--only``/``--skip``; :func:`core.run_checks` runs them concurrently in a
:class:`core.PreflightContext` and returns a :class:`core.PreflightReport` (``.ok`` is false when a blocker
failed). Facts come from AWS (:mod:`.aws_checks`) and git (:mod:`.code_checks`); verdicts from
:mod:`.decisions`; items only a person can confirm are listed by :mod:`.manual` with their ledger records.
"""

from promoter.engine.preflight.core import (
    Check,
    CheckResult,
    Finding,
    PreflightContext,
    PreflightReport,
    Severity,
    Status,
    SystemWallClock,
    run_checks,
    select_checks,
)
from promoter.engine.preflight.registry import checklist

__all__ = [
    "Check",
    "CheckResult",
    "Finding",
    "PreflightContext",
    "PreflightReport",
    "Severity",
    "Status",
    "SystemWallClock",
    "checklist",
    "run_checks",
    "select_checks",
]
