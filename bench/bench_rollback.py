"""Time to automatic rollback, and time to 100 % for a good release: in the sandbox, under steady traffic, deploy
a release with canary analysis and print what it cost.

    python bench/bench_rollback.py [--fault errors|latency|none] [--rate 30] [--bake 10] [--interval S]
                                   [--runs 1] [--min-invocations N] [--start-after N]

For a fault: the time from the faulty version's first request to the alias back on stable (and from its first
failed answer, which is when the fault began to show), and how many requests (and failed requests) the faulty
version served. The sandbox stamps a version's first request when it answers it, so for a latency fault the time
from the shift to 10 % is printed too. For a good release
(``--fault none``): the time from its first request to 100 %, and whether any analysis ever judged it failed;
``--runs 20`` deploys 20 good releases one after the other in the same sandbox.

``errors`` makes 30 % of the new version's answers 500s (CHAOS_ERROR_RATE) on requests through the alias
(CHAOS_VIA), so the pre-traffic gate, which invokes the version directly, passes, users see the fault from their
first request, and only the canary analysis can stop it; the canary sees those 500s through the service's
per-version ServerErrors metric. ``--start-after N`` lets each execution environment serve N requests through
the alias before the fault (CHAOS_START_AFTER), a release that goes bad under sustained traffic. ``latency`` makes it
slower than the plan's p95 threshold (CHAOS_LATENCY_MS). The plan's thresholds, steps, minimum invocations and
extension are used as they are; ``--bake`` compresses the bakes below 100 % and, unless ``--interval`` is
given, the analysis interval with them. ``--min-invocations`` lowers the plan's minimum for comparison.
Traffic goes to the sandbox on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

FAULTS = {
    "latency": {"CHAOS_LATENCY_MS": "2300"},
    "errors": {"CHAOS_ERROR_RATE": "0.3", "CHAOS_VIA": "live"},
    "none": {},
}


def _ts(record: dict) -> float:
    return datetime.fromisoformat(record["ts"].replace("Z", "+00:00")).timestamp()


def _stats(api: str) -> dict:
    with urllib.request.urlopen(api + "/__sandbox/stats", timeout=5) as resp:
        return json.load(resp)


def _flush(api: str) -> None:
    request = urllib.request.Request(api + "/__sandbox/flush", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--bake", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=None, help="default: the plan's, compressed with --bake")
    parser.add_argument("--fault", choices=sorted(FAULTS), default="errors")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--min-invocations", type=int, default=None, help="default: the plan's")
    parser.add_argument("--start-after", type=int, default=0,
                        help="requests through the alias each execution environment serves before the fault")
    args = parser.parse_args()

    from promoter.adapters.aws import AwsSessionFactory
    from promoter.engine import release
    from promoter.engine.build import build
    from promoter.engine.canary import Window
    from promoter.engine.ledger import Ledger
    from promoter.engine.traffic import SteadyTraffic
    from promoter.errors import PromoterError
    from promoter.plan import load_plan
    from promoter.sandbox.manager import Sandbox

    env = "sit"
    plan = load_plan()
    if args.min_invocations is not None:
        plan = plan.model_copy(update={"canary": plan.canary.model_copy(
            update={"min_invocations": args.min_invocations})})
    c = plan.canary
    work = Path(tempfile.mkdtemp(prefix="bench-rollback-"))
    plan_file = work / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(plan.model_dump(mode="json"), sort_keys=False))
    artifact = build(repo=ROOT, release="v1.1.0", target="lambda", out_dir=work / "dist",
                     python_version=plan.service.python_version, platform=plan.service.wheel_platform)
    fault = {**FAULTS[args.fault]}
    if "CHAOS_VIA" in fault:
        fault["CHAOS_VIA"] = plan.names(env).alias
    if args.start_after:
        fault["CHAOS_START_AFTER"] = str(args.start_after)
    clock = release.step_clock(plan, release.Step(10, args.bake), args.interval)
    print(f"fault: {args.fault} {fault}; traffic {args.rate:g} req/s; bake {args.bake:g}s, analysis every "
          f"{clock.interval:g}s, extension up to {clock.extension_seconds:g}s; min_invocations {c.min_invocations}, "
          f"false_alarm_rate {c.false_alarm_rate:g}, pass_confidence {c.pass_confidence:g}")
    sandbox = Sandbox.up(plan=plan, env=env, state_dir=work / "sandbox", plan_path=plan_file, repo=ROOT)
    failures = 0
    figures: list[dict] = []
    try:
        os.environ.update(sandbox.env_vars())
        api = sandbox.env_vars()["PROMOTER_API_URL"]
        ledger = Ledger(work / "home")
        ports = release.Ports.for_aws(AwsSessionFactory(region=sandbox.region), plan, env, ledger)
        with SteadyTraffic(api, sandbox.token("campaigns-viewer"), rate=args.rate, threads=6):
            time.sleep(2)  # stable traffic before the release
            for run in range(1, args.runs + 1):
                settings = release.DeploySettings(
                    plan=plan, env=env, release="v1.1.0", canary=True, artifact=Path(artifact.path),
                    allow_untagged=True, env_vars={**fault, "BENCH_RUN": str(run)},
                    bake_seconds=args.bake, analysis_interval=args.interval)
                started = time.time()
                try:
                    record = release.deploy(settings, ports)
                    outcome = record.outcome
                except PromoterError as exc:
                    outcome = f"{type(exc).__name__} (exit {int(exc.exit_code)}): {exc}"
                time.sleep(1.5)  # the sandbox flushes its metrics every second
                _flush(api)
                failures += not _report(run, args.fault, outcome, ledger, env, api, ports, started, Window,
                                        figures)
    finally:
        sandbox.down()
    _summary(args.fault, figures, args.runs)
    return 1 if failures else 0


def _quantiles(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f}, mean {statistics.fmean(values):.2f}, max {max(values):.2f}"


def _summary(fault: str, figures: list[dict], runs: int) -> None:
    """Over all runs: the goal's figures (under 3 s and under 20 requests for a fault; never failed for a
    good release)."""
    if runs < 2:
        return
    print(f"over {runs} runs ({len(figures)} with figures):")
    if not figures:
        return
    if fault == "none":
        print(f"  time to 100 %: {_quantiles([f['seconds'] for f in figures])} s; "
              f"ever judged failed: {sum(f['ever_failed'] for f in figures)} of {len(figures)}")
        return
    seconds = [f["seconds"] for f in figures]
    served = [f["served"] for f in figures]
    print(f"  from the first request to the alias back on stable: {_quantiles(seconds)} s; under 3 s in "
          f"{sum(s < 3 for s in seconds)} of {len(seconds)}")
    print(f"  requests the faulty version served: {_quantiles(served)}; under 20 in "
          f"{sum(n < 20 for n in served)} of {len(served)}; failed requests: "
          f"{_quantiles([f['failed'] for f in figures])}")


def _report(run, fault, outcome, ledger, env, api, ports, started, window_type, figures) -> bool:
    stats = _stats(api)
    runs = ledger.runs(env)
    run_id = runs[-1]["run_id"]
    changes = ledger.records(env, kind="alias-change", run_id=run_id)
    verdicts = ledger.records(env, kind="verdict", run_id=run_id)
    candidate = next((str(v) for ch in changes for v in (ch["after"].get("weights") or {})), None)
    first = stats.get("first_seen", {}).get(candidate) if candidate else None
    print(f"run {run}: outcome: {outcome}")
    if candidate is None or first is None:
        print("  the new version took no traffic (see outcome)")
        return False
    period = 60 * (int((time.time() - started) // 60) + 3)  # the whole run, in one datapoint
    served = ports.metrics.version_metrics(
        candidate, window_type(start=started - 60, end=started - 60 + period, period=period, elapsed=period))
    failed = int(served.errors + served.server_errors)
    ever_failed = any(v.get("outcome") == "fail" for v in verdicts)
    last = verdicts[-1] if verdicts else {}
    print(f"  new version {candidate} served {stats['versions'].get(candidate, 0)} requests through the API, "
          f"{failed} failed (of {served.invocations:g} invocations in its metrics); {len(verdicts)} analyses, "
          f"ever judged failed: {'yes' if ever_failed else 'no'}")
    if last:
        print(f"  last verdict at {last['step']}% after {last['elapsed']:g}s: {last.get('line')}")
    back = next((ch for ch in reversed(changes) if ch.get("step") == "rollback"), None)
    full = next((ch for ch in changes if ch.get("step") == 100), None)
    if fault == "none":
        if full is None:
            print("  never reached 100 %")
            return False
        print(f"  time from its first request (answered) to 100 %: {_ts(full) - float(first):.2f}s")
        figures.append({"seconds": _ts(full) - float(first), "ever_failed": ever_failed})
        return not ever_failed
    if back is None:
        print("  no automatic rollback happened")
        return False
    shifted = next((ch for ch in changes if ch.get("step") == 10), None)
    since_shift = f"; from the shift to 10 %: {_ts(back) - _ts(shifted):.2f}s" if shifted else ""
    failed_first = stats.get("first_failed", {}).get(candidate)
    since_failed = f"; from its first failed answer: {_ts(back) - float(failed_first):.2f}s" if failed_first else ""
    print(f"  time from its first request (answered) to alias back on stable: {_ts(back) - float(first):.2f}s"
          f"{since_failed}{since_shift}")
    figures.append({"seconds": _ts(back) - float(first), "served": stats["versions"].get(candidate, 0),
                    "failed": failed})
    return True


if __name__ == "__main__":
    sys.exit(main())
