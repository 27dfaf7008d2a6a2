"""After 100 %: watch a release on the plan's schedule, roll it back inside the rollback window, page after it,
and record the soak.

Stages of :func:`watch`:

1. **find** the release: the last deploy run that put a version at 100 % and succeeded (``--release`` picks the
   tag), from the ledger; its 100 % moment starts the schedule. The first watch records ``watch-start`` with the
   schedule it follows, so a restarted watch (or the next ``--once`` of a cron job) continues it;
2. **wait** (foreground only) until the next check is due, on the ports' clock;
3. **check**: read the live version's numbers over the schedule's window since the previous check, ending
   ``data_lag_seconds`` before the check is due, since metrics arrive late (:class:`~promoter.engine.runs.
   MetricSource`, stable ``None``) and the service figures (concurrency, DynamoDB throttling), judge them twice
   with :func:`promoter.engine.canary.judge`: against the rollback thresholds and against the SLA; record a
   ``watch-check`` with every number and both verdicts;
4. **act** (:func:`decide`, the window rule): a rollback trigger inside the rollback window rolls back to the
   release before through :func:`promoter.engine.rollback.rollback_to` (the lock, the RevisionId guard, the
   intent and change records); after the window it pages and never moves traffic; an SLA breach that is not a
   rollback trigger is reported (ledger, output, notification) and nothing else;
5. **soak**: a check that is not green fails the soak; the first check at or past ``soak_minutes`` with every
   check green records ``watch-soak`` passed, which the passport and the PROD success criteria read;
6. **end**: after the last check (``completed``), a rollback, or when the alias no longer serves the watched
   version (``superseded``), ``watch-end`` is recorded.

Watch records carry ``watch_of`` (the deploy run's id) and no ``run_id``, so they never look like an unfinished
deploy. The schedule's arithmetic is pure (:class:`Schedule`, :func:`due_check`, :func:`decide`,
:func:`summary`) and tested with a fake clock; ``time_scale`` divides every duration for rehearsals and tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from promoter.engine import canary as canary_mod
from promoter.engine.backup import parse_time
from promoter.engine.canary import Thresholds, Verdict
from promoter.engine.ledger import Ledger
from promoter.engine.runs import Ports, ReleaseEvent
from promoter.errors import PromoterError, RefusedError, UsageError
from promoter.plan.models import Plan, Watch

Decision = Literal["ok", "report", "page", "rollback"]
EPS = 1e-6


class FiguresReader(Protocol):
    """The service's figures beside the version's numbers: ``max_concurrency``, ``dynamodb_throttled_requests``."""

    def read(self, window: canary_mod.Window) -> dict[str, float | None]: ...


class NotifierLike(Protocol):
    def notify(self, event: str, text: str, **data: Any) -> None: ...


class _Quiet:
    def notify(self, event: str, text: str, **data: Any) -> None:
        return None


# -- the schedule (pure) -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Schedule:
    """When each check is due, in seconds after the release reached 100 %, with the window and the soak."""

    offsets: tuple[float, ...]
    rollback_window: float
    soak: float
    time_scale: float = 1.0
    data_lag: float = 0.0  # each check reads up to this long before it is due

    @classmethod
    def from_plan(cls, watch: Watch, time_scale: float = 1.0) -> Schedule:
        if time_scale <= 0 or not math.isfinite(time_scale):
            raise UsageError(f"--time-scale {time_scale:g}: must be a number above 0")
        offsets: list[float] = []
        start = 0.0
        for period in watch.periods:
            step, until = period.every_minutes * 60, period.until_minutes * 60
            t = start + step
            while t <= until + EPS:
                offsets.append(t)
                t += step
            if not offsets or offsets[-1] < until - EPS:
                offsets.append(until)  # a period that does not divide evenly still checks at its end
            start = until
        scale = 1.0 / time_scale
        return cls(tuple(round(o * scale, 6) for o in offsets), watch.rollback_window_minutes * 60 * scale,
                   watch.soak_minutes * 60 * scale, time_scale, watch.data_lag_seconds * scale)

    def in_window(self, offset: float) -> bool:
        return offset <= self.rollback_window + EPS

    def soak_index(self) -> int:
        """The first check at or past the soak length: the one that can pass it."""
        for i, offset in enumerate(self.offsets):
            if offset >= self.soak - EPS:
                return i
        return len(self.offsets) - 1

    def to_dict(self) -> dict[str, Any]:
        return {"offsets": list(self.offsets), "rollback_window": self.rollback_window, "soak": self.soak,
                "time_scale": self.time_scale, "data_lag": self.data_lag}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schedule:
        return cls(tuple(float(o) for o in data["offsets"]), float(data["rollback_window"]), float(data["soak"]),
                   float(data.get("time_scale", 1.0)), float(data.get("data_lag", 0.0)))

    def window(self, index: int, previous: int | None) -> tuple[float, float]:
        """Seconds after 100 % that check ``index`` reads, after check ``previous`` (None: the first): the
        schedule's boundaries moved back by the data lag, so consecutive checks read consecutive windows
        whenever they actually ran."""
        start = 0.0 if previous is None else max(0.0, self.offsets[previous] - self.data_lag)
        return start, max(start + 1.0, self.offsets[index] - self.data_lag)


def due_check(schedule: Schedule, elapsed: float, done: int) -> tuple[int, list[int]] | None:
    """The check to do ``elapsed`` seconds after 100 % when checks ``0..done-1`` are recorded: the latest one due,
    and the earlier ones it stands for (missed while nothing ran); None when none is due yet."""
    due = [i for i, o in enumerate(schedule.offsets) if i >= done and o <= elapsed + EPS]
    if not due:
        return None
    return due[-1], due[:-1]


def next_due(schedule: Schedule, done: int) -> float | None:
    """Seconds after 100 % of the next check when ``done`` checks are recorded; None: the schedule is over."""
    return schedule.offsets[done] if done < len(schedule.offsets) else None


def decide(*, rollback_fail: bool, sla_fail: bool, in_window: bool) -> Decision:
    """The window rule: a rollback trigger rolls back inside the window and pages after it; an SLA breach alone is
    reported; otherwise nothing."""
    if rollback_fail:
        return "rollback" if in_window else "page"
    return "report" if sla_fail else "ok"


def sla_thresholds(plan: Plan, rollback: Thresholds) -> Thresholds:
    """The SLA as thresholds for :func:`canary.judge`: stricter numbers, the same test."""
    return replace(rollback, error_rate_pct=plan.sla.error_rate_pct, p95_duration_ms=plan.sla.p95_ms)


def watch_thresholds(plan: Plan, checks: int) -> Thresholds:
    """The rollback thresholds for the live version alone (no stable to compare to); the false-alarm rate is
    shared by every check of the schedule, as the canary shares it over its steps."""
    t = Thresholds.from_plan(plan)
    return replace(t, compare_to_stable=False, alpha=plan.canary.false_alarm_rate / max(1, checks))


# -- state from the ledger (pure) ---------------------------------------------------------------------------------
def watch_records(records: list[dict[str, Any]], watch_of: str) -> list[dict[str, Any]]:
    return [r for r in records if str(r.get("kind", "")).startswith("watch-") and r.get("watch_of") == watch_of]


def released_at_100(records: list[dict[str, Any]], release: str | None = None) -> dict[str, Any] | None:
    """The last succeeded deploy (of ``release``, when given) that moved the alias to 100 % on its version:
    ``{run_id, release, version, stable_version, sha256, reached_100}``."""
    ends = {r.get("run_id"): r for r in records if r.get("kind") == "run-end"}
    found = None
    for start in records:
        if start.get("kind") != "run-start" or start.get("kind_of_run") != "deploy":
            continue
        if release and start.get("release") != release:
            continue
        run_id = start.get("run_id")
        if (ends.get(run_id) or {}).get("outcome") != "succeeded":
            continue
        full = [r for r in records if r.get("kind") == "alias-change" and r.get("run_id") == run_id
                and not (r.get("after") or {}).get("weights")]
        if not full:
            continue
        found = {"run_id": run_id, "release": start.get("release"),
                 "version": str((full[-1].get("after") or {}).get("version")),
                 "stable_version": start.get("stable_version"),
                 "sha256": (start.get("artifact") or {}).get("sha256"), "reached_100": full[-1]["ts"]}
    return found


def summary(records: list[dict[str, Any]], watch_of: str, now: float) -> dict[str, Any] | None:
    """What ``promoter status`` shows of a watch: checks passed and failed, the next check, the soak left."""
    mine = watch_records(records, watch_of)
    start = next((r for r in mine if r["kind"] == "watch-start"), None)
    if start is None:
        return None
    schedule = Schedule.from_dict(start["schedule"])
    checks = [r for r in mine if r["kind"] == "watch-check"]
    soak = next((r for r in mine if r["kind"] == "watch-soak"), None)
    end = next((r for r in mine if r["kind"] == "watch-end"), None)
    done = 1 + max((int(c["index"]) for c in checks), default=-1)
    began = float(start["reached_100_epoch"])
    following = next_due(schedule, done) if end is None else None
    soak_left = None
    if soak is None and end is None:
        soak_left = max(0.0, began + schedule.offsets[schedule.soak_index()] - now)
    return {
        "watch_of": watch_of, "release": start.get("release"), "version": start.get("version"),
        "checks": len(checks), "checks_green": sum(1 for c in checks if c.get("green")),
        "checks_failed": sum(1 for c in checks if not c.get("green")),
        "of_checks": len(schedule.offsets),
        "last_decision": checks[-1].get("decision") if checks else None,
        "next_check_at": None if following is None else began + following,
        "next_check_in": None if following is None else round(max(0.0, began + following - now), 1),
        "in_rollback_window": now - began <= schedule.rollback_window,
        "soak": soak.get("outcome") if soak else "pending", "soak_seconds_left": soak_left,
        "ended": end.get("outcome") if end else None, "time_scale": schedule.time_scale,
        "success_criteria": success_criteria(checks, soak),
    }


def success_criteria(checks: list[dict[str, Any]], soak: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The runbook's PROD success criteria that the watch's records decide (pure): all health checks green, the
    error rate and p95 within the SLA over every check, the soak clean. ``ok`` is None while undecided."""
    out: list[dict[str, Any]] = []
    if not checks:
        return [{"criterion": c, "ok": None, "detail": "no check yet"} for c in
                ("all health checks green", "error rate within the SLA", "p95 within the SLA", "soak period clean")]
    red = [c for c in checks if not c.get("green")]
    out.append({"criterion": "all health checks green", "ok": not red,
                "detail": f"{len(checks) - len(red)} of {len(checks)} green"})
    errors = invocations = 0.0
    p95s: list[float] = []
    for c in checks:
        live = (c.get("observation") or {}).get("canary") or {}
        invocations += float(live.get("invocations") or 0)
        errors += float(live.get("errors") or 0) + float(live.get("server_errors") or 0)
        if live.get("p95_ms") is not None:
            p95s.append(float(live["p95_ms"]))
    sla = (checks[-1].get("sla") or {}).get("thresholds") or {}
    limit_rate, limit_p95 = sla.get("error_rate_pct"), sla.get("p95_duration_ms")
    rate = 100 * errors / invocations if invocations else None
    sla_breach = [b for c in checks for b in c.get("breaches") or [] if b.startswith("SLA:")]
    out.append({"criterion": "error rate within the SLA",
                "ok": None if rate is None else not any("error_rate_pct" in b for b in sla_breach),
                "detail": f"{errors:g} errors in {invocations:g} invocations"
                          + (f" ({rate:.3f} %, SLA {limit_rate:g} %)" if rate is not None and limit_rate else "")})
    out.append({"criterion": "p95 within the SLA",
                "ok": None if not p95s else not any("p95_duration_ms" in b for b in sla_breach),
                "detail": f"worst check p95 {max(p95s):.1f} ms, SLA {limit_p95:g} ms" if p95s and limit_p95
                else "no p95 yet"})
    outcome = soak.get("outcome") if soak else None
    out.append({"criterion": "soak period clean", "ok": None if outcome is None else outcome == "passed",
                "detail": (soak or {}).get("reason") or (f"{soak['soak_minutes']:g} minutes at 100 % with every "
                                                         "check green" if soak else "pending")})
    return out


