"""Load and stress tests of an environment's API (the runbook's Phase 2, week 2), measured, judged, reported.

Stages of :func:`run_load`:

1. **schedule**: one step at the plan's ``load.requests_per_second`` for ``load.duration_seconds`` (or the given
   overrides), or with ``stress`` the plan's ``load.stress`` ramp, bounded by its ceiling and time limit;
2. **generate**: :mod:`promoter.engine.load_runner` runs Locust in a child process (gevent's monkey-patching stays
   out of this one) and streams one JSON line per second: requests, failures, status classes, a latency
   histogram; the parent shows them, enforces the deadline, and on Ctrl-C or SIGTERM stops the child, which
   deletes the campaigns it created before it exits;
3. **stress point** (stress only): after each step the step is judged (:func:`judge_step`); the first step that
   breaks stops the ramp, and :func:`failure_point` names the highest rate that held, the first that did not,
   and what broke first (latency, 5xx, throttles, other errors, the rate itself);
4. **the function's view**: CloudWatch over the same window (:func:`lambda_view`): Throttles, Duration p95 per
   executed version, ConcurrentExecutions, and DynamoDB's throttled reads and writes;
5. **judgement** (:func:`judge`, pure): every figure against its threshold from the plan (``sla.p95_ms``,
   ``sla.error_rate_pct``, ``load.min_achieved_pct``, ``load.max_lambda_throttles``, ...);
6. **reports**: the stats history as CSV, the result as JSON, an HTML page with inline SVG charts
   (:func:`write_reports`).

The decisions (histograms, spans, judgement, the failure point) are plain functions on plain data. The engine
never prints: progress goes to an ``on_interval`` callable.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from promoter.errors import ConfigurationError, Interrupted, PromoterError
from promoter.plan.models import Plan

STARTUP_GRACE_S = 60.0  # the child's start (imports, first users) before its first line is overdue
CLEANUP_GRACE_S = 120.0  # deleting what it created after it was told to stop


# -- pure: histograms, spans -------------------------------------------------------------------------------
def merge_hist(hists: Iterable[Mapping[str, int] | Mapping[int, int]]) -> Counter[int]:
    total: Counter[int] = Counter()
    for h in hists:
        for k, v in h.items():
            total[int(k)] += int(v)
    return total


def percentile(hist: Mapping[int, int], pct: float) -> float | None:
    """Nearest-rank percentile of a histogram {bucket ms: count}; None when it is empty."""
    n = sum(hist.values())
    if n == 0:
        return None
    rank = max(1, math.ceil(pct / 100.0 * n))
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return float(bucket)
    return float(max(hist))


@dataclass(frozen=True)
class Span:
    """Figures over consecutive intervals (a step, a run)."""

    seconds: float
    requests: int
    failures: int
    status: dict[str, int]
    hist: dict[int, int]
    target_rps: float
    steady_seconds: float = 0.0  # the intervals after the users' ramp: what the achieved rate is taken over
    steady_requests: int = 0

    @classmethod
    def of(cls, intervals: list[Mapping[str, Any]], target_rps: float | None = None) -> Span:
        status: Counter[str] = Counter()
        for i in intervals:
            status.update(i.get("status") or {})
        targets = [float(i.get("target_rps") or 0) for i in intervals if not i.get("tail")]
        steady = [i for i in intervals if not i.get("tail") and not i.get("ramp")]
        return cls(steady_seconds=sum(float(i.get("seconds") or 0) for i in steady),
                   steady_requests=sum(int(i.get("requests") or 0) for i in steady),
                   seconds=sum(float(i.get("seconds") or 0) for i in intervals if not i.get("tail")),
                   requests=sum(int(i.get("requests") or 0) for i in intervals),
                   failures=sum(int(i.get("failures") or 0) for i in intervals),
                   status=dict(status), hist=dict(merge_hist(i.get("hist") or {} for i in intervals)),
                   target_rps=target_rps if target_rps is not None else (max(targets) if targets else 0.0))

    @property
    def achieved_rps(self) -> float:
        """Requests per second once every user had started (over the whole span when it never settled)."""
        if self.steady_seconds:
            return self.steady_requests / self.steady_seconds
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def error_rate_pct(self) -> float:
        return 100.0 * self.failures / self.requests if self.requests else 0.0

    def p(self, pct: float) -> float | None:
        return percentile(self.hist, pct)

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 2), "requests": self.requests, "failures": self.failures,
                "target_rps": self.target_rps, "achieved_rps": round(self.achieved_rps, 2),
                "error_rate_pct": round(self.error_rate_pct, 4), "p50_ms": self.p(50), "p95_ms": self.p(95),
                "p99_ms": self.p(99), "status": dict(sorted(self.status.items()))}


# -- pure: judgement -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Figure:
    """One measured figure against its threshold: ``ok`` None means not judged (no data, or report only)."""

    name: str
    value: float | None
    threshold: float | None
    comparison: str  # "<=", ">=" or "" (reported only)
    unit: str
    ok: bool | None
    source: str  # "load generator" or "cloudwatch"
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def line(self) -> str:
        value = "no data" if self.value is None else f"{self.value:g} {self.unit}".strip()
        limit = f" (threshold {self.comparison} {self.threshold:g} {self.unit}".rstrip() + ")" \
            if self.threshold is not None and self.comparison else ""
        verdict = {True: "pass", False: "FAIL", None: "not judged"}[self.ok]
        note = f"; {self.note}" if self.note else ""
        return f"{self.name}: {value}{limit}: {verdict}{note}"


def _figure(name: str, value: float | None, threshold: float | None, comparison: str, unit: str, source: str,
            note: str = "") -> Figure:
    if value is None or threshold is None or not comparison:
        ok = None
    elif comparison == "<=":
        ok = value <= threshold
    else:
        ok = value >= threshold
    return Figure(name, None if value is None else round(float(value), 4), threshold, comparison, unit, ok, source,
                  note)


def judge(plan: Plan, span: Span, lambda_data: Mapping[str, Any] | None, cleanup: Mapping[str, Any] | None,
          ) -> list[Figure]:
    """Every figure of a load run against the plan (pure)."""
    load, sla = plan.load, plan.sla
    need = span.target_rps * load.min_achieved_pct / 100.0
    figures = [
        _figure("achieved rate", span.achieved_rps, round(need, 2), ">=", "req/s", "load generator",
                f"target {span.target_rps:g} req/s, {load.min_achieved_pct:g} % of it must be held"),
        _figure("latency p50", span.p(50), None, "", "ms", "load generator"),
        _figure("latency p95", span.p(95), sla.p95_ms, "<=", "ms", "load generator", "sla.p95_ms"),
        _figure("latency p99", span.p(99), None, "", "ms", "load generator"),
        _figure("error rate", span.error_rate_pct, sla.error_rate_pct, "<=", "%", "load generator",
                f"{span.failures} of {span.requests} requests failed; sla.error_rate_pct"),
    ]
    if span.requests == 0:
        figures[0] = Figure("achieved rate", 0.0, round(need, 2), ">=", "req/s", False, "load generator",
                            "no request was answered")
    if lambda_data is not None:
        figures += lambda_figures(plan, lambda_data)
    if cleanup is not None:
        left = len(cleanup.get("left") or [])
        note = f"{cleanup.get('created', 0)} created, {cleanup.get('deleted', 0)} deleted"
        if cleanup.get("swept"):
            note += f", {cleanup['swept']} more found by name and deleted"
        if cleanup.get("sweep_error"):
            note += f"; the sweep by name stopped: {cleanup['sweep_error']}"
        figure = _figure("test data left", left, 0, "<=", "campaigns", "load generator", note)
        if cleanup.get("sweep_error"):  # what it could not list it cannot say is gone
            figure = Figure(figure.name, figure.value, 0, "<=", "campaigns", False, figure.source, note)
        figures.append(figure)
    return figures


def lambda_figures(plan: Plan, data: Mapping[str, Any]) -> list[Figure]:
    """The function's own view in the run's window (CloudWatch), judged (pure)."""
    load, sla = plan.load, plan.sla
    if data.get("error"):
        return [Figure("cloudwatch", None, None, "", "", None, "cloudwatch", f"not read: {data['error']}")]
    figures = [_figure("lambda throttles", data.get("throttles"), load.max_lambda_throttles, "<=", "",
                       "cloudwatch", "load.max_lambda_throttles")]
    for version, v in sorted((data.get("versions") or {}).items()):
        note = f"{int(v.get('invocations') or 0)} invocations"
        figures.append(_figure(f"lambda duration p95 (version {version})", v.get("p95_ms"), sla.p95_ms, "<=", "ms",
                               "cloudwatch", note))
    reserved = data.get("reserved_concurrency")
    figures.append(_figure("lambda concurrent executions (max)", data.get("concurrent_max"), None, "", "",
                           "cloudwatch", f"reserved concurrency {reserved}" if reserved is not None
                           else "no reserved concurrency: the account's limit applies"))
    figures.append(_figure("dynamodb throttled requests", data.get("dynamodb_throttles"),
                           load.max_dynamodb_throttles, "<=", "", "cloudwatch",
                           "read and write throttle events of the table" +
                           ("" if data.get("dynamodb_throttles") is not None else ": no datapoints in the window")))
    if not data.get("complete", True):
        figures.append(Figure("cloudwatch data", None, None, "", "", None, "cloudwatch",
                              "the window's datapoints were still arriving when the wait ended"))
    return figures


def verdict(figures: Iterable[Figure]) -> bool:
    return all(f.ok is not False for f in figures)


# -- pure: the stress point ------------------------------------------------------------------------------------
CAUSES = ("latency", "5xx", "throttles", "errors", "rate")


def step_causes(plan: Plan, span: Span) -> list[str]:
    """Why a stress step did not hold (empty when it held), in :data:`CAUSES` order (pure)."""
    causes = []
    p95 = span.p(95)
    if p95 is not None and p95 > plan.sla.p95_ms:
        causes.append("latency")
    if span.status.get("5xx"):
        causes.append("5xx")
    if span.status.get("429"):
        causes.append("throttles")
    other = span.failures - span.status.get("5xx", 0) - span.status.get("429", 0)
    if other > 0 and (span.error_rate_pct > plan.sla.error_rate_pct or not causes):
        causes.append("errors")
    if span.target_rps and span.achieved_rps < span.target_rps * plan.load.min_achieved_pct / 100.0:
        causes.append("rate")
    if span.requests == 0:
        causes = ["rate"]
    return causes


def first_cause(plan: Plan, intervals: list[Mapping[str, Any]], causes: list[str]) -> str | None:
    """Which of a broken step's causes showed first, interval by interval (pure)."""
    if not causes:
        return None
    seen_hist: list[Mapping[str, Any]] = []
    for i in intervals:
        seen_hist.append(i)
        status = i.get("status") or {}
        for cause in causes:
            if cause == "5xx" and status.get("5xx"):
                return cause
            if cause == "throttles" and status.get("429"):
                return cause
            if cause == "errors" and (int(i.get("failures") or 0) - status.get("5xx", 0) - status.get("429", 0)) > 0:
                return cause
            if cause == "latency":
                p95 = percentile(merge_hist([i.get("hist") or {}]), 95)
                if p95 is not None and p95 > plan.sla.p95_ms:
                    return cause
    return causes[0]


