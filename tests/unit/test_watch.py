"""The watch after 100 % on in-memory ports and a fake clock: the schedule, restarts, the window rule, the soak."""

from __future__ import annotations

import time

import pytest
from test_release_unit import InMemoryAliasRouter, InMemoryFunctions, ScriptedInvoker

from promoter.adapters.lambda_ import FunctionVersion, version_description
from promoter.engine import release
from promoter.engine import watch as w
from promoter.engine.backup import parse_time
from promoter.engine.canary import Observation, VersionMetrics
from promoter.engine.ledger import Ledger
from promoter.engine.passport import proof_problems
from promoter.errors import RefusedError, UsageError
from promoter.plan import load_plan
from promoter.plan.models import Watch, WatchPeriod

ENV = "sit"
SHA = "b" * 64


# -- the schedule, on plain numbers -------------------------------------------------------------------------------
def test_the_plans_schedule_is_the_runbooks_cadence():
    schedule = w.Schedule.from_plan(load_plan().watch)
    minutes = [o / 60 for o in schedule.offsets]
    assert minutes[:12] == [30 * i for i in range(1, 13)]  # every 30 minutes for the first 6 hours
    assert minutes[12:30] == [360 + 60 * i for i in range(1, 19)]  # hourly to 24 h
    assert minutes[30:] == [1440 * d for d in range(2, 8)]  # daily to 7 days
    assert schedule.rollback_window == 6 * 3600 and schedule.soak == 72 * 3600
    assert schedule.offsets[schedule.soak_index()] == 72 * 3600


def test_time_scale_compresses_every_duration():
    plan = Watch(periods=[WatchPeriod(until_minutes=60, every_minutes=30)], rollback_window_minutes=30,
                 soak_minutes=60)
    schedule = w.Schedule.from_plan(plan, time_scale=60)  # a minute becomes a second
    assert schedule.offsets == (30.0, 60.0)
    assert schedule.rollback_window == 30 and schedule.soak == 60
    with pytest.raises(UsageError):
        w.Schedule.from_plan(plan, time_scale=0)


def test_the_data_lag_must_be_shorter_than_the_checks_interval():
    with pytest.raises(ValueError, match="data_lag_seconds"):
        Watch(periods=[WatchPeriod(until_minutes=60, every_minutes=2)], soak_minutes=60, rollback_window_minutes=0,
              data_lag_seconds=120)


def test_due_check_is_the_latest_due_and_names_the_missed_ones():
    schedule = w.Schedule((10.0, 20.0, 30.0, 40.0), 20.0, 30.0)
    assert w.due_check(schedule, 5, 0) is None
    assert w.due_check(schedule, 10, 0) == (0, [])
    assert w.due_check(schedule, 35, 1) == (2, [1])  # a cron that ran late does one check for the time missed
    assert w.due_check(schedule, 35, 3) is None
    assert w.next_due(schedule, 3) == 40.0 and w.next_due(schedule, 4) is None


def test_the_window_rule():
    assert w.decide(rollback_fail=True, sla_fail=True, in_window=True) == "rollback"
    assert w.decide(rollback_fail=True, sla_fail=False, in_window=False) == "page"
    assert w.decide(rollback_fail=False, sla_fail=True, in_window=True) == "report"
    assert w.decide(rollback_fail=False, sla_fail=False, in_window=True) == "ok"


# -- the operation on in-memory ports -----------------------------------------------------------------------------
class WallClock:
    """The watch's time: starts at the moment the release reached 100 % and moves only when slept."""

    def __init__(self, start: float) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds

    def wall(self) -> float:
        return self.t


class LiveMetrics:
    """``rps`` requests a second on the live version; ``error_rate`` of them fail once ``fail_from`` (wall) passed."""

    def __init__(self, clock: WallClock, rps: float = 10, error_rate: float = 0.0, fail_from: float = 0.0,
                 p95: float = 120.0) -> None:
        self.clock, self.rps, self.error_rate, self.fail_from, self.p95 = clock, rps, error_rate, fail_from, p95
        self.windows = []

    def observe(self, canary, stable, window):
        assert stable is None  # the watch judges the live version alone
        self.windows.append(window)
        n = round(self.rps * window.elapsed)
        rate = self.error_rate if window.start + window.elapsed > self.fail_from else 0.0
        live = VersionMetrics(canary, invocations=n, errors=round(n * rate), p95_ms=self.p95, duration_samples=n)
        return Observation(live, None, window.elapsed, dlq_messages=0)

    def alarms_in_alarm(self):
        return ()


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict]] = []

    def notify(self, event, text, **data):
        self.sent.append((event, text, data))


