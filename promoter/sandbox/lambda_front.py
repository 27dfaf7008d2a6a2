"""The sandbox's Lambda endpoint: moto's Lambda API, with ``Invoke`` run locally and AWS's 412 guards.

Run as::

    python -m promoter.sandbox.lambda_front --port P --moto-url URL --state-dir DIR --region R

Every request is forwarded to moto verbatim (path, method, headers, body), except:

1. ``Invoke`` runs the code of the resolved version (a number, an alias with its weighted routing, or
   ``$LATEST``) in a warm worker process per version (:mod:`promoter.sandbox.workers`), with the version's
   handler, environment, memory size and timeout, and answers with Lambda's contract: function errors as
   ``200`` + ``X-Amz-Function-Error: Unhandled``, ``X-Amz-Executed-Version``, ``X-Amz-Log-Type: Tail``;
   every invocation is recorded in CloudWatch (``AWS/Lambda`` metrics, the function's log group, and the
   embedded-metric-format records the function prints);
2. ``CreateFunction`` / ``UpdateFunctionCode`` keep a copy of the package (keyed by sha256) on the way through,
   which is how a version's CodeSha256 leads to its code;
3. ``UpdateAlias`` with a stale ``RevisionId`` and ``PublishVersion`` with a ``CodeSha256`` other than
   ``$LATEST``'s are refused with ``412 PreconditionFailedException``; moto keeps an alias's RevisionId constant,
   so the front issues a new one on every successful update and shows it in every alias response;
4. concurrency as Lambda: a version gets an execution environment per concurrent invocation, up to the function's
   reserved concurrency (``PutFunctionConcurrency``) or else the account's (``--concurrency-limit``,
   ``SANDBOX_ACCOUNT_CONCURRENCY``); beyond it ``429 TooManyRequestsException`` with Lambda's reason, counted in
   ``Throttles``; once an alias change leaves a numbered version unreferenced by every alias, its environments are
   retired.

Sandbox endpoints: ``GET /__sandbox/health``, ``GET /__sandbox/workers``, ``GET /__sandbox/stats``,
``POST /__sandbox/flush``, and ``/__sandbox/faults`` (:mod:`promoter.sandbox.faults`: throttling, 5xx, latency or a
reply dropped after the call took effect, per Lambda operation, for a count of calls or a time). The optional
request header ``X-Sandbox-Resource: <alias>`` on an ``Invoke`` by version number attributes the invocation to that
alias in the metrics and in the handler's ``context.invoked_function_arn`` (what Lambda does when it routes an alias
invocation), used by the API front, which picks the version itself.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import math
import os
import random
import re
import signal
import sys
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from promoter.sandbox import faults as faults_mod
from promoter.sandbox.metrics import FLUSH_INTERVAL, Datapoint, Telemetry, emf_datapoints
from promoter.sandbox.workers import (
    CodeStore,
    CodeUnavailable,
    FunctionVersion,
    WorkerCrashed,
    WorkerInitFailed,
    WorkerPool,
    WorkerTimedOut,
    code_sha_to_hex,
)

log = logging.getLogger("promoter.sandbox.lambda_front")

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length"}
FUNCTIONS = r"/(?:2015-03-31|2017-03-31|2018-10-31|2019-09-30|2020-06-30|2021-10-31)/functions"
INVOKE = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")
CREATE_FUNCTION = re.compile(r"^/2015-03-31/functions/?$")
UPDATE_CODE = re.compile(r"^/2015-03-31/functions/([^/]+)/code$")
PUBLISH_VERSION = re.compile(r"^/2015-03-31/functions/([^/]+)/versions$")
ALIASES = re.compile(r"^/2015-03-31/functions/([^/]+)/aliases/?$")
ALIAS = re.compile(r"^/2015-03-31/functions/([^/]+)/aliases/([^/]+)$")
ANY_FUNCTION = re.compile(FUNCTIONS + r"/([^/]+)")

CONFIG_TTL_VERSION = 10.0  # published versions are immutable; the TTL only bounds a deleted function's life
CONFIG_TTL_LATEST = 1.0
ALIAS_TTL = 0.25


@dataclass
class Reply:
    status: int  # DROP: close the connection without answering
    headers: dict[str, str]
    body: bytes


DROP = 0


def error_reply(status: int, code: str, message: str, *, kind: str = "User", extra: dict | None = None) -> Reply:
    body = {"Type": kind, "message": message, **(extra or {})}
    return Reply(status, {"Content-Type": "application/json", "x-amzn-ErrorType": code,
                          "x-amzn-RequestId": str(uuid.uuid4())}, json.dumps(body).encode())


def split_function(raw: str) -> tuple[str, str | None]:
    """A FunctionName path segment (name, ``name:qualifier``, partial or full ARN) -> (name, qualifier)."""
    name = unquote(raw)
    if name.startswith("arn:"):
        parts = name.split(":")
        return parts[6], (parts[7] if len(parts) > 7 and parts[7] else None)
    if ":" in name:
        parts = name.split(":")
        if len(parts) == 3 and parts[0].isdigit():  # 123456789012:function:name
            return parts[2], None
        if len(parts) >= 3 and parts[1] == "function":
            return parts[2], (parts[3] if len(parts) > 3 else None)
        return parts[0], parts[1] or None
    return name, None


def choose_version(alias: dict, rnd: float) -> str:
    """The version an alias invocation runs: the primary, or an additional version by its weight."""
    weights = ((alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights")) or {}
    cumulative = 0.0
    for version, weight in sorted(weights.items()):
        cumulative += float(weight)
        if rnd < cumulative:
            return str(version)
    return str(alias["FunctionVersion"])


class MotoClient:
    """A keep-alive HTTP client to moto for the front's own lookups and for forwarding."""

    def __init__(self, url: str, region: str) -> None:
        import urllib3

        parts = urlsplit(url)
        self.url = url.rstrip("/")
        self.region = region
        self.pool = urllib3.HTTPConnectionPool(parts.hostname, parts.port or 80, maxsize=64, block=False,
                                               retries=False, timeout=urllib3.Timeout(connect=5, read=60))

    def auth(self, service: str) -> str:
        day = time.strftime("%Y%m%d", time.gmtime())
        key = os.environ.get("AWS_ACCESS_KEY_ID", "testing")
        return (f"AWS4-HMAC-SHA256 Credential={key}/{day}/{self.region}/{service}/aws4_request, "
                "SignedHeaders=host, Signature=0")

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                service: str = "lambda") -> Reply:
        sent = dict(headers or {})
        if not any(k.lower() == "authorization" for k in sent):
            sent["Authorization"] = self.auth(service)
        resp = self.pool.urlopen(method, path, body=body, headers=sent, redirect=False, preload_content=True)
        out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP}
        return Reply(resp.status, out, resp.data)

    def json(self, method: str, path: str, payload: dict | None = None) -> tuple[Reply, dict | None]:
        body = json.dumps(payload).encode() if payload is not None else None
        reply = self.request(method, path, body, {"Content-Type": "application/json"} if body else None)
        try:
            data = json.loads(reply.body) if reply.body else {}
        except ValueError:
            data = None
        return reply, data