def stress_schedule(plan: Plan, *, start: float | None = None, step: float | None = None,
                    step_seconds: int | None = None, ceiling: float | None = None,
                    time_limit: int | None = None) -> list[dict[str, float]]:
    """The stress ramp: start, start+step, ... up to the ceiling, as many steps as fit in the time limit."""
    s = plan.load.stress
    start = start or s.start_rps
    step = step or s.step_rps
    seconds = step_seconds or s.step_seconds
    ceiling = ceiling or s.ceiling_rps
    limit = time_limit or s.time_limit_seconds
    rates = []
    rate = start
    while rate <= ceiling + 1e-9 and (len(rates) + 1) * seconds <= limit:
        rates.append(round(rate, 3))
        rate += step
    if not rates:
        rates = [round(min(start, ceiling), 3)]
    return [{"rate": r, "seconds": seconds} for r in rates]


def failure_point(steps: list[Mapping[str, Any]]) -> dict[str, Any]:
    """From judged steps in ramp order ({rate, held, causes, first_cause}): the highest rate that held before the
    first that did not, that first one, and what broke first there (pure)."""
    held = None
    for step in steps:
        if step.get("held"):
            held = step["rate"]
            continue
        return {"highest_held_rps": held, "first_broken_rps": step["rate"], "broke_first": step.get("first_cause"),
                "causes": list(step.get("causes") or []), "found": True}
    return {"highest_held_rps": held, "first_broken_rps": None, "broke_first": None, "causes": [],
            "found": False}


