"""Replay: judge a past run's recorded observations again, offline, with other thresholds or analysis settings.

Every canary verdict (``verdict`` records) and every watch check (``watch-check`` records) carries the
observation it judged, the thresholds it used and what else decided it (``judged_with``: the canary's weight,
the alarms already firing, the bake, the extension, ``on_inconclusive``, whether the data covered the bake).
:func:`replay_run` feeds each again to :func:`promoter.engine.canary.judge` and :func:`~promoter.engine.canary.
next_action` (the watch's to :func:`promoter.engine.watch.decide`) with the thresholds changed as asked, and says
per interval what would have been decided and where the run would have stopped: ``earlier``, ``same``,
``later`` or ``never`` (or ``undecided`` when the replay would have waited for more evidence where the run
advanced). No AWS call is made.

A run that rolled back has no data past its rollback: a replay that would have gone on is ``never`` within what
was observed (``data_ends_at_rollback``), and intervals after a replayed stop or a replayed early advance are
marked as not reached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

from promoter.engine import canary as canary_mod
from promoter.engine.canary import Observation, Thresholds, VersionMetrics
from promoter.engine.ledger import Ledger
from promoter.errors import RefusedError, UsageError

THRESHOLD_NAMES = tuple(f.name for f in fields(Thresholds))


def parse_overrides(items: list[str] | None, min_invocations: int | None = None) -> dict[str, Any]:
    """``NAME=VALUE`` pairs naming :class:`Thresholds` fields, checked and typed."""
    out: dict[str, Any] = {}
    types = {f.name: f.type for f in fields(Thresholds)}
    for item in items or []:
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in THRESHOLD_NAMES:
            raise UsageError(f"--threshold {item!r}: expected NAME=VALUE with NAME one of {', '.join(THRESHOLD_NAMES)}")
        kind = str(types[name])
        try:
            if "bool" in kind:
                if value.lower() not in {"true", "false", "1", "0", "yes", "no"}:
                    raise ValueError(value)
                out[name] = value.lower() in {"true", "1", "yes"}
            elif "int" in kind:
                out[name] = int(value)
            else:
                out[name] = float(value)
        except ValueError:
            raise UsageError(f"--threshold {item!r}: {value!r} is not a {kind}") from None
    if min_invocations is not None:
        if min_invocations < 1:
            raise UsageError(f"--min-invocations {min_invocations}: must be 1 or more")
        out["min_invocations"] = min_invocations
    return out


def observation_from(data: dict[str, Any]) -> Observation:
    """The :class:`Observation` a verdict recorded (``Observation.to_dict``), rebuilt."""

    def version(d: dict[str, Any] | None) -> VersionMetrics | None:
        if not d:
            return None
        return VersionMetrics(
            version=str(d.get("version")), invocations=float(d.get("invocations") or 0),
            errors=float(d.get("errors") or 0), server_errors=float(d.get("server_errors") or 0),
            throttles=float(d.get("throttles") or 0), p95_ms=d.get("p95_ms"),
            duration_samples=d.get("duration_samples"),
            duration_percentiles=tuple((float(p), float(v)) for p, v in d.get("duration_percentiles") or ()))

    canary = version(data.get("canary"))
    if canary is None:
        raise ValueError("the observation has no canary metrics")
    return Observation(canary=canary, stable=version(data.get("stable")),
                       window_seconds=float(data.get("window_seconds") or 0), dlq_messages=data.get("dlq_messages"),
                       alarms_in_alarm=tuple(data.get("alarms_in_alarm") or ()),
                       newest_datapoint=data.get("newest_datapoint"))


def thresholds_from(data: dict[str, Any], overrides: dict[str, Any]) -> Thresholds:
    known = {k: v for k, v in data.items() if k in THRESHOLD_NAMES}
    return replace(Thresholds(**known), **overrides)


@dataclass
class Interval:
    source: str  # canary | watch
    step: Any
    elapsed: float | None
    recorded: str  # the action (canary) or decision (watch) recorded
    replayed: str | None  # None: not reached in the replay
    outcome: str
    replayed_outcome: str | None
    line: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


STOPS = {"rollback"}


@dataclass
class Replay:
    run_id: str
    env: str
    release: str | None
    overrides: dict[str, Any]
    intervals: list[Interval]
    recorded_stop: int | None  # index in intervals of the recorded rollback, if any
    replayed_stop: int | None
    recorded_outcome: str | None
    # the interval after which the replay would have waited for more evidence than the run recorded (the run
    # advanced there): what it would have decided next is not in the data
    undecided_at: int | None = None

    @property
    def comparison(self) -> str:
        r, n = self.recorded_stop, self.replayed_stop
        if n is None and self.undecided_at is not None:
            return "undecided"
        if r is None and n is None:
            return "same"  # neither stops
        if n is None:
            return "never"
        if r is None or n < r:
            return "earlier"
        return "same" if n == r else "later"

    @property
    def would_roll_back(self) -> bool:
        return self.replayed_stop is not None

    @property
    def rolled_back(self) -> bool:
        return self.recorded_stop is not None

    def where(self, index: int | None) -> str | None:
        if index is None:
            return None
        i = self.intervals[index]
        when = f" after {i.elapsed:g}s" if i.elapsed is not None else ""
        return f"{i.source} {'step ' + str(i.step) + '%' if i.source == 'canary' else 'check ' + str(i.step)}{when}"

    def text(self) -> str:
        was, now = self.where(self.recorded_stop), self.where(self.replayed_stop)
        if self.comparison == "undecided":
            return (f"undecided: at {self.where(self.undecided_at)} the run advanced where the replay would have "
                    "waited for more evidence, and the run's data ends there")
        if self.comparison == "never":
            return f"would not have rolled back (the run rolled back at {was}; its data ends there)"
        if self.comparison == "earlier":
            return f"would have rolled back earlier, at {now}" + (f" (the run rolled back at {was})" if was else
                                                                    " (the run did not roll back)")
        if self.comparison == "same":
            return f"same decision: rolled back at {now}" if now else "same decision: no rollback"
        return f"would have rolled back later, at {now} (the run rolled back at {was})"

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "env": self.env, "release": self.release, "overrides": self.overrides,
                "recorded_outcome": self.recorded_outcome, "rolled_back": self.rolled_back,
                "would_roll_back": self.would_roll_back, "comparison": self.comparison, "summary": self.text(),
                "recorded_stop": self.where(self.recorded_stop), "replayed_stop": self.where(self.replayed_stop),
                "undecided_at": self.where(self.undecided_at),
                "intervals": [i.to_dict() for i in self.intervals]}


@dataclass(frozen=True)
class Analysis:
    """Analysis settings to replay with instead of the recorded ones (None: as recorded)."""

    on_inconclusive: str | None = None  # fail | pass
    max_extension_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def replay_records(records: list[dict[str, Any]], run_id: str, env: str,
                   overrides: dict[str, Any], analysis: Analysis | None = None) -> Replay:
    """Judge run ``run_id``'s verdicts and the checks of its watch again with ``overrides`` (pure)."""
    analysis = analysis or Analysis()
    mine = [r for r in records if r.get("run_id") == run_id or r.get("watch_of") == run_id]
    start = next((r for r in mine if r.get("kind") == "run-start"), {})
    end = next((r for r in mine if r.get("kind") == "run-end"), {})
    bakes = {int(s.get("weight", 0)): float(s.get("bake_seconds", 0)) for s in start.get("steps") or []}
    judged = [r for r in mine if r.get("kind") in ("verdict", "watch-check") and r.get("observation")]
    if not judged:
        raise RefusedError(f"run {run_id} in {env} has no recorded verdicts to replay",
                           hint=f"replay a deploy run with canary steps or a watched one; see promoter history --env "
                           f"{env}")
    intervals: list[Interval] = []
    recorded_stop = replayed_stop = None
    advanced: set[Any] = set()  # steps the replay would have left at an earlier interval
    undecided_at: int | None = None
    for r in judged:
        obs = observation_from(r["observation"])
        t = thresholds_from(r.get("thresholds") or {}, overrides)
        with_ = r.get("judged_with") or {}
        if r["kind"] == "verdict":
            step = r.get("step")
            weight = with_.get("canary_weight", step / 100.0 if isinstance(step, int) and step < 100 else None)
            verdict = canary_mod.judge(obs, t, preexisting_alarms=tuple(with_.get("preexisting_alarms") or ()),
                                       canary_weight=weight)
            bake = float(with_.get("bake_seconds", bakes.get(step, 0) if isinstance(step, int) else 0))
            extension = float(with_.get("extension_seconds", max(0.0, float(r.get("deadline") or bake) - bake)))
            if analysis.max_extension_seconds is not None:
                extension = analysis.max_extension_seconds
            action, _why = canary_mod.next_action(
                verdict, elapsed=float(r.get("elapsed") or 0), bake_seconds=bake, max_extension_seconds=extension,
                on_inconclusive=analysis.on_inconclusive or with_.get("on_inconclusive", "fail"),
                data_seen=with_.get("data_seen", True))
            recorded, source, elapsed = str(r.get("action")), "canary", r.get("elapsed")
        else:
            from promoter.engine.watch import decide

            verdict = canary_mod.judge(obs, t)
            sla_fail = any(b.startswith("SLA:") for b in r.get("breaches") or [])
            action = decide(rollback_fail=verdict.outcome == "fail", sla_fail=sla_fail,
                            in_window=bool(r.get("in_rollback_window")))
            step, recorded, source = int(r.get("index", 0)) + 1, str(r.get("decision")), "watch"
            elapsed = round(float(r.get("offset") or 0), 1)
        reached = replayed_stop is None and undecided_at is None and (source, step) not in advanced
        interval = Interval(source, step, elapsed, recorded, action if reached else None, str(r.get("outcome")),
                            verdict.outcome if reached else None, verdict.line)
        intervals.append(interval)
        index = len(intervals) - 1
        if recorded_stop is None and recorded in STOPS:
            recorded_stop = index
        if reached and action in STOPS:
            replayed_stop = index
        if reached and action == "advance":
            advanced.add((source, step))
        if reached and recorded == "advance" and action == "wait":
            undecided_at = index  # the replay would have gone on baking past what the run observed
    return Replay(run_id, env, start.get("release"), {**overrides, **analysis.to_dict()}, intervals, recorded_stop,
                  replayed_stop, end.get("outcome"), undecided_at)