@dataclass
class Stats:
    invocations: int = 0
    errors: int = 0
    throttles: int = 0


class LambdaFront:
    def __init__(self, moto_url: str, state_dir: Path, region: str, *, own_url: str = "",
                 flush_interval: float = FLUSH_INTERVAL, concurrency_limit: int = 50,
                 max_workers_per_version: int | None = None) -> None:
        import boto3

        self.moto = MotoClient(moto_url, region)
        self.region = region
        self.state_dir = state_dir
        self.code = CodeStore(state_dir)
        self.log_dir = state_dir / "worker-logs"
        self.concurrency_limit = concurrency_limit  # the account's concurrency
        self.max_workers_per_version = max_workers_per_version  # None: as many as the function's concurrency
        self._reserved: dict[str, tuple[float, int | None]] = {}
        self._lock = threading.Lock()
        self._fn_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._pools: dict[FunctionVersion, WorkerPool] = {}
        self._config_cache: dict[tuple[str, str], tuple[float, dict]] = {}
        self._alias_cache: dict[tuple[str, str], tuple[float, dict]] = {}
        self._revisions: dict[tuple[str, str], str] = {}
        self._inflight: dict[str, int] = defaultdict(int)
        self.stats: dict[tuple[str, str], Stats] = defaultdict(Stats)
        self.faults = faults_mod.FaultBook()
        session = boto3.session.Session(aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
                                        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
                                        region_name=region)
        self.telemetry = Telemetry(session.client("cloudwatch", endpoint_url=moto_url),
                                   session.client("logs", endpoint_url=moto_url), interval=flush_interval)
        self.base_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "TZ": "UTC",
            "HOME": os.environ.get("HOME", "/tmp"),
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
            "AWS_SESSION_TOKEN": os.environ.get("AWS_SESSION_TOKEN", "testing"),
            "AWS_ENDPOINT_URL": moto_url,
        }
        if own_url:
            self.base_env["AWS_ENDPOINT_URL_LAMBDA"] = own_url

    # ---------------------------------------------------------------------------------------------- lookups

    def function_config(self, fn: str, version: str) -> tuple[Reply | None, dict | None]:
        key = (fn, version)
        now = time.monotonic()
        cached = self._config_cache.get(key)
        if cached and cached[0] > now:
            return None, cached[1]
        reply, data = self.moto.json("GET", f"/2015-03-31/functions/{quote(fn, safe='')}/configuration"
                                            f"?Qualifier={quote(version, safe='')}")
        if not 200 <= reply.status < 300 or not data:
            return reply, None
        ttl = CONFIG_TTL_LATEST if version == "$LATEST" else CONFIG_TTL_VERSION
        self._config_cache[key] = (now + ttl, data)
        return None, data

    def alias(self, fn: str, name: str) -> tuple[Reply | None, dict | None]:
        key = (fn, name)
        now = time.monotonic()
        cached = self._alias_cache.get(key)
        if cached and cached[0] > now:
            return None, cached[1]
        reply, data = self.moto.json("GET", f"/2015-03-31/functions/{quote(fn, safe='')}/aliases/"
                                            f"{quote(name, safe='')}")
        if not 200 <= reply.status < 300 or not data:
            return reply, None
        self._alias_cache[key] = (now + ALIAS_TTL, data)
        return None, data

    def invalidate(self, fn: str) -> None:
        with self._lock:
            for cache in (self._config_cache, self._alias_cache):
                for key in [k for k in cache if k[0] == fn]:
                    cache.pop(key, None)
            self._reserved.pop(fn, None)

    def reserved_concurrency(self, fn: str) -> int | None:
        """The function's reserved concurrency (PutFunctionConcurrency), None when it has none."""
        now = time.monotonic()
        cached = self._reserved.get(fn)
        if cached and cached[0] > now:
            return cached[1]
        reply, data = self.moto.json("GET", f"/2019-09-30/functions/{quote(fn, safe='')}/concurrency")
        value = (data or {}).get("ReservedConcurrentExecutions") if 200 <= reply.status < 300 else None
        self._reserved[fn] = (now + CONFIG_TTL_LATEST, int(value) if value is not None else None)
        return self._reserved[fn][1]

    def concurrency_of(self, fn: str) -> tuple[int, str]:
        """How many executions ``fn`` may run at once, and the throttle reason beyond it."""
        reserved = self.reserved_concurrency(fn)
        if reserved is not None:
            return reserved, "ReservedFunctionConcurrentInvocationLimitExceeded"
        return self.concurrency_limit, "ConcurrentInvocationLimitExceeded"

    def reap(self, fn: str) -> list[str]:
        """Retire the execution environments of ``fn``'s numbered versions that no alias points at any more."""
        reply, data = self.moto.json("GET", f"/2015-03-31/functions/{quote(fn, safe='')}/aliases")
        if not 200 <= reply.status < 300 or data is None:
            return []
        referenced = set()
        for item in data.get("Aliases") or []:
            referenced.add(str(item.get("FunctionVersion")))
            referenced.update(str(v) for v in ((item.get("RoutingConfig") or {}).get("AdditionalVersionWeights")
                                               or {}))
        with self._lock:
            retired = [s for s in self._pools if s.function_name == fn and s.version != "$LATEST"
                       and s.version not in referenced]
            pools = [self._pools.pop(s) for s in retired]
        for pool in pools:
            pool.close()  # idle environments stop now; busy ones when their invocation ends
        if retired:
            log.info("reaped the environments of %s versions %s: no alias points at them", fn,
                     ", ".join(sorted(s.version for s in retired)))
        return [s.version for s in retired]

    def pool_for(self, spec: FunctionVersion) -> WorkerPool:
        with self._lock:
            pool = self._pools.get(spec)
            if pool is not None:
                return pool
            code_dir = self.code.extracted(spec.code_digest)
            # A changed configuration of the same version (only $LATEST can change) retires the old environments.
            for old in [s for s in self._pools if (s.function_name, s.version) == (spec.function_name, spec.version)]:
                self._pools.pop(old).close()
            pool = WorkerPool(spec, code_dir, self.log_dir, self.base_env, self.max_workers_per_version or 1)
            self._pools[spec] = pool
            return pool

    def workers(self) -> list[dict]:
        with self._lock:
            pools = list(self._pools.values())
        return [{"function": w.spec.function_name, "version": w.spec.version, "pid": w.pid, "alive": w.alive(),
                 "log_stream": w.log_stream, "invocations": w.invocations, "runtime": w.spec.runtime,
                 "python": w.interpreter} for p in pools for w in p.workers()]

    def shutdown(self) -> None:
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool.kill_all()
        try:
            self.telemetry.stop()
        except Exception:
            log.exception("final telemetry flush failed")

    # ---------------------------------------------------------------------------------------------- dispatch

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        p = urlsplit(path).path
        if p == faults_mod.PATH:
            status, answer = self.faults.endpoint(method, body)
            return Reply(status, {"Content-Type": "application/json"}, answer)
        if p.startswith("/__sandbox/"):
            return self.sandbox_endpoint(method, p)
        rule = self.faults.take("lambda", faults_mod.lambda_operation(method, p))
        if rule is None:
            return self.dispatch(method, path, headers, body)
        log.info("injecting %s into %s %s (fault %s)", rule.kind, method, p, rule.id)
        if rule.kind in ("throttle", "error"):
            return Reply(*faults_mod.error_body(rule, "rest-json"))
        if rule.kind == "latency":
            time.sleep(rule.latency_ms / 1000.0)
            return self.dispatch(method, path, headers, body)
        self.dispatch(method, path, headers, body)  # drop: the call takes effect, its reply is lost
        return Reply(DROP, {}, b"")

    def dispatch(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        route = urlsplit(path)
        p = route.path
        if method == "POST" and (m := INVOKE.match(p)):
            return self.invoke(m.group(1), parse_qs(route.query), headers, body)
        if method == "PUT" and (m := ALIAS.match(p)):
            return self.update_alias(m.group(1), unquote(m.group(2)), path, headers, body)
        if method == "POST" and (m := PUBLISH_VERSION.match(p)):
            return self.publish_version(m.group(1), path, headers, body)
        if method == "POST" and CREATE_FUNCTION.match(p):
            return self.capture_code(None, path, method, headers, body)
        if method == "PUT" and (m := UPDATE_CODE.match(p)):
            return self.capture_code(m.group(1), path, method, headers, body)
        reply = self.moto.request(method, path, body or None, headers)
        m = ANY_FUNCTION.match(p)
        if m:
            fn = split_function(m.group(1))[0]
            if method != "GET":
                self.invalidate(fn)
            if (am := ALIAS.match(p)) or ALIASES.match(p):
                reply = self.rewrite_alias_reply(fn, method, am.group(2) if am else None, reply)
                if method in ("POST", "DELETE") and 200 <= reply.status < 300:
                    self.reap(fn)
        return reply

    def sandbox_endpoint(self, method: str, path: str) -> Reply:
        ok = {"Content-Type": "application/json"}
        if path == "/__sandbox/health":
            return Reply(200, ok, b'{"status":"ok"}')
        if path == "/__sandbox/workers":
            return Reply(200, ok, json.dumps(self.workers()).encode())
        if path == "/__sandbox/stats":
            stats = [{"function": fn, "version": v, **vars(s)} for (fn, v), s in sorted(self.stats.items())]
            return Reply(200, ok, json.dumps({"versions": stats}).encode())
        if path == "/__sandbox/flush" and method == "POST":
            self.telemetry.flush()
            return Reply(200, ok, b'{"flushed":true}')
        return Reply(404, ok, b'{"message":"no such sandbox endpoint"}')

    # ---------------------------------------------------------------------------------------------- Invoke

    def invoke(self, raw_name: str, query: dict, headers: dict[str, str], body: bytes) -> Reply:
        request_id = str(uuid.uuid4())
        fn, qualifier = split_function(raw_name)
        qualifier = (query.get("Qualifier") or [qualifier])[0]
        lower = {k.lower(): v for k, v in headers.items()}
        invocation_type = lower.get("x-amz-invocation-type", "RequestResponse")
        via_alias = lower.get("x-sandbox-resource")
        if qualifier in (None, "", "$LATEST"):
            version, resource = "$LATEST", (f"{fn}:$LATEST" if qualifier else None)
        elif qualifier.isdigit():
            version, resource = qualifier, f"{fn}:{qualifier}"
        else:
            failure, alias = self.alias(fn, qualifier)
            if failure is not None:
                return failure
            version, resource, via_alias = choose_version(alias, random.random()), f"{fn}:{qualifier}", qualifier
        if via_alias:
            resource = f"{fn}:{via_alias}"
        failure, config = self.function_config(fn, version)
        if failure is not None:
            return failure
        try:
            body.decode("utf-8") and json.loads(body)
        except ValueError:
            return error_reply(400, "InvalidRequestContentException", "Could not parse request body into json")
        dims = [(("FunctionName", fn),)]
        if resource:
            dims.append((("FunctionName", fn), ("Resource", resource)))
            if via_alias:
                dims.append((("FunctionName", fn), ("Resource", resource), ("ExecutedVersion", version)))
        limit, reason = self.concurrency_of(fn)
        with self._lock:
            # a reserved function is held to its reservation; the others share the account's concurrency
            running = self._inflight[fn] if reason.startswith("Reserved") else sum(
                n for f, n in self._inflight.items() if self._reserved.get(f, (0, None))[1] is None)
            if running >= limit:
                self.stats[(fn, version)].throttles += 1
                throttled = True
            else:
                self._inflight[fn] += 1
                concurrent = self._inflight[fn]
                throttled = False
        if throttled:
            self.telemetry.metrics.add(Datapoint("AWS/Lambda", "Throttles", d, 1.0) for d in dims)
            return error_reply(429, "TooManyRequestsException", "Rate Exceeded.", extra={"Reason": reason})
        if invocation_type == "DryRun":
            with self._lock:
                self._inflight[fn] -= 1
            return Reply(204, {"x-amzn-RequestId": request_id}, b"")
        if invocation_type == "Event":
            threading.Thread(target=self._run_and_record, daemon=True,
                             args=(fn, version, qualifier, config, body, request_id, dims, concurrent)).start()
            return Reply(202, {"x-amzn-RequestId": request_id, "X-Amz-Executed-Version": version}, b"")
        # the context's invoked_function_arn is the ARN the caller named: through an alias, the alias's
        invoked = via_alias or qualifier
        payload, error, tail = self._run_and_record(fn, version, invoked, config, body, request_id, dims,
                                                    concurrent)
        out = {"Content-Type": "application/json", "x-amzn-RequestId": request_id,
               "X-Amz-Executed-Version": version}
        if error is not None:
            out["X-Amz-Function-Error"] = "Unhandled"
        if lower.get("x-amz-log-type") == "Tail":
            out["X-Amz-Log-Result"] = base64.b64encode(tail.encode()[-4096:]).decode()
        return Reply(200, out, payload)

    def _run_and_record(self, fn: str, version: str, qualifier: str | None, config: dict, body: bytes,
                        request_id: str, dims: list, concurrent: int) -> tuple[bytes, dict | None, str]:
        try:
            return self._run(fn, version, qualifier, config, body, request_id, dims, concurrent)
        finally:
            with self._lock:
                self._inflight[fn] -= 1

    def _run(self, fn: str, version: str, qualifier: str | None, config: dict, body: bytes, request_id: str,
             dims: list, concurrent: int) -> tuple[bytes, dict | None, str]:
        arn = config["FunctionArn"]
        unqualified = ":".join(arn.split(":")[:7])
        timeout_s = float(config.get("Timeout") or 3)
        memory = int(config.get("MemorySize") or 128)
        spec = FunctionVersion(
            function_name=fn, version=version, code_digest=code_sha_to_hex(config["CodeSha256"]),
            handler=config.get("Handler") or "", timeout_s=timeout_s, memory_mb=memory,
            environment=tuple(sorted(((config.get("Environment") or {}).get("Variables") or {}).items())),
            function_arn=unqualified, region=arn.split(":")[3], runtime=config.get("Runtime") or "python3.12",
        )
        started = time.perf_counter()
        error: dict | None = None
        payload = b""
        output = ""
        stream = None
        init_ms = None
        rss = 0
        try:
            pool = self.pool_for(spec)
            limit = self.concurrency_of(fn)[0]
            pool.max_workers = max(1, min(limit, self.max_workers_per_version or limit))
            worker = pool.acquire(wait_s=max(30.0, timeout_s))
        except CodeUnavailable:
            error = {"errorType": "Sandbox.CodeUnavailable", "errorMessage":
                     f"the package with CodeSha256 {config['CodeSha256']} of {fn}:{version} did not pass through "
                     "the sandbox's Lambda endpoint; create or update the function's code through it"}
        except WorkerInitFailed as exc:
            error = exc.error
        except WorkerTimedOut:
            error = {"errorType": "Sandbox.Timedout", "errorMessage": f"RequestId: {request_id} Error: "
                     "no execution environment became available"}
        else:
            stream = worker.log_stream
            if worker.invocations == 0:
                init_ms = worker.init_ms
            context = {
                "function_name": fn, "function_version": version,
                "invoked_function_arn": f"{unqualified}:{qualifier}" if qualifier else unqualified,
                "memory_limit_in_mb": memory, "aws_request_id": request_id,
                "log_group_name": f"/aws/lambda/{fn}", "log_stream_name": stream,
                "deadline_ms": int(time.time() * 1000 + timeout_s * 1000),
            }
            healthy = True
            # as in Lambda, Duration is the handler's run; starting the environment is reported as Init Duration
            started = time.perf_counter()
            try:
                reply, _ = worker.invoke(body, context, timeout_s)
                rss = int(reply.get("max_rss_mb") or 0)
                if reply.get("ok"):
                    payload = reply["payload"].encode()
                else:
                    error = reply["error"]
            except WorkerTimedOut:
                healthy = False
                error = {"errorType": "Sandbox.Timedout",
                         "errorMessage": f"RequestId: {request_id} Error: Task timed out after {timeout_s:.2f} seconds"}
            except WorkerCrashed as exc:
                healthy = False
                error = {"errorType": "Runtime.ExitError",
                         "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: "
                                         f"exit status {exc.exit_code}"}
            output = worker.read_output()
            pool.release(worker, healthy)
        duration = (time.perf_counter() - started) * 1000
        if error is not None:
            error.setdefault("stackTrace", [])
            error.pop("requestId", None)
            payload = json.dumps(error).encode()
        lines = [f"START RequestId: {request_id} Version: {version}"]
        lines += [line for line in output.splitlines() if line.strip()]
        if error is not None and error.get("errorType") == "Sandbox.Timedout":
            lines.append(f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime())}Z {request_id} "
                         f"Task timed out after {timeout_s:.2f} seconds")
        lines.append(f"END RequestId: {request_id}")
        report = (f"REPORT RequestId: {request_id}\tDuration: {duration:.2f} ms\t"
                  f"Billed Duration: {math.ceil(duration)} ms\tMemory Size: {memory} MB\tMax Memory Used: {rss} MB")
        if init_ms:
            report += f"\tInit Duration: {init_ms:.2f} ms"
        lines.append(report)
        self.telemetry.log_events.add(f"/aws/lambda/{fn}", stream or _orphan_stream(version), lines)
        points = []
        for d in dims:
            points.append(Datapoint("AWS/Lambda", "Invocations", d, 1.0))
            points.append(Datapoint("AWS/Lambda", "Errors", d, 1.0 if error is not None else 0.0))
            points.append(Datapoint("AWS/Lambda", "Duration", d, round(duration, 2), "Milliseconds", raw=True))
        for d in dims[:2]:
            points.append(Datapoint("AWS/Lambda", "ConcurrentExecutions", d, float(concurrent)))
        for line in output.splitlines():
            points.extend(emf_datapoints(line))
        self.telemetry.metrics.add(points)
        stat = self.stats[(fn, version)]
        stat.invocations += 1
        stat.errors += error is not None
        return payload, error, "\n".join(lines) + "\n"

    # ---------------------------------------------------------------------------------------------- guards

    def update_alias(self, raw_fn: str, name: str, path: str, headers: dict, body: bytes) -> Reply:
        fn = split_function(raw_fn)[0]
        try:
            wanted = (json.loads(body) if body else {}).get("RevisionId")
        except ValueError:
            wanted = None
        with self._fn_locks[fn]:
            current, data = self.moto.json("GET", f"/2015-03-31/functions/{quote(fn, safe='')}/aliases/"
                                                  f"{quote(name, safe='')}")
            if not 200 <= current.status < 300 or data is None:
                return current
            revision = self._revisions.setdefault((fn, name), data.get("RevisionId") or str(uuid.uuid4()))
            if wanted and wanted != revision:
                return error_reply(412, "PreconditionFailedException",
                                   "The Revision Id provided does not match the latest Revision Id. "
                                   "Call the GetAlias API to retrieve the latest Revision Id")
            reply = self.moto.request("PUT", path, body or None, headers)
            if 200 <= reply.status < 300:
                self._revisions[(fn, name)] = str(uuid.uuid4())
            self.invalidate(fn)
            if 200 <= reply.status < 300:
                self.reap(fn)
            return self.rewrite_alias_reply(fn, "PUT", name, reply)

    def rewrite_alias_reply(self, fn: str, method: str, name: str | None, reply: Reply) -> Reply:
        if method == "DELETE" and name is not None and 200 <= reply.status < 300:
            self._revisions.pop((fn, name), None)
            return reply
        if not (200 <= reply.status < 300) or not reply.body:
            return reply
        try:
            data = json.loads(reply.body)
        except ValueError:
            return reply
        items = data.get("Aliases") if isinstance(data.get("Aliases"), list) else [data]
        for item in items:
            alias_name = item.get("Name")
            if not alias_name or "RevisionId" not in item:
                continue
            key = (fn, alias_name)
            if method == "POST" or key not in self._revisions:
                self._revisions[key] = item["RevisionId"]
            item["RevisionId"] = self._revisions[key]
        reply.body = json.dumps(data).encode()
        return reply

    def publish_version(self, raw_fn: str, path: str, headers: dict, body: bytes) -> Reply:
        fn = split_function(raw_fn)[0]
        try:
            request = json.loads(body) if body else {}
        except ValueError:
            request = {}
        with self._fn_locks[fn]:
            if request.get("CodeSha256") or request.get("RevisionId"):
                current, data = self.moto.json("GET", f"/2015-03-31/functions/{quote(fn, safe='')}/configuration")
                if not 200 <= current.status < 300 or data is None:
                    return current
                wanted_sha = request.get("CodeSha256")
                if wanted_sha and wanted_sha != data.get("CodeSha256"):
                    return error_reply(412, "PreconditionFailedException",
                                       f"CodeSHA256 ({wanted_sha}) is different from current CodeSHA256 in "
                                       f"$LATEST ({data.get('CodeSha256')}). Please try again with the current "
                                       "CodeSHA256.")
                wanted_rev = request.get("RevisionId")
                if wanted_rev and data.get("RevisionId") and wanted_rev != data["RevisionId"]:
                    return error_reply(412, "PreconditionFailedException",
                                       "The Revision Id provided does not match the latest Revision Id. "
                                       "Call the GetFunction/GetAlias API to retrieve the latest Revision Id")
            reply = self.moto.request("POST", path, body or None, headers)
            self.invalidate(fn)
            return reply

    def capture_code(self, raw_fn: str | None, path: str, method: str, headers: dict, body: bytes) -> Reply:
        try:
            request = json.loads(body) if body else {}
        except ValueError:
            request = {}
        code = request.get("Code") if raw_fn is None else request
        code = code if isinstance(code, dict) else {}
        if code.get("ZipFile"):
            try:
                self.code.put(base64.b64decode(code["ZipFile"]))
            except ValueError:
                pass
        reply = self.moto.request(method, path, body or None, headers)
        if 200 <= reply.status < 300 and code.get("S3Bucket") and code.get("S3Key"):
            self._fetch_s3_code(code["S3Bucket"], code["S3Key"], code.get("S3ObjectVersion"))
        fn = split_function(raw_fn)[0] if raw_fn else request.get("FunctionName")
        if fn:
            self.invalidate(split_function(fn)[0])
        return reply

    def _fetch_s3_code(self, bucket: str, key: str, version: str | None) -> None:
        path = f"/{quote(bucket)}/{quote(key)}" + (f"?versionId={quote(version)}" if version else "")
        try:
            reply = self.moto.request("GET", path, service="s3")
        except Exception:
            log.exception("could not fetch s3://%s/%s from moto", bucket, key)
            return
        if reply.status == 200:
            self.code.put(reply.body)
        else:
            log.warning("could not fetch s3://%s/%s from moto: HTTP %s", bucket, key, reply.status)