# -- settings, result ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadSettings:
    plan: Plan
    env: str
    api_url: str
    token: str
    rate: float | None = None
    duration: float | None = None
    stress: bool = False
    step_seconds: int | None = None
    ceiling: float | None = None
    report_dir: Path | None = None
    metrics: bool = True
    metrics_wait: float | None = None
    python: str = sys.executable
    interval: float = 1.0
    run_id: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" +
                        uuid.uuid4().hex[:6])

    def steps(self) -> list[dict[str, float]]:
        if self.stress:
            return stress_schedule(self.plan, start=self.rate, step_seconds=self.step_seconds, ceiling=self.ceiling)
        return [{"rate": self.rate or self.plan.load.requests_per_second,
                 "seconds": self.duration or self.plan.load.duration_seconds}]

    def time_limit(self) -> float:
        steps = self.steps()
        planned = sum(s["seconds"] for s in steps)
        if self.stress:
            planned = min(planned, self.plan.load.stress.time_limit_seconds)
        return planned + STARTUP_GRACE_S


@dataclass
class LoadResult:
    env: str
    api_url: str
    mode: str
    run_id: str
    started: float
    ended: float = 0.0
    outcome: str = "running"  # passed | failed | interrupted
    intervals: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    kinds: dict[str, Any] = field(default_factory=dict)
    cleanup: dict[str, Any] | None = None
    lambda_data: dict[str, Any] | None = None
    figures: list[Figure] = field(default_factory=list)
    stress: dict[str, Any] | None = None
    reports: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome == "passed"

    def span(self) -> Span:
        return Span.of(self.intervals)

    def to_dict(self, *, history: bool = False) -> dict[str, Any]:
        data = {"env": self.env, "api_url": self.api_url, "mode": self.mode, "run_id": self.run_id,
                "ok": self.ok, "outcome": self.outcome,
                "started": datetime.fromtimestamp(self.started, UTC).isoformat(timespec="seconds"),
                "ended": datetime.fromtimestamp(self.ended or self.started, UTC).isoformat(timespec="seconds"),
                "totals": self.span().to_dict(), "figures": [f.to_dict() for f in self.figures],
                "steps": self.steps, "kinds": self.kinds, "cleanup": self.cleanup, "lambda": self.lambda_data,
                "stress": self.stress, "reports": self.reports, "problems": self.problems}
        if history:
            data["history"] = self.intervals
        return data