def latest_watch(records: list[dict[str, Any]]) -> str | None:
    """The deploy run id of the last watch started in these records."""
    starts = [r for r in records if r.get("kind") == "watch-start"]
    return starts[-1]["watch_of"] if starts else None


# -- the operation -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WatchSettings:
    plan: Plan
    env: str
    release: str | None = None
    once: bool = False
    time_scale: float | None = None  # None: the plan's durations as they are (or the started watch's scale)
    lock_wait: float = 30.0  # an automatic rollback waits this long for another run's lock


@dataclass
class WatchResult:
    watch_of: str
    release: str | None
    version: str
    checks: list[dict[str, Any]]
    outcome: str  # waiting (more checks to come), completed, rolled-back, rollback-failed, superseded
    summary: dict[str, Any] | None = None
    rollback: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def watch(settings: WatchSettings, ports: Ports, *, figures: FiguresReader | None = None,
          notifier: NotifierLike | None = None, observer: Callable[[ReleaseEvent], None] | None = None) -> WatchResult:
    """Do the checks that are due (``once``) or follow the schedule to its end; see the module docstring."""
    emit = observer or (lambda _e: None)
    notify = notifier or _Quiet()
    env, ledger = settings.env, ports.ledger
    ports.guard_account(env)
    records = ledger.records(env)
    target = released_at_100(records, settings.release)
    if target is None:
        which = f" of {settings.release}" if settings.release else ""
        raise RefusedError(f"no succeeded deploy{which} at 100 % in {env}'s ledger: nothing to watch",
                           hint=f"deploy first (promoter deploy --env {env}); see promoter history --env {env}")
    watch_of = target["run_id"]
    mine = watch_records(records, watch_of)
    start = next((r for r in mine if r["kind"] == "watch-start"), None)
    if start is None:
        schedule = Schedule.from_plan(settings.plan.watch, settings.time_scale or 1.0)
        start = ledger.append(env, "watch-start", watch_of=watch_of, release=target["release"],
                              version=target["version"], stable_version=target["stable_version"],
                              artifact_sha256=target["sha256"], reached_100=target["reached_100"],
                              reached_100_epoch=parse_time(target["reached_100"]).timestamp(),
                              schedule=schedule.to_dict())
        emit(ReleaseEvent("progress", {"message": f"watching {target['release']} (version {target['version']}): "
                                                  f"{len(schedule.offsets)} checks"}))
    else:
        schedule = Schedule.from_dict(start["schedule"])
        if settings.time_scale is not None and abs(settings.time_scale - schedule.time_scale) > EPS:
            raise UsageError(f"--time-scale {settings.time_scale:g} differs from the scale this watch started with, "
                             f"{schedule.time_scale:g}; a watch keeps its schedule",
                             hint="run it again without --time-scale")
    run = _Watch(settings, ports, schedule, start, figures, notify, emit)
    return run.go()