def _plan(window_minutes: float = 2, soak_minutes: float = 3):
    plan = load_plan()
    watch = Watch(periods=[WatchPeriod(until_minutes=2, every_minutes=1), WatchPeriod(until_minutes=4,
                                                                                      every_minutes=1)],
                  rollback_window_minutes=window_minutes, soak_minutes=soak_minutes, data_lag_seconds=10)
    return plan.model_copy(update={"watch": watch})


@pytest.fixture
def live(tmp_path):
    """A ledger where run D1 deployed v1.1.0 (version 2) from version 1 to 100 % and succeeded."""
    ledger = Ledger(tmp_path / "ledger")
    ledger.append(ENV, "run-start", run_id="D1", kind_of_run="deploy", release="v1.1.0", stable_version="1",
                  artifact={"sha256": SHA}, steps=[{"weight": 10, "bake_seconds": 60}, {"weight": 100,
                                                                                       "bake_seconds": 0}])
    ledger.append(ENV, "alias-change", run_id="D1", step=10, before={"version": "1", "weights": {}},
                  after={"version": "1", "weights": {"2": 0.1}})
    change = ledger.append(ENV, "alias-change", run_id="D1", step=100, before={"version": "1", "weights": {"2": 0.1}},
                           after={"version": "2", "weights": {}})
    ledger.append(ENV, "run-end", run_id="D1", outcome="succeeded", reason="version 2 serves 100%")
    clock = WallClock(parse_time(change["ts"]).timestamp())
    router = InMemoryAliasRouter("2")
    functions = InMemoryFunctions()
    functions.versions.append(FunctionVersion("2", version_description("v1.1.0", "def", SHA), "x", {}))
    metrics = LiveMetrics(clock)
    ports = release.Ports(router=router, metrics=metrics, invoker=ScriptedInvoker(), functions=functions,
                          ledger=ledger, clock=clock, wall=clock.wall, function="campaigns-handler-sit",
                          alias="live", region="eu-west-1")

    class Live:
        pass

    x = Live()
    x.ledger, x.clock, x.router, x.metrics, x.ports, x.notes = ledger, clock, router, metrics, ports, Recorder()
    return x


def _kinds(ledger, kind):
    return ledger.records(ENV, kind=kind)


def test_once_does_only_what_is_due_and_a_restart_continues_the_schedule(live):
    settings = w.WatchSettings(plan=_plan(), env=ENV, once=True)
    first = w.watch(settings, live.ports, notifier=live.notes)
    assert first.outcome == "waiting" and first.checks == []  # nothing due at 100 % + 0 s
    live.clock.sleep(61)
    second = w.watch(settings, live.ports, notifier=live.notes)
    assert [c["index"] for c in second.checks] == [0] and second.outcome == "waiting"
    live.clock.sleep(130)  # a cron that missed one: the one check covers both minutes
    third = w.watch(settings, live.ports, notifier=live.notes)
    assert [(c["index"], c["missed"]) for c in third.checks] == [(2, [1])]
    # consecutive windows on the schedule's boundaries, each ending the data lag (10 s) before its check
    began = second.checks[0]["due_at"] - 60
    first, last = live.metrics.windows
    assert (first.start - began, first.start + first.elapsed - began) == pytest.approx((0, 50))
    assert (last.start - began, last.start + last.elapsed - began) == pytest.approx((50, 170))
    assert len(_kinds(live.ledger, "watch-start")) == 1  # the restart kept the first schedule
    summary = w.ledger_summary(live.ledger, ENV, live.clock.wall())
    assert summary["checks"] == 2 and summary["checks_green"] == 2 and summary["next_check_in"] == pytest.approx(49)


def test_healthy_release_soaks_and_completes_in_the_foreground(live):
    result = w.watch(w.WatchSettings(plan=_plan(), env=ENV), live.ports, notifier=live.notes)
    assert result.outcome == "completed"
    assert [c["index"] for c in result.checks] == [0, 1, 2, 3] and all(c["green"] for c in result.checks)
    soak = _kinds(live.ledger, "watch-soak")
    assert [s["outcome"] for s in soak] == ["passed"] and soak[0]["artifact_sha256"] == SHA
    assert soak[0]["elapsed_minutes"] >= 3  # passed at the check at 3 minutes, not before
    assert [e for e, _t, _d in live.notes.sent] == ["soak-passed"]
    assert _kinds(live.ledger, "watch-end")[-1]["outcome"] == "completed"
    assert live.router.sets == []  # a healthy watch never moves traffic