# -- the child process -----------------------------------------------------------------------------------------
def child_config(settings: LoadSettings, steps: list[dict[str, float]]) -> dict[str, Any]:
    load = settings.plan.load
    return {"host": settings.api_url, "token": settings.token, "base_path": settings.plan.service.base_path,
            "health_path": settings.plan.service.health_path,
            "prefix": f"{load.data_prefix}{settings.run_id}-", "per_user_rps": load.per_user_rps,
            "mix": load.mix.model_dump(), "steps": steps, "timeout_s": load.request_timeout_seconds,
            "spawn_seconds": load.spawn_seconds, "interval": settings.interval,
            # a create left unanswered may still be written until the function's timeout: sweep again after it
            "settle_s": settings.plan.service.timeout_seconds + 1}


def _require_locust(python: str) -> None:
    import importlib.util

    # found without importing it here: importing Locust would monkey-patch this process
    if python == sys.executable:
        missing = importlib.util.find_spec("locust") is None
    else:
        missing = subprocess.run([python, "-c", "import locust"], capture_output=True).returncode != 0
    if missing:
        raise ConfigurationError(
            "Locust is not installed for the load generator's interpreter " + python,
            hint="pip install 'promoter[load]' (the `load` extra), then run promoter load again")


class _Child:
    """The load generator's process: its stdout lines in a queue, its stderr in a log file."""

    def __init__(self, python: str, config: dict[str, Any], log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = log_path.open("w", encoding="utf-8")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [python, "-m", "promoter.engine.load_runner"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.log, text=True, env=env,
            # its own process group: a terminal's Ctrl-C reaches the parent, which stops the child in order
            start_new_session=True)
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(config))
        self.proc.stdin.close()
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.stopping = False

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            raw = raw.strip()
            if not raw:
                continue
            try:
                self.lines.put(json.loads(raw))
            except ValueError:
                self.lines.put({"type": "noise", "text": raw[:200]})
        self.lines.put(None)

    def stop(self) -> None:
        """Ask it to stop: it stops its users and deletes its data, then exits."""
        if not self.stopping and self.proc.poll() is None:
            self.stopping = True
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)

    def close(self) -> None:
        self.kill()
        self.log.close()


OnLine = Callable[[dict[str, Any], "LoadResult"], None]


def run_load(settings: LoadSettings, *, on_line: OnLine | None = None, report_dir: Path,
             aws: Callable[[], Any] | None = None, clock: Callable[[], float] = time.monotonic) -> LoadResult:
    """One load or stress run: generate, judge, read CloudWatch, write the reports. Raises :class:`Interrupted`
    (after the child removed its data and the reports are written) on Ctrl-C."""
    _require_locust(settings.python)
    steps = settings.steps()
    result = LoadResult(env=settings.env, api_url=settings.api_url, mode="stress" if settings.stress else "load",
                        run_id=settings.run_id, started=time.time())
    child = _Child(settings.python, child_config(settings, steps), report_dir / "load-runner.log")
    with _sigterm_as_interrupt():
        return _supervise(settings, steps, result, child, report_dir, aws, clock, on_line)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a CI job cancelled) stops the run as Ctrl-C does: the child removes its data first."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _supervise(settings: LoadSettings, steps: list[dict[str, float]], result: LoadResult, child: _Child,
               report_dir: Path, aws: Callable[[], Any] | None, clock: Callable[[], float],
               on_line: OnLine | None) -> LoadResult:
    deadline = clock() + settings.time_limit()
    cleanup_deadline: float | None = None
    interrupted = False
    ended = False
    current_step: list[dict[str, Any]] = []
    step_index = 0
    try:
        while not ended:
            try:
                line = child.lines.get(timeout=0.5)
            except queue.Empty:
                line = {"type": "tick"}
            except KeyboardInterrupt:
                interrupted = True
                child.stop()
                cleanup_deadline = clock() + CLEANUP_GRACE_S
                continue
            now = clock()
            if line is None:
                break
            kind = line.get("type")
            if kind == "interval":
                result.intervals.append(line)
                if not line.get("tail"):
                    if int(line.get("step", 0)) != step_index:
                        current_step = []
                        step_index = int(line["step"])
                    current_step.append(line)
                    if settings.stress and _step_done(current_step, steps[step_index], settings.interval):
                        judged = _judge_step(settings.plan, step_index, steps[step_index], current_step)
                        result.steps.append(judged)
                        if not judged["held"]:
                            child.stop()
                            cleanup_deadline = now + CLEANUP_GRACE_S
            elif kind == "summary":
                result.kinds = line.get("kinds") or {}
            elif kind == "cleanup":
                result.cleanup = {k: v for k, v in line.items() if k not in ("type", "ts")}
            elif kind == "error":
                result.problems.append(f"the load generator failed: {line.get('error')}")
            elif kind == "end":
                ended = True
            if on_line is not None and kind not in ("tick",):
                on_line(line, result)
            if now > deadline and not child.stopping:
                result.problems.append(f"the run passed its time limit ({settings.time_limit():.0f} s) and was "
                                       "stopped")
                child.stop()
                cleanup_deadline = now + CLEANUP_GRACE_S
            if cleanup_deadline is not None and now > cleanup_deadline:
                result.problems.append("the load generator did not finish its clean-up in time and was killed; "
                                       f"campaigns named {settings.plan.load.data_prefix}{settings.run_id}-* may "
                                       "be left")
                break
    except KeyboardInterrupt:  # a second Ctrl-C while it cleans up: wait for it still, then stop hard
        interrupted = True
        child.stop()
        _drain(child, result, CLEANUP_GRACE_S)
    finally:
        child.close()
    result.ended = time.time()
    if not ended and not result.problems:
        code = child.proc.returncode
        result.problems.append(f"the load generator exited ({code}) before its run ended; see "
                               f"{report_dir / 'load-runner.log'}")
    if settings.stress and current_step and (not result.steps or result.steps[-1]["step"] != step_index) \
            and _step_done(current_step, steps[step_index], settings.interval):
        result.steps.append(_judge_step(settings.plan, step_index, steps[step_index], current_step))
    if settings.stress:
        result.stress = {**failure_point(result.steps), "schedule": steps,
                         "ceiling_rps": settings.ceiling or settings.plan.load.stress.ceiling_rps}
    if settings.metrics and aws is not None and result.intervals:
        wait = settings.metrics_wait if settings.metrics_wait is not None else settings.plan.load.metrics_wait_seconds
        result.lambda_data = lambda_view(aws(), settings.plan, settings.env, result.started, result.ended,
                                         sent=result.span().requests, wait_s=0 if interrupted else wait)
    result.figures = judge(settings.plan, result.span(), result.lambda_data, result.cleanup)
    if settings.stress:
        # a stress run breaks on purpose: its verdict is the failure point found and the data removed; the
        # function's figures are reported beside it, not judged
        reported = [Figure(f.name, f.value, f.threshold, f.comparison, f.unit, None, f.source,
                           (f.note + "; " if f.note else "") + "reported, not judged, in a stress run")
                    for f in result.figures if f.source == "cloudwatch"]
        result.figures = _stress_figures(result) + reported + [f for f in result.figures
                                                                if f.name == "test data left"]
    if interrupted:
        result.outcome = "interrupted"
    elif result.problems or not verdict(result.figures):
        result.outcome = "failed"
    else:
        result.outcome = "passed"
    result.reports = write_reports(result, settings.plan, report_dir)
    if interrupted:
        prefix = f"{settings.plan.load.data_prefix}{settings.run_id}-"
        if result.cleanup is None:
            removed = f"its clean-up did not report: campaigns named {prefix}* may be left"
        elif result.cleanup.get("left") or result.cleanup.get("sweep_error"):
            removed = (f"its clean-up left {len(result.cleanup.get('left') or [])} campaigns named {prefix}*"
                       + (f" and could not list the rest ({result.cleanup['sweep_error']})"
                          if result.cleanup.get("sweep_error") else ""))
        else:
            removed = "the load generator stopped and removed its test data"
        exc = Interrupted(f"load run {settings.run_id} interrupted; {removed}",
                          hint=f"reports so far in {report_dir}", exit_code=1)
        exc.details = {"load": result.to_dict()}
        raise exc
    return result