class _Watch:
    def __init__(self, settings: WatchSettings, ports: Ports, schedule: Schedule, start: dict[str, Any],
                 figures: FiguresReader | None, notify: NotifierLike, emit: Callable[[ReleaseEvent], None]) -> None:
        self.s, self.p, self.schedule, self.start = settings, ports, schedule, start
        self.figures, self.notify, self.emit = figures, notify, emit
        self.env = settings.env
        self.watch_of = start["watch_of"]
        self.began = float(start["reached_100_epoch"])
        self.rollback_t = watch_thresholds(settings.plan, len(schedule.offsets))
        self.sla_t = sla_thresholds(settings.plan, self.rollback_t)
        self.checks: list[dict[str, Any]] = []

    def log(self, kind: str, **data: Any) -> dict[str, Any]:
        return self.p.ledger.append(self.env, kind, watch_of=self.watch_of, **data)

    def state(self) -> tuple[list[dict[str, Any]], dict[str, Any] | None, dict[str, Any] | None]:
        mine = watch_records(self.p.ledger.records(self.env), self.watch_of)
        checks = [r for r in mine if r["kind"] == "watch-check"]
        soak = next((r for r in mine if r["kind"] == "watch-soak"), None)
        end = next((r for r in mine if r["kind"] == "watch-end"), None)
        return checks, soak, end

    def result(self, outcome: str, **data: Any) -> WatchResult:
        return WatchResult(self.watch_of, self.start.get("release"), str(self.start["version"]), self.checks,
                           outcome, summary(self.p.ledger.records(self.env), self.watch_of, self.p.wall()), **data)

    def go(self) -> WatchResult:
        while True:
            checks, soak, end = self.state()
            if end is not None:
                return self.result(str(end.get("outcome")))
            done = 1 + max((int(c["index"]) for c in checks), default=-1)
            elapsed = self.p.wall() - self.began
            due = due_check(self.schedule, elapsed, done)
            if due is None:
                following = next_due(self.schedule, done)
                if following is None:
                    self.log("watch-end", outcome="completed", checks=len(checks))
                    return self.result("completed")
                if self.s.once:
                    return self.result("waiting")
                self.emit(ReleaseEvent("progress", {"message": f"next check {done + 1}/{len(self.schedule.offsets)} "
                                                               f"in {self.began + following - self.p.wall():.0f}s"}))
                self._sleep_until(self.began + following)
                continue
            outcome = self.check(due[0], due[1], checks, soak)
            if outcome is not None:
                return outcome
            if self.s.once:  # a cron's run does what is due now; catch-up checks are folded into one
                checks, _soak, _end = self.state()
                done = 1 + max((int(c["index"]) for c in checks), default=-1)
                if next_due(self.schedule, done) is None:
                    self.log("watch-end", outcome="completed", checks=len(checks))
                    return self.result("completed")
                return self.result("waiting")

    def _sleep_until(self, when: float) -> None:
        while True:
            left = when - self.p.wall()
            if left <= 0:
                return
            self.emit(ReleaseEvent("tick", {"next_check_in": left}))
            self.p.clock.sleep(min(5.0, left))

    # -- one check ---------------------------------------------------------------------------------------------
    def check(self, index: int, missed: list[int], previous: list[dict[str, Any]],
              soak: dict[str, Any] | None) -> WatchResult | None:
        version = str(self.start["version"])
        alias = self.p.router.read()
        if alias.version != version or alias.weights:
            reason = f"alias {self.p.alias} serves {alias.describe()}, not version {version} at 100 %"
            self.log("watch-end", outcome="superseded", reason=reason)
            return self.result("superseded")
        now = self.p.wall()
        start, end = self.schedule.window(index, int(previous[-1]["index"]) if previous else None)
        window = canary_mod.query_window(self.began + start, self.began + end)
        observation = self.p.metrics.observe(version, None, window)
        rollback = canary_mod.judge(observation, self.rollback_t)
        sla = canary_mod.judge(observation, self.sla_t)
        figures = self.figures.read(window) if self.figures is not None else {}
        throttled = figures.get("dynamodb_throttled_requests") or 0
        dynamo_breach = throttled > self.s.plan.watch.dynamodb_throttles
        offset = self.schedule.offsets[index]
        in_window = self.schedule.in_window(offset)
        decision = decide(rollback_fail=rollback.outcome == "fail", sla_fail=sla.outcome == "fail" or dynamo_breach,
                          in_window=in_window)
        breaches = _breaches(rollback, sla, throttled if dynamo_breach else None, self.s.plan.watch.dynamodb_throttles)
        entry = {"index": index, "missed": missed, "offset": offset, "due_at": self.began + offset,
                 "checked_at": now, "in_rollback_window": in_window, "decision": decision,
                 "green": decision == "ok", "breaches": breaches, "window": window.to_dict(),
                 "figures": figures, "sla": _brief(sla), **rollback.to_dict()}
        done_meanwhile = [c for c in self.state()[0] if int(c["index"]) >= index]
        if done_meanwhile:  # another watch of the same release (an overlapping cron run) recorded it first
            return self.result("waiting")
        self.log("watch-check", **entry)
        self.checks.append(entry)
        self.emit(ReleaseEvent("verdict", {**entry, "step": "watch", "elapsed": now - self.began}))
        head = f"{self.start.get('release')} (version {version}) check {index + 1}/{len(self.schedule.offsets)}"
        if decision != "ok":
            severity = {"rollback": "rollback", "page": "page", "report": "sla"}[decision]
            self.notify.notify("watch-breach", f"{head}: {'; '.join(breaches)}", severity=severity,
                               release=self.start.get("release"), version=version, breaches=breaches,
                               figures=figures, checked_at=now)
        if decision == "rollback":
            return self._roll_back(head, breaches)
        if soak is None and decision != "ok":
            self.log("watch-soak", outcome="failed", reason=f"check {index + 1}: {'; '.join(breaches)}",
                     release=self.start.get("release"), version=version,
                     artifact_sha256=self.start.get("artifact_sha256"))
        elif soak is None and index >= self.schedule.soak_index():
            minutes = round(offset / 60 * self.schedule.time_scale, 2)
            self.log("watch-soak", outcome="passed", release=self.start.get("release"), version=version,
                     artifact_sha256=self.start.get("artifact_sha256"), soak_minutes=minutes,
                     elapsed_minutes=round((now - self.began) / 60, 3), time_scale=self.schedule.time_scale,
                     checks=len(previous) + 1)
            self.notify.notify("soak-passed", f"{self.start.get('release')} (version {version}) soak passed: "
                               f"{minutes:g} minutes at 100 % with every check green",
                               release=self.start.get("release"), version=version, checks=len(previous) + 1)
        return None

    def _roll_back(self, head: str, breaches: list[str]) -> WatchResult:
        from promoter.engine.rollback import RollbackSettings, rollback_to
        from promoter.engine.runs import manual_rollback_command

        to = str(self.start.get("stable_version") or "previous")
        reason = "; ".join(breaches)
        try:
            record = rollback_to(RollbackSettings(plan=self.s.plan, env=self.env, to=to,
                                                  lock_wait=self.s.lock_wait), self.p, self.emit)
        except PromoterError as exc:
            command = manual_rollback_command(self.p.function, self.p.alias, to, self.p.region)
            self.log("watch-end", outcome="rollback-failed", reason=f"{reason}; rollback failed: {exc}",
                     manual_command=command, error=type(exc).__name__)
            self.notify.notify("rollback-failed", f"{head}: rollback to version {to} failed ({exc}); by hand: "
                               f"{command}", manual_command=command, release=self.start.get("release"))
            return self.result("rollback-failed", rollback={"to": to, "error": str(exc), "hint": exc.hint,
                                                             "manual_command": command})
        self.log("watch-end", outcome="rolled-back", reason=reason, rollback_run=record.run_id, to=to)
        self.notify.notify("rolled-back", f"{head}: rolled back to version {to}: {reason}", to=to, breaches=breaches,
                           release=self.start.get("release"), rollback_run=record.run_id)
        return self.result("rolled-back", rollback={"to": to, "run_id": record.run_id, "reason": record.reason})


def _brief(verdict: Verdict) -> dict[str, Any]:
    return {"outcome": verdict.outcome, "line": verdict.line, "reasons": list(verdict.reasons),
            "checks": [c.to_dict() for c in verdict.checks], "thresholds": verdict.thresholds.to_dict()}


def _breaches(rollback: Verdict, sla: Verdict, throttled: float | None, limit: int) -> list[str]:
    out = [f"rollback trigger: {r}" for r in rollback.reasons] if rollback.outcome == "fail" else []
    if sla.outcome == "fail":
        out += [f"SLA: {r}" for r in sla.reasons if f"rollback trigger: {r}" not in out]
    if throttled is not None:
        out.append(f"SLA: DynamoDB throttled requests {throttled:g} > {limit}")
    return out


def ledger_summary(ledger: Ledger, env: str, now: float) -> dict[str, Any] | None:
    records = ledger.records(env)
    watch_of = latest_watch(records)
    return summary(records, watch_of, now) if watch_of else None