def _orphan_stream(version: str) -> str:
    return time.strftime("%Y/%m/%d", time.gmtime()) + f"/[{version}]sandbox-init"


# -------------------------------------------------------------------------------------------------- HTTP plumbing


class FrontHandler(BaseHTTPRequestHandler):
    """Reads a request, hands it to ``server.front.handle(method, path, headers, body)``, writes the Reply."""

    protocol_version = "HTTP/1.1"
    server_version = "promoter-sandbox"
    disable_nagle_algorithm = True  # headers and body are separate writes; Nagle + delayed ACK would add 40 ms

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        if getattr(self.server.front, "wants_client_ip", False):
            headers["_client_ip"] = self.client_address[0]
        extra = {}
        if getattr(self.server.front, "wants_multi_headers", False):  # a header sent twice keeps both values
            multi: dict[str, list[str]] = {}
            for key, value in self.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    multi.setdefault(key, []).append(value)
            extra["multi_headers"] = multi
        try:
            reply = self.server.front.handle(self.command, self.path, headers, body, **extra)
        except Exception as exc:
            log.exception("%s %s failed", self.command, self.path)
            reply = error_reply(500, "ServiceException", f"sandbox front error: {exc}", kind="Service")
        if reply.status == DROP:  # an injected lost reply: the caller sees the connection close unanswered
            self.close_connection = True
            return
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            if key.lower() not in HOP_BY_HOP and key.lower() not in ("server", "date"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD" and reply.body:
            self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

    def __getattr__(self, name: str):
        # any other method reaches the front too, which answers it as the service would (never an HTML 501)
        if name.startswith("do_") and name[3:].isalpha() and name[3:].isupper():
            return self._serve
        raise AttributeError(name)

    def log_message(self, format: str, *args) -> None:
        log.debug("%s - " + format, self.address_string(), *args)


class FrontServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def serve(front, port: int, name: str) -> None:
    """Serve ``front`` on 127.0.0.1:port until SIGTERM/SIGINT, then call ``front.shutdown()``."""
    server = FrontServer(("127.0.0.1", port), FrontHandler)
    server.front = front

    def _stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("%s listening on http://127.0.0.1:%s", name, server.server_address[1])
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        front.shutdown()
        log.info("%s stopped", name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m promoter.sandbox.lambda_front")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--moto-url", required=True)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--region", required=True)
    parser.add_argument("--flush-interval", type=float,
                        default=float(os.environ.get("SANDBOX_FLUSH_INTERVAL", FLUSH_INTERVAL)))
    parser.add_argument("--concurrency-limit", type=int,
                        default=int(os.environ.get("SANDBOX_ACCOUNT_CONCURRENCY", 50)),
                        help="the account's concurrency (functions with a reservation are held to it instead)")
    parser.add_argument("--max-workers-per-version", type=int,
                        default=int(os.environ["SANDBOX_MAX_WORKERS_PER_VERSION"])
                        if os.environ.get("SANDBOX_MAX_WORKERS_PER_VERSION") else None,
                        help="cap each version's execution environments below the function's concurrency")
    parser.add_argument("--log-level", default=os.environ.get("SANDBOX_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(),
                        format="%(asctime)s lambda_front %(levelname)s %(message)s")
    args.state_dir.mkdir(parents=True, exist_ok=True)
    front = LambdaFront(args.moto_url, args.state_dir, args.region, own_url=f"http://127.0.0.1:{args.port}",
                        flush_interval=args.flush_interval, concurrency_limit=args.concurrency_limit,
                        max_workers_per_version=args.max_workers_per_version)
    front.telemetry.start()
    serve(front, args.port, "lambda front")
    return 0


if __name__ == "__main__":
    sys.exit(main())