def _drain(child: _Child, result: LoadResult, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            line = child.lines.get(timeout=0.5)
        except queue.Empty:
            continue
        except KeyboardInterrupt:
            continue
        if line is None:
            return
        if line.get("type") == "interval":
            result.intervals.append(line)
        elif line.get("type") == "cleanup":
            result.cleanup = {k: v for k, v in line.items() if k not in ("type", "ts")}
        elif line.get("type") == "end":
            return


def _step_done(intervals: list[Mapping[str, Any]], step: Mapping[str, float], interval: float) -> bool:
    return sum(float(i.get("seconds") or 0) for i in intervals) >= float(step["seconds"]) - interval / 2


def _judge_step(plan: Plan, index: int, step: Mapping[str, float], intervals: list[Mapping[str, Any]]
                ) -> dict[str, Any]:
    span = Span.of(intervals, target_rps=float(step["rate"]))
    causes = step_causes(plan, span)
    return {"step": index, "rate": float(step["rate"]), "held": not causes, "causes": causes,
            "first_cause": first_cause(plan, intervals, causes), **span.to_dict()}


def _stress_figures(result: LoadResult) -> list[Figure]:
    point = result.stress or {}
    held, broken = point.get("highest_held_rps"), point.get("first_broken_rps")
    figures = [Figure("highest rate that held", held, None, "", "req/s", None, "load generator"),
               Figure("first rate that did not hold", broken, None, "", "req/s", None, "load generator",
                      f"broke first: {point.get('broke_first')} (all: {', '.join(point.get('causes') or [])})"
                      if broken is not None else "no step broke up to the ceiling and the time limit")]
    return figures


# -- the function's view ---------------------------------------------------------------------------------------
def lambda_view(aws: Any, plan: Plan, env: str, start: float, end: float, *, sent: int, wait_s: float,
                clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
                ) -> dict[str, Any]:
    """CloudWatch over [start, end]: per executed version Invocations, Throttles and Duration p95, the maximum
    ConcurrentExecutions and DynamoDB's throttle events, waiting up to ``wait_s`` for the data to settle."""
    from promoter.adapters.aws import translate
    from promoter.adapters.metrics import CloudWatchMetricSource
    from promoter.engine.canary import Window

    names = plan.names(env)
    try:
        cw = aws.client("cloudwatch")
        lam = aws.client("lambda")
        source = CloudWatchMetricSource(cw, aws.client("sqs"), metrics=plan.metrics, function=names.function,
                                        alias=names.alias, dlq=None, alarm_names=[])
        alias = lam.get_alias(FunctionName=names.function, Name=names.alias)
        versions = [alias["FunctionVersion"], *((alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights")
                                                or {})]
        try:
            reserved = lam.get_function_concurrency(FunctionName=names.function).get("ReservedConcurrentExecutions")
        except Exception:
            reserved = None
        begin = math.floor(start / 60) * 60
        period = 60 * max(1, math.ceil((end - begin) / 60))
        window = Window(start=begin, end=begin + period, period=period, elapsed=end - start)
        give_up = clock() + wait_s
        previous = -1.0
        while True:
            per_version = {v: source.version_metrics(v, window) for v in versions}
            invocations = sum(m.invocations + m.throttles for m in per_version.values())
            settled = invocations > 0 and invocations == previous
            if settled or clock() >= give_up:
                break
            previous = invocations
            sleep(2.0 if invocations else 5.0)
        concurrent = _stat(cw, plan.metrics.lambda_namespace, "ConcurrentExecutions",
                           [{"Name": "FunctionName", "Value": names.function}], window, "Maximum")
        ddb = [_stat(cw, "AWS/DynamoDB", metric, [{"Name": "TableName", "Value": names.table}], window, "Sum")
               for metric in ("ReadThrottleEvents", "WriteThrottleEvents")]
    except PromoterError as exc:
        return {"error": exc.message}
    except Exception as exc:
        return {"error": translate(exc, "read the run's CloudWatch metrics").message}
    return {
        "window": {"start": datetime.fromtimestamp(window.start, UTC).isoformat(timespec="seconds"),
                   "period_s": period},
        "versions": {v: {"invocations": m.invocations, "errors": m.errors, "throttles": m.throttles,
                         "p95_ms": m.p95_ms, "server_errors": m.server_errors} for v, m in per_version.items()},
        "throttles": sum(m.throttles for m in per_version.values()),
        "invocations": sum(m.invocations for m in per_version.values()),
        "concurrent_max": concurrent,
        "reserved_concurrency": reserved,
        "dynamodb_throttles": None if all(d is None for d in ddb) else sum(d or 0 for d in ddb),
        "requests_sent": sent,
        "complete": settled,
    }


def _stat(cw: Any, namespace: str, metric: str, dims: list[dict[str, str]], window: Any, stat: str
          ) -> float | None:
    data = cw.get_metric_statistics(Namespace=namespace, MetricName=metric, Dimensions=dims,
                                    StartTime=datetime.fromtimestamp(window.start, UTC),
                                    EndTime=datetime.fromtimestamp(window.end, UTC), Period=window.period,
                                    Statistics=[stat])
    points = [p[stat] for p in data.get("Datapoints", []) if stat in p]
    if not points:
        return None
    return float(max(points) if stat == "Maximum" else sum(points))


# -- reports ---------------------------------------------------------------------------------------------------
CSV_FIELDS = ("time", "elapsed_s", "step", "target_rps", "users", "requests", "achieved_rps", "failures",
              "error_rate_pct", "p50_ms", "p95_ms", "p99_ms", "status_2xx", "status_4xx", "status_429",
              "status_5xx", "no_answer")


def history_rows(intervals: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for i in intervals:
        span = Span.of([i])
        status = i.get("status") or {}
        seconds = float(i.get("seconds") or 1) or 1.0
        rows.append({"time": datetime.fromtimestamp(float(i.get("ts") or 0), UTC).isoformat(timespec="seconds"),
                     "elapsed_s": i.get("elapsed"), "step": i.get("step"), "target_rps": i.get("target_rps"),
                     "users": i.get("users"), "requests": span.requests,
                     "achieved_rps": round(span.requests / seconds, 2), "failures": span.failures,
                     "error_rate_pct": round(span.error_rate_pct, 3), "p50_ms": span.p(50), "p95_ms": span.p(95),
                     "p99_ms": span.p(99), "status_2xx": status.get("2xx", 0), "status_4xx": status.get("4xx", 0),
                     "status_429": status.get("429", 0), "status_5xx": status.get("5xx", 0),
                     "no_answer": status.get("none", 0)})
    return rows


def write_reports(result: LoadResult, plan: Plan, directory: Path) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    rows = history_rows(result.intervals)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    paths = {"csv": directory / "load-history.csv", "json": directory / "load-result.json",
             "html": directory / "load-report.html"}
    paths["csv"].write_text(buf.getvalue(), encoding="utf-8")
    reports = {k: str(v) for k, v in paths.items()}
    result.reports = reports
    paths["json"].write_text(json.dumps(result.to_dict(history=True), indent=2, sort_keys=True, default=str),
                             encoding="utf-8")
    # the last, partial second after the users stopped is in the CSV, not on the charts
    chart_rows = [r for r, i in zip(rows, result.intervals, strict=True) if not i.get("tail")]
    paths["html"].write_text(render_html(result, plan, chart_rows), encoding="utf-8")
    return reports


def _svg_chart(title: str, rows: list[dict[str, Any]], series: list[tuple[str, str, str]], *,
               limit: float | None = None, limit_label: str = "", unit: str = "") -> str:
    """A line chart as inline SVG: x = elapsed seconds, one polyline per (key, label, colour)."""
    width, height, left, bottom, top, right = 760, 240, 56, 30, 24, 12
    xs = [float(r.get("elapsed_s") or 0) for r in rows] or [0.0]
    values = [float(r[k]) for r in rows for k, _l, _c in series if r.get(k) is not None]
    ymax = max(values + ([limit * 1.1] if limit else []) + [1.0])
    xmax = max(xs[-1], 1.0)

    def px(x: float, y: float) -> str:
        return (f"{left + (width - left - right) * x / xmax:.1f},"
                f"{height - bottom - (height - bottom - top) * y / ymax:.1f}")

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{_esc(title)}"><rect width="100%" height="100%" fill="#fff"/>',
             f'<text x="{left}" y="16" font-size="13" font-weight="bold">{_esc(title)}</text>']
    for frac in (0, 0.25, 0.5, 0.75, 1.0):
        y = height - bottom - (height - bottom - top) * frac
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">'
                     f'{ymax * frac:.0f}{unit}</text>')
    for frac in (0, 0.25, 0.5, 0.75, 1.0):
        x = left + (width - left - right) * frac
        parts.append(f'<text x="{x:.1f}" y="{height - 10}" font-size="10" text-anchor="middle">'
                     f'{xmax * frac:.0f} s</text>')
    if limit:
        parts.append(f'<polyline points="{px(0, limit)} {px(xmax, limit)}" stroke="#c00" stroke-dasharray="5,4" '
                     f'fill="none"/><text x="{width - right}" y="{_y(limit, ymax, height, bottom, top) - 4:.1f}" '
                     f'font-size="10" fill="#c00" text-anchor="end">{_esc(limit_label)}</text>')
    legend_x = left + 200
    for key, label, colour in series:
        points = " ".join(px(float(r.get("elapsed_s") or 0), float(r[key])) for r in rows if r.get(key) is not None)
        if points:
            parts.append(f'<polyline points="{points}" stroke="{colour}" stroke-width="1.5" fill="none"/>')
        parts.append(f'<rect x="{legend_x}" y="8" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{legend_x + 14}" y="17" font-size="11">{_esc(label)}</text>')
        legend_x += 110
    parts.append("</svg>")
    return "".join(parts)


def _y(value: float, ymax: float, height: int, bottom: int, top: int) -> float:
    return height - bottom - (height - bottom - top) * value / ymax


def _esc(text: Any) -> str:
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;"))


def render_html(result: LoadResult, plan: Plan, rows: list[dict[str, Any]]) -> str:
    totals = result.span().to_dict()
    verdict_text = {"passed": "PASSED", "failed": "FAILED", "interrupted": "INTERRUPTED"}.get(result.outcome,
                                                                                           result.outcome)
    figure_rows = "".join(
        f"<tr><td>{_esc(f.name)}</td><td>{'no data' if f.value is None else _esc(f'{f.value:g} {f.unit}')}</td>"
        f"<td>{_esc(f'{f.comparison} {f.threshold:g} {f.unit}') if f.threshold is not None else ''}</td>"
        f"<td class='{ {True: 'ok', False: 'bad', None: 'na'}[f.ok] }'>"
        f"{ {True: 'pass', False: 'FAIL', None: 'not judged'}[f.ok] }</td><td>{_esc(f.source)}</td>"
        f"<td>{_esc(f.note)}</td></tr>" for f in result.figures)
    steps = ""
    if result.steps:
        steps = "<h2>Stress steps</h2><table><tr><th>rate</th><th>achieved</th><th>p95</th><th>errors</th>" \
                "<th>held</th><th>causes</th></tr>" + "".join(
                    f"<tr><td>{s['rate']:g}</td><td>{s['achieved_rps']:g}</td><td>{s['p95_ms']}</td>"
                    f"<td>{s['error_rate_pct']:g} %</td><td>{'yes' if s['held'] else 'no'}</td>"
                    f"<td>{_esc(', '.join(s['causes']))}</td></tr>" for s in result.steps) + "</table>"
        point = result.stress or {}
        steps += (f"<p>Highest rate that held: <b>{point.get('highest_held_rps')}</b> req/s; first that did not: "
                  f"<b>{point.get('first_broken_rps')}</b> req/s; broke first: <b>{_esc(point.get('broke_first'))}"
                  "</b>.</p>")
    kinds = "".join(f"<tr><td>{_esc(k)}</td><td>{v.get('requests')}</td><td>{v.get('failures')}</td>"
                    f"<td>{v.get('p50_ms')}</td><td>{v.get('p95_ms')}</td><td>{v.get('p99_ms')}</td></tr>"
                    for k, v in sorted(result.kinds.items()))
    charts = [
        _svg_chart("Latency (ms) per second", rows, [("p50_ms", "p50", "#1f77b4"), ("p95_ms", "p95", "#ff7f0e"),
                                                      ("p99_ms", "p99", "#9467bd")],
                   limit=plan.sla.p95_ms, limit_label=f"SLA p95 {plan.sla.p95_ms:g} ms"),
        _svg_chart("Rate (req/s)", rows, [("target_rps", "target", "#999"), ("achieved_rps", "achieved", "#2ca02c")]),
        _svg_chart("Failures per second", rows, [("status_5xx", "5xx", "#d62728"), ("status_429", "429", "#e377c2"),
                                                 ("failures", "all failures", "#8c564b")]),
    ]
    problems = "".join(f"<li>{_esc(p)}</li>" for p in result.problems)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Load {result.mode}: {_esc(result.env)} {result.run_id}</title>
<style>body{{font-family:sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse;margin:8px 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}}.ok{{color:#070}}.bad{{color:#b00;
font-weight:bold}}.na{{color:#777}}svg{{display:block;margin:12px 0;border:1px solid #ddd}}</style></head><body>
<h1>Load {result.mode} of {_esc(result.env)}: {verdict_text}</h1>
<p>{_esc(result.api_url)}, run {result.run_id}, {totals['requests']} requests in {totals['seconds']} s
({totals['achieved_rps']} req/s), p95 {totals['p95_ms']} ms, error rate {totals['error_rate_pct']} %.</p>
{'<ul>' + problems + '</ul>' if problems else ''}
<h2>Figures</h2><table><tr><th>figure</th><th>value</th><th>threshold</th><th>verdict</th><th>source</th>
<th>note</th></tr>{figure_rows}</table>
{steps}
{''.join(charts)}
<h2>Requests by kind</h2><table><tr><th>kind</th><th>requests</th><th>failures</th><th>p50 ms</th><th>p95 ms</th>
<th>p99 ms</th></tr>{kinds}</table>
</body></html>
"""


def default_report_dir(home: Path, run_id: str) -> Path:
    return home / "reports" / f"load-{run_id}"


def ledger_fields(result: LoadResult) -> dict[str, Any]:
    """What a ``load`` record in the ledger carries: the verdict and every figure."""
    return {"ok": result.ok, "outcome": result.outcome, "mode": result.mode, "run_id": result.run_id,
            "api_url": result.api_url, "totals": result.span().to_dict(),
            "figures": [f.to_dict() for f in result.figures], "stress": result.stress,
            "cleanup": result.cleanup, "reports": result.reports}


# -- as a pipeline step ----------------------------------------------------------------------------------------
class LoadStep:
    """The ``load`` action of the plan's steps: a load run against the environment's API, judged against the plan.

    ``ctx.settings.load_rate`` / ``load_duration`` (when set) compress it, for a rehearsal. The report files are
    the outcome's evidence; a failed verdict fails the step."""

    def __init__(self, wiring: Any) -> None:
        self.w = wiring

    def _url(self, ctx: Any) -> str:
        from promoter.engine.steps import api_url

        return api_url(self.w, ctx)

    def _settings(self, ctx: Any, url: str, token: str) -> LoadSettings:
        params = ctx.step.model_dump() if hasattr(ctx.step, "model_dump") else {}
        return LoadSettings(plan=ctx.plan, env=ctx.env, api_url=url, token=token,
                            rate=getattr(ctx.settings, "load_rate", None),
                            duration=getattr(ctx.settings, "load_duration", None),
                            stress=bool(params.get("stress", False)))

    def probe(self, ctx: Any) -> Any:
        from promoter.engine.pipeline import Probe

        load = ctx.plan.load
        rate = getattr(ctx.settings, "load_rate", None) or load.requests_per_second
        duration = getattr(ctx.settings, "load_duration", None) or load.duration_seconds
        return Probe("run", f"load test of {self._url(ctx)}: {rate:g} req/s for {duration:g} s, judged against "
                     f"p95 <= {ctx.plan.sla.p95_ms:g} ms and errors <= {ctx.plan.sla.error_rate_pct:g} %")

    def run(self, ctx: Any) -> Any:
        from promoter.engine.ledger import default_home
        from promoter.engine.pipeline import StepOutcome
        from promoter.engine.smoke import resolve_token

        url = self._url(ctx)
        token = self.w.tokens.get(ctx.env) or resolve_token(None, lambda: self.w.aws_for(ctx.env), ctx.plan, ctx.env)
        settings = self._settings(ctx, url, token)
        home = getattr(ctx.ledger, "root", None) or default_home()
        report_dir = default_report_dir(Path(home), settings.run_id)
        ctx.note(f"load: {settings.steps()[0]['rate']:g} req/s against {url}, reports in {report_dir}")
        result = run_load(settings, report_dir=report_dir, aws=lambda: self.w.aws_for(ctx.env))
        ctx.ledger.append(ctx.env, "load", **ledger_fields(result), pipeline_id=ctx.pipeline_id,
                          artifact_sha256=ctx.artifact.sha256, release=ctx.artifact.release)
        files = {Path(p).name: Path(p).read_text(encoding="utf-8") for p in result.reports.values()}
        totals = result.span().to_dict()
        outputs = {"ok": result.ok, "api_url": url, "run_id": result.run_id, **{
            k: totals[k] for k in ("achieved_rps", "p95_ms", "error_rate_pct", "requests")}}
        failed = [f.line() for f in result.figures if f.ok is False] + result.problems
        if not result.ok:
            return StepOutcome("failed", "load test failed: " + " | ".join(failed), outputs, files=files)
        return StepOutcome("passed", f"{totals['requests']} requests at {totals['achieved_rps']:g} req/s, p95 "
                           f"{totals['p95_ms']} ms, error rate {totals['error_rate_pct']:g} %", outputs, files=files)
