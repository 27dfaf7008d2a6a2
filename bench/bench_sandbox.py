"""Load the sandbox's API front at a fixed rate and print the latency it holds.

    python bench/bench_sandbox.py [--rate 100] [--duration 20] [--threads 16] [--connections both] [--own]

Starts a sandbox for SIT (``promoter.sandbox.manager.Sandbox.up``; with ``--own``, or when that is not
available, a minimal one of its own: moto, the two fronts, the service deployed through the Lambda front),
creates one campaign, then drives ``GET /v1.0/campaigns/{id}`` at ``--rate`` requests per second for
``--duration`` seconds from a thread pool over real loopback sockets (``--connections``: one keep-alive connection
per thread, a new connection per request, or both, one run after the other), and prints the achieved rate,
p50/p95/p99 latency and the errors. Bounded in count and time; loopback only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
PLAN = ROOT / "plans" / "PROM-CAMP-001.yaml"
ENV = "sit"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, deadline_s: float = 30.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def managed_sandbox(state: Path):
    """(api_url, admin_token) of a sandbox started by the sandbox manager."""
    from promoter.plan.loader import load_plan
    from promoter.sandbox.manager import Sandbox

    sandbox = Sandbox.up(load_plan(PLAN), ENV, state, PLAN, progress=lambda m: print("  " + m, file=sys.stderr),
                         repo=ROOT)
    try:
        yield sandbox.endpoints["api"], sandbox.token("campaigns-admin")
    finally:
        sandbox.down()


@contextmanager
def own_sandbox(state: Path):
    """(api_url, admin_token) of a minimal sandbox: moto, the fronts, the service deployed as version 1."""
    import boto3

    from promoter.engine.build import build
    from promoter.plan.loader import load_plan

    plan = load_plan(PLAN)
    names, region = plan.names(ENV), plan.environment(ENV).region
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    ports = [_free_port() for _ in range(3)]
    moto, lam_url, api = (f"http://127.0.0.1:{p}" for p in ports)
    procs: list[subprocess.Popen] = []

    def spawn(*args: str) -> None:
        log = open(state / f"{args[1].rsplit('.', 1)[-1]}.log", "ab")  # noqa: SIM115
        procs.append(subprocess.Popen([sys.executable, *args], stdout=log, stderr=log, env=env))

    def client(service: str, url: str = moto):
        return boto3.client(service, endpoint_url=url, region_name=region, aws_access_key_id="testing",
                            aws_secret_access_key="testing")

    try:
        spawn("-m", "moto.server", "-H", "127.0.0.1", "-p", str(ports[0]))
        spawn("-m", "promoter.sandbox.lambda_front", "--port", str(ports[1]), "--moto-url", moto, "--state-dir",
              str(state / "lambda"), "--region", region)
        _wait(moto + "/moto-api/")
        _wait(lam_url + "/__sandbox/health")
        role = client("iam").create_role(RoleName=names.execution_role, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        client("dynamodb").create_table(
            TableName=names.table, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": names.table_partition_key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": names.table_partition_key, "AttributeType": "S"}])
        cognito = client("cognito-idp")
        pool = cognito.create_user_pool(PoolName=names.user_pool)["UserPool"]["Id"]
        app = cognito.create_user_pool_client(UserPoolId=pool, ClientName=names.user_pool_client)["UserPoolClient"]
        cognito.create_group(GroupName="campaigns-admin", UserPoolId=pool)
        cognito.admin_create_user(UserPoolId=pool, Username="admin")
        cognito.admin_set_user_password(UserPoolId=pool, Username="admin", Password="Bench-Passw0rd!", Permanent=True)
        cognito.admin_add_user_to_group(UserPoolId=pool, Username="admin", GroupName="campaigns-admin")
        token = cognito.admin_initiate_auth(
            UserPoolId=pool, ClientId=app["ClientId"], AuthFlow="ADMIN_USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": "admin", "PASSWORD": "Bench-Passw0rd!"})["AuthenticationResult"]["IdToken"]
        artifact = build(repo=ROOT, release="v1.0.0", target="lambda", out_dir=state / "dist",
                         python_version=plan.service.python_version, platform=plan.service.wheel_platform)
        lam = client("lambda", lam_url)
        lam.create_function(FunctionName=names.function, Runtime=plan.service.runtime, Role=role,
                            Handler=plan.service.handler, Code={"ZipFile": Path(artifact.path).read_bytes()},
                            Timeout=plan.service.timeout_seconds, MemorySize=plan.service.memory_mb,
                            Environment={"Variables": {"CAMPAIGNS_TABLE": names.table,
                                                       "TEMPLATES_BUCKET": names.templates_bucket}})
        lam.publish_version(FunctionName=names.function)
        lam.create_alias(FunctionName=names.function, Name=names.alias, FunctionVersion="1")
        spawn("-m", "promoter.sandbox.api_front", "--port", str(ports[2]), "--moto-url", moto, "--lambda-url",
              lam_url, "--env", ENV, "--plan", str(PLAN), "--state-dir", str(state / "api"), "--region", region,
              "--user-pool-id", pool)
        _wait(api + "/__sandbox/health")
        yield api, token
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def drive(api_url: str, token: str, rate: float, duration: float, threads: int,
          new_connections: bool = False) -> dict:
    parts = urlsplit(api_url)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    setup = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    setup.request("POST", "/v1.0/campaigns", body=json.dumps({"name": "bench"}), headers=headers)
    created = setup.getresponse()
    body = created.read()
    if created.status != 201:
        raise RuntimeError(f"could not create the bench campaign: {created.status} {body[:300]!r}")
    path = f"/v1.0/campaigns/{json.loads(body)['id']}"
    for _ in range(20):  # warm the execution environments and connections
        setup.request("GET", path, headers=headers)
        setup.getresponse().read()
    setup.close()

    local = threading.local()
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    lock = threading.Lock()

    def one(due: float) -> None:
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        conn = None if new_connections else getattr(local, "conn", None)
        started = time.perf_counter()  # a new connection's handshake counts: it is part of what a client waits
        if conn is None:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            if not new_connections:
                local.conn = conn
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            resp.read()
            outcome = str(resp.status)
        except (OSError, http.client.HTTPException) as exc:
            outcome = type(exc).__name__
            conn.close()
            local.conn = None
        if new_connections:
            conn.close()
        elapsed = (time.perf_counter() - started) * 1000  # from send, so scheduler lag is not counted twice
        with lock:
            latencies.append(elapsed)
            statuses[outcome] += 1

    total = int(rate * duration)
    t0 = time.perf_counter() + 0.2
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for i in range(total):
            pool.submit(one, t0 + i / rate)
    wall = time.perf_counter() - t0
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]  # nearest rank

    return {"requests": total, "wall_s": round(wall, 2), "achieved_rps": round(total / wall, 1),
            "p50_ms": round(pct(50), 2), "p95_ms": round(pct(95), 2), "p99_ms": round(pct(99), 2),
            "mean_ms": round(statistics.fmean(ordered), 2), "max_ms": round(ordered[-1], 2),
            "errors": sum(v for k, v in statuses.items() if k != "200"), "statuses": dict(statuses)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--own", action="store_true", help="start a minimal sandbox instead of the manager's")
    parser.add_argument("--connections", choices=("keep-alive", "new", "both"), default="both",
                        help="one keep-alive connection per thread, a new connection per request, or both runs")
    args = parser.parse_args()
    if args.rate * args.duration > 20000:
        parser.error("at most 20000 requests per run")
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp, ExitStack() as stack:
        state = Path(tmp)
        if args.own:
            api, token = stack.enter_context(own_sandbox(state))
            how = "own"
        else:
            try:
                api, token = stack.enter_context(managed_sandbox(state / "managed"))
                how = "manager"
            except Exception as exc:  # the manager is optional for the bench
                print(f"sandbox manager unavailable ({type(exc).__name__}: {exc}); starting a minimal sandbox",
                      file=sys.stderr)
                api, token = stack.enter_context(own_sandbox(state))
                how = "own"
        modes = ["keep-alive", "new"] if args.connections == "both" else [args.connections]
        results = []
        for mode in modes:
            result = drive(api, token, args.rate, args.duration, args.threads, new_connections=mode == "new")
            result["sandbox"], result["connections"] = how, mode
            results.append(result)
    print(json.dumps(results, indent=2))
    for result in results:
        print(f"GET /v1.0/campaigns/{{id}} ({result['connections']} connections): {result['achieved_rps']} req/s "
              f"for {result['wall_s']} s; p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, "
              f"p99 {result['p99_ms']} ms; {result['errors']} errors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
