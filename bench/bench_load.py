"""`promoter load` against the sandbox: the plan's 100 req/s for a compressed duration, then a stress ramp.

    python bench/bench_load.py [--rate 100] [--duration 45] [--warmup 15] [--stress-step 10] [--ceiling 300]
                               [--reserved N] [--no-stress]

Starts a sandbox for SIT in a temporary directory, warms its execution environments with a short run at a fifth
of the rate (the first requests of a fresh sandbox are cold starts), then runs the load engine
(:func:`promoter.engine.load.run_load`, the Locust child process included) at ``--rate`` for ``--duration``
seconds and prints the achieved rate, p50/p95/p99, the error rate, the verdict against the plan's SLA and where
the machine's CPU went during the run (per process of the sandbox, the load generator, and everything else on
the machine). Then a stress ramp (``--stress-step`` seconds per step, the plan's start and step, up to
``--ceiling``; ``--reserved N`` sets the function's reserved concurrency first) and its failure point.
Loopback only; bounded by the durations given.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@contextmanager
def sandbox(state: Path):
    from promoter.plan.loader import default_plan_path, load_plan
    from promoter.sandbox.manager import Sandbox

    plan_path = default_plan_path(ROOT)
    sb = Sandbox.up(plan=load_plan(plan_path), env="sit", state_dir=state, plan_path=plan_path)
    try:
        os.environ.update(sb.env_vars())
        os.environ.pop("AWS_PROFILE", None)
        yield sb
    finally:
        sb.down()


class CpuSampler:
    """CPU seconds (user + system) per role over a run, sampled every second so that processes which end during
    it (the Locust child) are counted: the sandbox's processes, the load generator, the rest of the machine."""

    def __init__(self, sb) -> None:
        import threading

        self.ports = [u.rsplit(":", 1)[1] for u in sb.endpoints.values() if u.startswith("http")]
        self.state = str(sb.state_dir)
        self.first: dict[int, float] = {}
        self.last: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def role(self, cmd: str, pid: int) -> str | None:
        if "promoter.engine.load_runner" in cmd:
            return "locust child"
        if pid == os.getpid():
            return "this process (supervisor)"
        if "promoter.sandbox." in cmd and any(f"--port {p}" in cmd for p in self.ports):
            for mod, role in (("moto_server", "moto server"), ("lambda_front", "lambda front"),
                              ("api_front", "api front")):
                if mod in cmd:
                    return role
        if self.state in cmd:
            return "lambda workers (python3.12)"
        return None

    def sample(self) -> None:
        import psutil

        for proc in psutil.process_iter(["cmdline", "cpu_times"]):
            try:
                cmd, times = " ".join(proc.info["cmdline"] or []), proc.info["cpu_times"]
            except (psutil.Error, TypeError):
                continue
            if times is None:
                continue
            role = self.role(cmd, proc.pid)
            if role:
                used = times.user + times.system
                self.first.setdefault(proc.pid, used if self.started else 0.0)
                self.last[proc.pid] = (role, used)

    def _busy(self) -> float:
        import psutil

        t = psutil.cpu_times()
        return sum(getattr(t, f, 0.0) for f in ("user", "system", "nice", "irq", "softirq", "steal"))

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            self.sample()

    def __enter__(self) -> CpuSampler:
        self.started = False
        self.sample()  # processes already running: counted from now
        self.first = {pid: used for pid, (_role, used) in self.last.items()}
        self.started = True
        self.busy0, self.t0 = self._busy(), time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
        self.seconds = time.monotonic() - self.t0
        self.busy = self._busy() - self.busy0

    def report(self) -> list[str]:
        import psutil

        roles: dict[str, float] = {}
        for pid, (role, used) in self.last.items():
            roles[role] = roles.get(role, 0.0) + used - self.first.get(pid, 0.0)
        roles["everything else on the machine"] = self.busy - sum(roles.values())
        cores = psutil.cpu_count() or 1
        lines = [f"CPU during the run ({self.seconds:.0f} s; {cores} cores = {cores * self.seconds:.0f} "
                 f"core-seconds; busy {self.busy:.0f}):"]
        for role, used in sorted(roles.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {role:32s} {used:7.1f} s  {100 * used / self.seconds:5.1f} % of one core")
        return lines


def run(settings, label: str):
    from promoter.engine.load import run_load

    def show(line, result):
        if line.get("type") == "interval" and not line.get("tail") and int(line.get("elapsed", 0)) % 5 == 0:
            from promoter.engine.load import Span

            recent = Span.of(result.intervals[-5:])
            print(f"  {label} {line['elapsed']:6.0f} s  target {line['target_rps']:g}  got {line['requests']} req/s  "
                  f"p95 {recent.p(95)} ms  errors {recent.error_rate_pct:.2f} %", file=sys.stderr)

    report = Path(tempfile.mkdtemp(prefix=f"bench-load-{label}-"))
    return run_load(settings, on_line=show, report_dir=report, aws=lambda: _aws(settings)), report


def _aws(settings):
    from promoter.adapters.aws import AwsSessionFactory

    return AwsSessionFactory(region=settings.plan.environment(settings.env).region)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=None, help="default: the plan's load.requests_per_second")
    parser.add_argument("--duration", type=float, default=45)
    parser.add_argument("--warmup", type=float, default=15)
    parser.add_argument("--stress-step", type=int, default=10)
    parser.add_argument("--ceiling", type=float, default=300)
    parser.add_argument("--reserved", type=int, default=None)
    parser.add_argument("--no-stress", action="store_true")
    args = parser.parse_args()

    from promoter.engine.load import LoadSettings
    from promoter.plan.loader import default_plan_path, load_plan

    plan = load_plan(default_plan_path(ROOT))
    plan = plan.model_copy(update={"load": plan.load.model_copy(update={"metrics_wait_seconds": 20})})
    rate = args.rate or plan.load.requests_per_second
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp, sandbox(Path(tmp) / "sb") as sb:
        token = sb.token("campaigns-admin")
        url = sb.env_vars()["PROMOTER_API_URL"]
        base = dict(plan=plan, env="sit", api_url=url, token=token)
        print(f"sandbox up; warming up at {rate / 5:g} req/s for {args.warmup:g} s", file=sys.stderr)
        run(LoadSettings(**base, rate=rate / 5, duration=args.warmup, metrics=False), "warm-up")

        with CpuSampler(sb) as cpu:
            result, report = run(LoadSettings(**base, rate=rate, duration=args.duration), "load")
        t = result.span().to_dict()
        print(f"\nload: target {rate:g} req/s for {args.duration:g} s -> achieved {t['achieved_rps']} req/s, "
              f"{t['requests']} requests")
        print(f"  p50 {t['p50_ms']} ms, p95 {t['p95_ms']} ms, p99 {t['p99_ms']} ms (SLA p95 <= {plan.sla.p95_ms:g})")
        print(f"  error rate {t['error_rate_pct']} % (SLA <= {plan.sla.error_rate_pct:g} %), status {t['status']}")
        for figure in result.figures:
            print(f"  {figure.line()}")
        print(f"  verdict: {result.outcome}; reports in {report}")
        print("\n".join(cpu.report()))

        if not args.no_stress:
            if args.reserved is not None:
                sb._client("lambda").put_function_concurrency(FunctionName=plan.names("sit").function,
                                                              ReservedConcurrentExecutions=args.reserved)
            stress = plan.load.stress.model_copy(update={"time_limit_seconds": 100_000})
            splan = plan.model_copy(update={"load": plan.load.model_copy(update={"stress": stress})})
            sbase = {**base, "plan": splan}
            result, report = run(LoadSettings(**sbase, stress=True, step_seconds=args.stress_step,
                                              ceiling=args.ceiling), "stress")
            s = result.stress
            print(f"\nstress: steps of {args.stress_step} s from {splan.load.stress.start_rps:g} by "
                  f"{splan.load.stress.step_rps:g} req/s up to {args.ceiling:g}"
                  + (f", reserved concurrency {args.reserved}" if args.reserved is not None else ""))
            for step in result.steps:
                print(f"  {step['rate']:6g} req/s: achieved {step['achieved_rps']:7g}, p95 {step['p95_ms']} ms, "
                      f"errors {step['error_rate_pct']:g} %, status {step['status']}: "
                      f"{'held' if step['held'] else 'broke: ' + ', '.join(step['causes'])}")
            print(f"  failure point: highest held {s['highest_held_rps']} req/s, first broken "
                  f"{s['first_broken_rps']} req/s, broke first: {s['broke_first']}; reports in {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
