"""Time to automatic rollback: in the sandbox, under steady traffic, deploy a faulty release with canary analysis
and measure (1) the time from the faulty version's first request to the alias back on stable and (2) how many
requests the faulty version served.

    python bench/bench_rollback.py [--rate 30] [--bake 10] [--interval 2] [--fault latency|errors]

``latency`` (default) makes the new version slower than the plan's p95 threshold (CHAOS_LATENCY_MS); ``errors``
makes 30 % of its answers 500s (CHAOS_ERROR_RATE) once each execution environment has served ten requests
(CHAOS_START_AFTER, so the pre-traffic gate's requests pass and only the canary analysis can stop it); the canary
sees those 500s through the service's per-version ServerErrors metric. The plan's thresholds and steps are
used; min_invocations is lowered to 5 for a short bake.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--bake", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--fault", choices=["latency", "errors"], default="latency")
    args = parser.parse_args()

    from promoter.adapters.aws import AwsSessionFactory
    from promoter.engine import release
    from promoter.engine.build import build
    from promoter.engine.ledger import Ledger
    from promoter.engine.traffic import SteadyTraffic
    from promoter.errors import PromoterError
    from promoter.plan import load_plan
    from promoter.sandbox.manager import Sandbox

    env = "sit"
    plan = load_plan()
    plan = plan.model_copy(update={"canary": plan.canary.model_copy(update={"min_invocations": 5,
                                                                            "max_extension_seconds": 10})})
    work = Path(tempfile.mkdtemp(prefix="bench-rollback-"))
    plan_file = work / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(plan.model_dump(mode="json"), sort_keys=False))
    artifact = build(repo=ROOT, release="v1.1.0", target="lambda", out_dir=work / "dist",
                     python_version=plan.service.python_version, platform=plan.service.wheel_platform)
    sandbox = Sandbox.up(plan=plan, env=env, state_dir=work / "sandbox", plan_path=plan_file, repo=ROOT)
    try:
        os.environ.update(sandbox.env_vars())
        api = sandbox.env_vars()["PROMOTER_API_URL"]
        ledger = Ledger(work / "home")
        ports = release.Ports.for_aws(AwsSessionFactory(region=sandbox.region), plan, env, ledger)
        fault = {
            "latency": {"CHAOS_LATENCY_MS": "2300"},
            "errors": {"CHAOS_ERROR_RATE": "0.3", "CHAOS_START_AFTER": "10"},
        }[args.fault]
        settings = release.DeploySettings(plan=plan, env=env, release="v1.1.0", canary=True,
                                          artifact=Path(artifact.path), allow_untagged=True, env_vars=fault,
                                          bake_seconds=args.bake, analysis_interval=args.interval)
        with SteadyTraffic(api, sandbox.token("campaigns-viewer"), rate=args.rate, threads=6):
            time.sleep(2)  # stable traffic before the release
            try:
                record = release.deploy(settings, ports)
                outcome = record.outcome
            except PromoterError as exc:
                outcome = f"{type(exc).__name__} (exit {int(exc.exit_code)}): {exc}"
            time.sleep(1)
        with urllib.request.urlopen(api + "/__sandbox/stats", timeout=5) as resp:
            stats = json.load(resp)
        changes = ledger.records(env, kind="alias-change")
        back = next((c for c in reversed(changes) if c.get("step") == "rollback"), None)
        faulty = next((c["after"]["weights"] for c in changes if c["after"]["weights"]), {})
        faulty_version = next(iter(faulty), None)
        served = int(stats["versions"].get(faulty_version, 0)) if faulty_version else 0
        first = stats.get("first_seen", {}).get(faulty_version) if faulty_version else None
        print(f"outcome: {outcome}")
        print(f"fault: {args.fault} {fault}; traffic {args.rate:g} req/s; bake {args.bake:g}s, analysis every "
              f"{args.interval:g}s")
        if back is None or first is None:
            print("no automatic rollback happened (see outcome)")
            return 1
        back_at = datetime.fromisoformat(back["ts"].replace("Z", "+00:00")).timestamp()
        print(f"faulty version {faulty_version} served {served} requests (of {stats['total']} total)")
        print(f"time from its first request to alias back on stable: {back_at - float(first):.2f}s")
        return 0
    finally:
        sandbox.down()


if __name__ == "__main__":
    sys.exit(main())
