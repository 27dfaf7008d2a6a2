"""The preflight machinery: checks, their results, the context they run in, and the concurrent runner.

A :class:`Check` is an id (``group.name``), a title, a severity and a function that takes a
:class:`PreflightContext` and returns a :class:`Finding`. :func:`run_checks` runs checks concurrently and turns
every outcome, including an exception raised inside a check, into a :class:`CheckResult`; the
:class:`PreflightReport` says whether any blocker failed.

Statuses::

    PASS     the fact holds
    FAIL     it does not, and the check is a blocker
    WARN     it does not, and the check is a warning (or a blocker found something worth a look)
    MANUAL   no machine can check it; shown with how to record it
    SKIP     does not apply to this environment or this run
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from promoter.errors import PromoterError, UsageError
from promoter.plan.models import Environment, Plan, ResolvedNames


class Severity(StrEnum):
    BLOCKER = "blocker"
    WARNING = "warning"


class Status(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    WARN = "WARN"
    MANUAL = "MANUAL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class Finding:
    """What a check function found. ``kind`` is pass, fail, warn, skip or manual; ``fail`` becomes FAIL for a
    blocker and WARN for a warning."""

    kind: str
    evidence: str
    remedy: str | None = None
    record: dict[str, Any] | None = None


def passed(evidence: str) -> Finding:
    return Finding("pass", evidence)


def failed(evidence: str, remedy: str | None = None) -> Finding:
    return Finding("fail", evidence, remedy)


def warned(evidence: str, remedy: str | None = None) -> Finding:
    return Finding("warn", evidence, remedy)


def skipped(evidence: str) -> Finding:
    return Finding("skip", evidence)


def manual(evidence: str, remedy: str | None = None, record: dict[str, Any] | None = None) -> Finding:
    return Finding("manual", evidence, remedy, record)


class AwsClients(Protocol):
    """The port preflight needs from the AWS adapter (``AwsSessionFactory`` fits it)."""

    def client(self, service: str, region: str | None = None, **config: Any) -> Any: ...


class WallClock(Protocol):
    """Calendar time, for certificate expiry and record timestamps."""

    def now(self) -> datetime: ...


class SystemWallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ApprovalSource(Protocol):
    """Where recorded approvals come from (``promoter.engine.ledger.Ledger`` fits it)."""

    def records(self, env: str, *, kind: str | None = None, run_id: str | None = None) -> list[dict[str, Any]]: ...


# Preflight only reads; a failing endpoint should show up in seconds, not after the deploy-grade retry budget.
CLIENT_CONFIG = {"retries": {"mode": "standard", "max_attempts": 3}, "connect_timeout": 5, "read_timeout": 20}


@dataclass
class PreflightContext:
    """Everything a check may look at. Clients are created once per (service, region) under a lock, because a
    boto3 session is not safe to share between threads while it creates clients; the clients themselves are."""

    plan: Plan
    env: str
    aws: AwsClients
    clock: WallClock = field(default_factory=SystemWallClock)
    repo: Path = field(default_factory=Path.cwd)
    release: str | None = None
    approvals: ApprovalSource | None = None
    _clients: dict[tuple[str, str | None], Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def spec(self) -> Environment:
        return self.plan.environment(self.env)

    @property
    def names(self) -> ResolvedNames:
        return self.plan.names(self.env)

    @property
    def region(self) -> str:
        return self.spec.region

    def client(self, service: str, region: str | None = None) -> Any:
        key = (service, region)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self.aws.client(service, region=region, **CLIENT_CONFIG)
            return self._clients[key]


CheckFunction = Callable[[PreflightContext], Finding]


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    severity: Severity
    run: CheckFunction
    remedy: str = ""

    @property
    def group(self) -> str:
        return self.id.split(".", 1)[0]


@dataclass(frozen=True)
class CheckResult:
    id: str
    title: str
    severity: Severity
    status: Status
    evidence: str
    remedy: str | None
    duration_ms: int
    record: dict[str, Any] | None = None

    @property
    def group(self) -> str:
        return self.id.split(".", 1)[0]

    @property
    def blocks(self) -> bool:
        return self.status is Status.FAIL and self.severity is Severity.BLOCKER

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(severity=str(self.severity), status=str(self.status), group=self.group)
        return data


@dataclass(frozen=True)
class PreflightReport:
    env: str
    account_id: str
    region: str
    results: tuple[CheckResult, ...]
    duration_ms: int

    @property
    def ok(self) -> bool:
        return not any(r.blocks for r in self.results)

    @property
    def blockers(self) -> list[CheckResult]:
        return [r for r in self.results if r.blocks]

    def counts(self) -> dict[str, int]:
        return {str(s): sum(1 for r in self.results if r.status is s) for s in Status}

    def to_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "account_id": self.account_id,
            "region": self.region,
            "ok": self.ok,
            "counts": self.counts(),
            "blockers": [r.id for r in self.blockers],
            "duration_ms": self.duration_ms,
            "results": [r.to_dict() for r in self.results],
        }


def result_of(check: Check, finding: Finding, duration_ms: int) -> CheckResult:
    status = {
        "pass": Status.PASS,
        "warn": Status.WARN,
        "skip": Status.SKIP,
        "manual": Status.MANUAL,
        "fail": Status.FAIL if check.severity is Severity.BLOCKER else Status.WARN,
    }[finding.kind]
    remedy = None
    if status in {Status.FAIL, Status.WARN, Status.MANUAL}:
        remedy = finding.remedy or check.remedy or None
    return CheckResult(check.id, check.title, check.severity, status, finding.evidence, remedy, duration_ms,
                       finding.record)


def _finding_from_exception(check: Check, exc: BaseException, profile: str | None = None) -> Finding:
    """An exception inside a check is a failed check with the reason, never a crash of the run. Credentials that
    cannot be used at all are marked as that cause, so the other AWS checks are not run into the same wall."""
    if isinstance(exc, PromoterError):
        return failed(exc.message, exc.hint)
    if type(exc).__module__.startswith(("botocore", "boto3")):
        from promoter.adapters.aws import CREDENTIAL_CODES, translate

        operation = getattr(exc, "operation_name", None) or "AWS"
        error = translate(exc, operation, profile=profile)
        remedy = error.hint or "check the credentials, the network and the endpoint, then re-run"
        cause = {"cause": "credentials", "code": error.code} if error.code in CREDENTIAL_CODES else None
        return Finding("fail", error.message, remedy, cause)
    return failed(f"the check itself raised {type(exc).__name__}: {exc}", "report this; the check could not run")


def run_one(check: Check, ctx: PreflightContext) -> CheckResult:
    started = time.perf_counter()
    try:
        finding = check.run(ctx)
    except Exception as exc:
        finding = _finding_from_exception(check, exc, ctx.spec.profile)
    return result_of(check, finding, int((time.perf_counter() - started) * 1000))


# The check that proves the credentials work; when it cannot, every check that calls AWS would fail alike.
CREDENTIALS_CHECK = "aws.account"
NO_AWS_CALLS = frozenset({"code", "manual"})
NO_AWS_CHECKS = frozenset({"aws.region"})


def calls_aws(check: Check) -> bool:
    return check.group not in NO_AWS_CALLS and check.id not in NO_AWS_CHECKS


def run_checks(
    checks: Sequence[Check],
    ctx: PreflightContext,
    max_workers: int = 16,
    timeout_seconds: float | None = 120.0,
) -> PreflightReport:
    """Run every check concurrently; results come back in the order of ``checks``.

    A check still running when ``timeout_seconds`` has passed is reported as failed (timed out); its thread is
    left to finish on its own, since a running AWS call cannot be interrupted.
    """
    started = time.perf_counter()
    results: dict[str, CheckResult] = {}
    pending = list(checks)
    gate = next((c for c in checks if c.id == CREDENTIALS_CHECK), None)
    if gate is not None:
        # the credentials first: without them the AWS checks are one cause, reported once, not N times
        results[gate.id] = first = run_one(gate, ctx)
        pending = [c for c in checks if c.id != gate.id]
        if (first.record or {}).get("cause") == "credentials":
            for check in [c for c in pending if calls_aws(c)]:
                results[check.id] = result_of(check, skipped(f"not run: {first.evidence} (see {gate.id})"), 0)
            pending = [c for c in pending if c.id not in results]
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(pending) or 1)),
                                                 thread_name_prefix="preflight")
    try:
        futures = {pool.submit(run_one, check, ctx): check for check in pending}
        done, not_done = concurrent.futures.wait(futures, timeout=timeout_seconds)
        for future in done:
            results[futures[future].id] = future.result()
        for future in not_done:
            check = futures[future]
            future.cancel()
            results[check.id] = result_of(
                check, failed(f"no answer within {timeout_seconds:g}s", "check connectivity to the AWS endpoints"),
                int((timeout_seconds or 0) * 1000),
            )
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    ordered = tuple(results[c.id] for c in checks)
    return PreflightReport(ctx.env, ctx.spec.account_id, ctx.region, ordered,
                           int((time.perf_counter() - started) * 1000))


def select_checks(checks: Iterable[Check], only: Iterable[str] = (), skip: Iterable[str] = ()) -> list[Check]:
    """Keep the checks named by ``only`` (ids or groups; all when empty), minus those named by ``skip``.

    Raises :class:`UsageError` for a name that is neither a check id nor a group."""
    checks = list(checks)
    only, skip = [s.strip() for s in only if s.strip()], [s.strip() for s in skip if s.strip()]
    known = {c.id for c in checks} | {c.group for c in checks}
    unknown = [name for name in [*only, *skip] if name not in known]
    if unknown:
        groups = sorted({c.group for c in checks})
        raise UsageError(
            f"unknown check or group: {', '.join(unknown)}",
            hint=f"groups: {', '.join(groups)}; ids: {', '.join(c.id for c in checks)}",
        )

    def named(check: Check, names: list[str]) -> bool:
        return check.id in names or check.group in names

    return [c for c in checks if (not only or named(c, only)) and not named(c, skip)]
