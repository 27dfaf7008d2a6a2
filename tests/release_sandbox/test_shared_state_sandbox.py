"""Two checkouts, one sandbox environment, the S3 state store in the sandbox's seeded state bucket: one lock,
one ledger, and a rollback made from the other checkout mid-canary reported with who made it and left in place."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import boto3

from promoter.engine.traffic import SteadyTraffic

ENV = "sit"
ROOT = Path(__file__).resolve().parents[2]


def _alias(s) -> dict:
    data = boto3.client("lambda").get_alias(FunctionName=s.names.function, Name=s.names.alias)
    return {"version": data["FunctionVersion"],
            "weights": (data.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}}


def _wait_for(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")


def test_a_rollback_from_the_other_checkout_mid_canary_is_named_and_left(sandbox, built, tmp_path):
    state = sandbox.sb.state["seed"]["state_url"] + "/team"
    env = {k: v for k, v in os.environ.items() if k != "PROMOTER_HOME"}
    env["PROMOTER_STATE"] = state
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    for checkout in (a_dir, b_dir):  # two engineers, two clones of the service
        subprocess.run(["git", "clone", "-q", str(ROOT), str(checkout)], check=True, capture_output=True)

    def b(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "promoter", *args], cwd=b_dir, env=env, capture_output=True,
                              text=True, timeout=120)

    with SteadyTraffic(sandbox.api, sandbox.sb.token("campaigns-viewer"), rate=30, threads=4):
        a = subprocess.Popen([sys.executable, "-m", "promoter", "deploy", "--env", ENV, "--canary", "--artifact",
                              str(built.good), "--release", "v1.1.0", "--allow-untagged", "--yes", "--bake", "60",
                              "--analysis-interval", "2"], cwd=a_dir, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        try:
            _wait_for(lambda: _alias(sandbox)["weights"] == {"2": 0.1}, 90)
            # B sees A's lock, and its rollback is refused while A holds it
            status = json.loads(b("status", "--env", ENV, "--json").stdout)
            assert status["lock"]["pid"] == a.pid and status["lock"]["purpose"] == "deploy"
            refused = b("rollback", "--env", ENV, "--to", "v1.0.0", "--yes")
            assert refused.returncode == 1 and "locked by" in refused.stderr
            # B insists: breaks the lock (recorded) and rolls back
            assert b("lock", "break", "--env", ENV, "--force").returncode == 0
            rolled = b("rollback", "--env", ENV, "--to", "v1.0.0", "--yes", "--json")
            assert rolled.returncode == 0, rolled.stderr
            _out, err = a.communicate(timeout=60)
        finally:
            if a.poll() is None:
                a.kill()
    # A stopped, named B's rollback run from the shared ledger, and left the alias where B put it
    rollback_run = json.loads(rolled.stdout)["run_id"]
    assert a.returncode == 3, err  # the alias is on the stable version: the release counts as rolled back
    assert f"run {rollback_run} (rollback by" in err, err
    assert _alias(sandbox) == {"version": "1", "weights": {}}
    # one ledger: both checkouts' runs, chained, in the bucket; nothing in either directory
    shown = json.loads(b("ledger", "show", "--env", ENV, "--kind", "run-end", "--json").stdout)["records"]
    assert {r["run_id"] for r in shown} >= {rollback_run}
    assert len({r["run_id"] for r in shown}) == 2
    assert json.loads(b("ledger", "verify", "--env", ENV, "--json").stdout)["ok"] is True
    assert not (a_dir / ".promoter" / "ledger").exists() and not (b_dir / ".promoter" / "ledger").exists()