def test_a_breach_inside_the_window_rolls_back_through_the_guarded_path(live):
    live.metrics.error_rate, live.metrics.fail_from = 0.3, live.clock.wall() + 61  # failing from the second minute
    result = w.watch(w.WatchSettings(plan=_plan(), env=ENV), live.ports, notifier=live.notes)
    assert result.outcome == "rolled-back" and result.rollback["to"] == "1"
    assert [c["decision"] for c in result.checks] == ["ok", "rollback"]
    assert live.router.sets == [("1", {})]
    intents = _kinds(live.ledger, "alias-intent")
    assert intents[-1]["after"] == {"version": "1", "weights": {}}  # intent and change records, as rollback does
    after = _kinds(live.ledger, "alias-change")[-1]["after"]
    assert (after["version"], after["weights"]) == ("1", {})
    run = live.ledger.runs(ENV)[-1]
    assert run["kind_of_run"] == "rollback" and run["outcome"] == "succeeded"
    events = [e for e, _t, _d in live.notes.sent]
    assert events == ["watch-breach", "rolled-back"]
    assert "error_rate_pct" in live.notes.sent[-1][1]  # the numbers are in the message


def test_a_breach_after_the_window_pages_and_never_moves_traffic(live):
    live.metrics.error_rate, live.metrics.fail_from = 0.3, live.clock.wall() + 121  # from the third minute
    result = w.watch(w.WatchSettings(plan=_plan(window_minutes=2), env=ENV), live.ports, notifier=live.notes)
    assert [c["decision"] for c in result.checks] == ["ok", "ok", "page", "page"]
    assert live.router.sets == []
    assert result.outcome == "completed"
    assert [s["outcome"] for s in _kinds(live.ledger, "watch-soak")] == ["failed"]
    assert {d["severity"] for e, _t, d in live.notes.sent if e == "watch-breach"} == {"page"}
    assert "soak-passed" not in [e for e, _t, _d in live.notes.sent]


def test_an_sla_breach_is_reported_not_acted_on(live):
    live.metrics.p95 = 800  # over the SLA's 500 ms, under the rollback trigger's 2000 ms
    result = w.watch(w.WatchSettings(plan=_plan(), env=ENV, once=True), live.ports, notifier=live.notes)
    assert result.checks == []
    live.clock.sleep(60)
    result = w.watch(w.WatchSettings(plan=_plan(), env=ENV, once=True), live.ports, notifier=live.notes)
    check = result.checks[0]
    assert check["decision"] == "report" and check["in_rollback_window"] is True
    assert any("SLA: p95_duration_ms 800" in b for b in check["breaches"])
    assert check["outcome"] == "pass"  # the rollback judgement passed
    assert live.router.sets == []
    assert live.notes.sent[0][2]["severity"] == "sla"


def test_a_moved_alias_ends_the_watch_as_superseded(live):
    live.router.someone_else_sets("1")
    live.clock.sleep(60)
    result = w.watch(w.WatchSettings(plan=_plan(), env=ENV, once=True), live.ports)
    assert result.outcome == "superseded" and live.router.sets == []


def test_nothing_to_watch_is_refused(tmp_path):
    ports = release.Ports(router=InMemoryAliasRouter("1"), metrics=None, invoker=None, functions=None,
                          ledger=Ledger(tmp_path / "l"))
    with pytest.raises(RefusedError, match="nothing to watch"):
        w.watch(w.WatchSettings(plan=_plan(), env=ENV), ports)


def test_a_restarted_watch_keeps_its_time_scale(live):
    w.watch(w.WatchSettings(plan=_plan(), env=ENV, once=True, time_scale=60), live.ports)
    with pytest.raises(UsageError, match="keeps its schedule"):
        w.watch(w.WatchSettings(plan=_plan(), env=ENV, once=True, time_scale=30), live.ports)


def test_the_passport_reads_the_watchs_soak(live):
    plan = load_plan()
    passport = plan.environment("prod").passport.model_copy(update={"validation_phase": None})
    records = live.ledger.records(ENV)
    now = parse_time(records[-1]["ts"])
    # GIVEN no watch: today's rule, time at 100 % (none yet)
    today = proof_problems(records, plan=plan, passport=passport, sha=SHA, now=now)
    assert any("soaked" in p for p in today.problems)
    # WHEN a watch recorded a failed soak THEN the passport refuses whatever the time says
    live.ledger.append(ENV, "watch-soak", watch_of="D1", outcome="failed", reason="check 3: SLA", artifact_sha256=SHA)
    records = live.ledger.records(ENV)
    later = proof_problems(records, plan=plan, passport=passport, sha=SHA, now=now.replace(year=now.year + 1))
    assert any("watch's soak failed" in p for p in later.problems)
    # WHEN it recorded a passed soak (a later watch) THEN the soak is proven by it
    live.ledger.append(ENV, "watch-soak", watch_of="D1", outcome="passed", artifact_sha256=SHA, soak_minutes=4320,
                       elapsed_minutes=4320, time_scale=1.0)
    proof = proof_problems(live.ledger.records(ENV), plan=plan, passport=passport, sha=SHA, now=now)
    assert not [p for p in proof.problems if "soak" in p], proof.problems
    assert proof.soak_minutes == 4320