def highest_canary_error_pct(records: list[dict[str, Any]], run_id: str) -> float | None:
    """The highest error rate (%) the canary of run ``run_id`` showed in any recorded verdict's window.

    A threshold above it is one the run's own data never crossed: judged again with it, no window can fail on
    the error rate, whatever the sample sizes were.
    """
    rates = []
    for r in records:
        if r.get("run_id") == run_id and r.get("kind") == "verdict" and r.get("observation"):
            x, n = observation_from(r["observation"]).canary.counts
            if n:
                rates.append(100.0 * x / n)
    return max(rates) if rates else None


def threshold_above(highest_pct: float | None, at_least: float) -> float:
    """An ``error_rate_pct`` of at least ``at_least`` that no window at ``highest_pct`` crosses (at most 100)."""
    return min(100.0, max(at_least, math.floor(highest_pct or 0.0) + 1.0))


def find_env(ledger: Ledger, envs: list[str], run_id: str) -> str:
    for env in envs:
        if any(r.get("run_id") == run_id for r in ledger.records(env, kind="run-start")):
            return env
    raise RefusedError(f"run {run_id} is in none of the ledgers of {', '.join(envs)}",
                       hint="list runs with promoter history --env ENV")


def replay_last(ledger: Ledger, env: str, last: int, overrides: dict[str, Any],
                analysis: Analysis | None = None) -> dict[str, Any]:
    """Replay the last ``last`` deploy runs with recorded verdicts and count the rollbacks added and avoided."""
    if last < 1:
        raise UsageError(f"--last {last}: must be 1 or more")
    records = ledger.records(env)
    judged = {r.get("run_id") for r in records if r.get("kind") == "verdict"}
    judged |= {r.get("watch_of") for r in records if r.get("kind") == "watch-check"}
    runs = [r["run_id"] for r in ledger.runs(env) if r.get("kind_of_run") == "deploy" and r["run_id"] in judged]
    replays = [replay_records(records, run_id, env, overrides, analysis) for run_id in runs[-last:]]
    return {
        "env": env, "overrides": {**overrides, **(analysis or Analysis()).to_dict()},
        "runs": [r.to_dict() for r in replays],
        "replayed": len(replays),
        "rolled_back": sum(r.rolled_back for r in replays),
        "would_roll_back": sum(r.would_roll_back for r in replays),
        "added": sum(r.would_roll_back and not r.rolled_back for r in replays),
        "avoided": sum(r.rolled_back and not r.would_roll_back and r.comparison != "undecided" for r in replays),
        "undecided": sum(r.comparison == "undecided" for r in replays),
        "earlier": sum(r.comparison == "earlier" and r.rolled_back for r in replays),
    }