def test_sleeping_uses_the_clock_not_time(live, monkeypatch):
    settings = w.WatchSettings(plan=_plan(), env=ENV)
    monkeypatch.setattr(time, "sleep", lambda _s: pytest.fail("the watch slept on the real clock"))
    result = w.watch(settings, live.ports)
    assert result.outcome == "completed"


def test_status_shows_the_watch(live):
    from promoter.cli.release import watch_line

    w.watch(w.WatchSettings(plan=_plan(), env=ENV, once=True), live.ports)
    live.clock.sleep(61)
    w.watch(w.WatchSettings(plan=_plan(), env=ENV, once=True), live.ports)
    summary = w.ledger_summary(live.ledger, ENV, live.clock.wall())
    assert summary["soak_seconds_left"] == pytest.approx(180 - 61)
    line = watch_line(summary)
    assert line.startswith("watch of v1.1.0 (version 2): 1 of 1 checks green, 0 not, 4 scheduled")
    assert "next check in 59s (inside the rollback window)" in line and "soak pending, 119s left" in line
    assert "success criteria 3 of 4 met" in line and "soak period clean: pending" in line


def test_the_prod_success_criteria_read_the_watch(live):
    live.metrics.p95 = 800  # over the SLA's 500 ms
    w.watch(w.WatchSettings(plan=_plan(), env=ENV), live.ports)
    criteria = {c["criterion"]: c for c in w.ledger_summary(live.ledger, ENV, live.clock.wall())["success_criteria"]}
    assert criteria["all health checks green"]["ok"] is False
    assert criteria["p95 within the SLA"]["ok"] is False and "800.0 ms, SLA 500 ms" in criteria["p95 within the "
                                                                                                "SLA"]["detail"]
    assert criteria["error rate within the SLA"]["ok"] is True
    assert criteria["soak period clean"]["ok"] is False


def test_history_shows_the_watch_under_its_deploy(live):
    from promoter.cli.release import _summary
    from promoter.engine.status import history

    w.watch(w.WatchSettings(plan=_plan(), env=ENV), live.ports)
    [run] = history(live.ledger, ENV)
    kinds = [r["kind"] for r in run["records"]]
    assert kinds[-6:] == ["watch-check", "watch-check", "watch-check", "watch-soak", "watch-check", "watch-end"]
    check = next(r for r in run["records"] if r["kind"] == "watch-check")
    # 50 s at 10 requests a second: the first minute less the data lag
    assert _summary(check) == "check 1 (inside the rollback window): n=500 err=0 % p95=120ms: green -> ok"


def test_ctrl_c_while_waiting_leaves_whole_records_and_a_restart_goes_on(live):
    settings = w.WatchSettings(plan=_plan(), env=ENV)
    real_sleep, slept = live.clock.sleep, []

    def interrupted_after_two_checks(seconds):
        slept.append(seconds)
        if len(_kinds(live.ledger, "watch-check")) == 2:
            raise KeyboardInterrupt
        real_sleep(seconds)

    live.clock.sleep = interrupted_after_two_checks
    with pytest.raises(KeyboardInterrupt):
        w.watch(settings, live.ports)
    assert [c["index"] for c in _kinds(live.ledger, "watch-check")] == [0, 1] and not _kinds(live.ledger, "watch-end")
    live.clock.sleep = real_sleep
    result = w.watch(settings, live.ports)
    assert [c["index"] for c in result.checks] == [2, 3] and result.outcome == "completed"
    assert len(_kinds(live.ledger, "watch-start")) == 1


def test_an_overlapping_watch_does_not_record_a_check_twice(live):
    settings = w.WatchSettings(plan=_plan(), env=ENV, once=True)
    live.clock.sleep(61)
    observe = live.metrics.observe

    def another_watch_finishes_first(canary, stable, window):
        live.metrics.observe = observe
        w.watch(settings, live.ports)  # the other cron run, while this one reads its metrics
        return observe(canary, stable, window)

    live.metrics.observe = another_watch_finishes_first
    result = w.watch(settings, live.ports)
    assert result.checks == [] and result.outcome == "waiting"
    assert [c["index"] for c in _kinds(live.ledger, "watch-check")] == [0]
