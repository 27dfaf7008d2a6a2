"""Lambda execution environments for the sandbox: one warm Python process per running invocation slot.

The Lambda front's side of them (:class:`Worker`, :class:`WorkerPool`, :class:`CodeStore`): it stores the code
packages by sha256, extracts them, starts each environment under the interpreter the version's ``Runtime``
names (:mod:`promoter.sandbox.runtimes`), isolated, running :mod:`promoter.sandbox.runtime_bootstrap` with the
runtime layer behind the code, sends events, enforces the timeout and reports crashes.

The worker's stdout and stderr go to a file; the parent reads what an invocation wrote from that file, which is
how the function's output reaches CloudWatch Logs and ``X-Amz-Log-Type: Tail``.

Wire format: ``multiprocessing.connection`` framing over a socketpair, JSON messages.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

# --------------------------------------------------------------------------------------------------------------
# parent side


class CodeUnavailable(Exception):
    """No package with this CodeSha256 passed through the front."""


class WorkerCrashed(Exception):
    def __init__(self, exit_code: int | None) -> None:
        super().__init__(f"exit status {exit_code}")
        self.exit_code = exit_code


class WorkerTimedOut(Exception):
    pass


class WorkerInitFailed(Exception):
    def __init__(self, error: dict) -> None:
        super().__init__(error.get("errorMessage", "init failed"))
        self.error = error


def code_sha_to_hex(code_sha256: str) -> str:
    """Lambda's CodeSha256 (base64 of the digest) -> hex digest, used for file names."""
    return base64.b64decode(code_sha256).hex()


class CodeStore:
    """Code packages by sha256 under ``<state>/zips``; extracted trees under ``<state>/code/<sha>``."""

    def __init__(self, state_dir: Path) -> None:
        self.zips = state_dir / "zips"
        self.code = state_dir / "code"
        self.zips.mkdir(parents=True, exist_ok=True)
        self.code.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self.zips / f"{digest}.zip"
        if not path.exists():
            tmp = path.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return digest

    def has(self, digest: str) -> bool:
        return (self.zips / f"{digest}.zip").exists()

    def extracted(self, digest: str) -> Path:
        target = self.code / digest
        if target.exists():
            return target
        source = self.zips / f"{digest}.zip"
        if not source.exists():
            raise CodeUnavailable(digest)
        with self._lock:
            if target.exists():
                return target
            staging = self.code / f".{digest}.{uuid.uuid4().hex}"
            with zipfile.ZipFile(source) as zf:
                zf.extractall(staging)
            os.replace(staging, target)
        return target


@dataclass(frozen=True)
class FunctionVersion:
    """What an execution environment needs to know about the version it runs."""

    function_name: str
    version: str
    code_digest: str
    handler: str
    timeout_s: float
    memory_mb: int
    environment: tuple[tuple[str, str], ...]
    function_arn: str  # unqualified
    region: str
    runtime: str = "python3.12"

    @property
    def log_group(self) -> str:
        return f"/aws/lambda/{self.function_name}"


@dataclass
class InvokeOutcome:
    payload: bytes
    error: dict | None  # Lambda's function error payload, or None
    duration_ms: float
    output: str  # what the worker wrote during this invocation
    max_rss_mb: int
    init_ms: float | None  # set on the first invocation of a fresh environment
    log_stream: str


@dataclass
class Worker:
    spec: FunctionVersion
    proc: subprocess.Popen
    conn: Connection
    log_path: Path
    log_stream: str
    init_ms: float = 0.0
    invocations: int = 0
    interpreter: dict = field(default_factory=dict)  # which Python runs it: path, version, found_by
    _log_offset: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def read_output(self) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self._log_offset)
                data = fh.read()
        except OSError:
            return ""
        self._log_offset += len(data)
        return data.decode("utf-8", errors="replace")

    def invoke(self, event: bytes, context: dict, timeout_s: float) -> tuple[dict, float]:
        """Send one event; return (reply, duration_ms). Raises WorkerCrashed / WorkerTimedOut."""
        started = time.perf_counter()
        try:
            self.conn.send_bytes(json.dumps({"event": event.decode("utf-8"), "context": context}).encode())
            if not self.conn.poll(timeout_s):
                self.kill()
                raise WorkerTimedOut()
            reply = json.loads(self.conn.recv_bytes())
        except (EOFError, OSError, BrokenPipeError):
            raise WorkerCrashed(self._exit_code()) from None
        self.invocations += 1
        return reply, (time.perf_counter() - started) * 1000

    def _exit_code(self) -> int | None:
        try:
            return self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        try:
            self.conn.close()
        except OSError:
            pass

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.kill()
        try:
            self.conn.close()
        except OSError:
            pass


def _log_stream_name(version: str) -> str:
    return time.strftime("%Y/%m/%d", time.gmtime()) + f"/[{version}]{uuid.uuid4().hex}"


BOOTSTRAP = Path(__file__).with_name("runtime_bootstrap.py")


def _layer_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "promoter"


def bytecode_cache(code_dir: Path) -> Path:
    """Where the environments of a sandbox keep the bytecode of what they import (``-X pycache_prefix``), beside
    the extracted packages: the first environment of a version compiles its code, later ones load it. Lambda
    compiles a package that ships no bytecode again in every new environment, so the sandbox's cold starts after
    the first are shorter than Lambda's; Init Duration still counts each environment's imports."""
    return code_dir.parent.with_name("pycache")


def _init_failed(error_type: str, message: str) -> WorkerInitFailed:
    return WorkerInitFailed({"errorType": error_type, "errorMessage": message, "stackTrace": []})


def start_worker(spec: FunctionVersion, code_dir: Path, log_dir: Path, base_env: dict[str, str],
                 layer_cache: Path | None = None) -> Worker:
    """Start one execution environment under the runtime's interpreter and wait for its init to finish."""
    from promoter.sandbox.runtimes import RuntimeUnavailable, native_mismatch, resolve_interpreter, runtime_layer

    try:
        interpreter = resolve_interpreter(spec.runtime)
        layer = runtime_layer(interpreter, layer_cache or _layer_cache())
    except RuntimeUnavailable as exc:
        raise _init_failed("Sandbox.RuntimeUnavailable", str(exc)) from None
    log_stream = _log_stream_name(spec.version)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{spec.function_name}.{log_stream.rsplit(']', 1)[1]}.log"
    parent_sock, child_sock = socket.socketpair()
    env = {k: v for k, v in base_env.items() if not k.startswith("PYTHON")}
    env.update(dict(spec.environment))
    env.update({
        "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": spec.version,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": spec.log_group,
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
        "AWS_REGION": spec.region,
        "AWS_DEFAULT_REGION": spec.region,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
        "LAMBDA_TASK_ROOT": str(code_dir),
        "LAMBDA_RUNTIME_DIR": str(layer),
        "_HANDLER": spec.handler,
    })
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [interpreter.path, "-I", "-S", "-X", f"pycache_prefix={bytecode_cache(code_dir)}", str(BOOTSTRAP),
             "--code-dir", str(code_dir), "--layer", str(layer),
             "--handler", spec.handler, "--fd", str(child_sock.fileno())],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, pass_fds=(child_sock.fileno(),),
            cwd=str(code_dir),
        )
    child_sock.close()
    conn = Connection(parent_sock.detach())
    worker = Worker(spec=spec, proc=proc, conn=conn, log_path=log_path, log_stream=log_stream,
                    interpreter=interpreter.to_dict())
    # Init has Lambda's 10 s limit, raised to the function timeout when that is longer.
    init_timeout = max(10.0, spec.timeout_s)
    try:
        if not conn.poll(init_timeout):
            worker.kill()
            raise _init_failed("Sandbox.Timedout", "init timed out")
        hello = json.loads(conn.recv_bytes())
    except (EOFError, OSError):
        code = worker._exit_code()
        raise _init_failed("Runtime.ExitError", f"Runtime exited with error: exit status {code}") from None
    if not hello.get("ready"):
        worker.stop()
        error = dict(hello.get("error") or {"errorType": "Runtime.Unknown", "errorMessage": "init"})
        foreign = native_mismatch(code_dir, interpreter)
        if foreign:
            # Lambda's message, then what the sandbox can tell: the package was built for another Python
            error["errorMessage"] = (
                f"{error.get('errorMessage', '')} (the package has compiled extensions for {', '.join(foreign)}; "
                f"runtime {spec.runtime} runs Python {interpreter.version} from {interpreter.path} "
                f"[{interpreter.found_by}]: build for the runtime with --target lambda)")
        raise WorkerInitFailed(error)
    worker.init_ms = float(hello.get("init_ms", 0.0))
    return worker


PARALLEL_STARTS = max(1, os.cpu_count() or 1)  # execution environments of one version starting at once


class WorkerPool:
    """Warm execution environments of one version: reused, and grown as Lambda scales out: an invocation that
    finds none idle starts one of its own (one per waiting invocation), up to ``max_workers`` (the function's
    concurrency, which the front may change as the reservation changes)."""

    def __init__(self, spec: FunctionVersion, code_dir: Path, log_dir: Path, base_env: dict[str, str],
                 max_workers: int = 8) -> None:
        self.spec = spec
        self.code_dir = code_dir
        self.log_dir = log_dir
        self.base_env = base_env
        self.max_workers = max_workers
        self._idle: list[Worker] = []
        self._busy: set[int] = set()
        self._all: dict[int, Worker] = {}
        self._starting = 0
        self._waiting = 0
        self._init_error: dict | None = None
        self._cond = threading.Condition()
        self._closed = False

    def workers(self) -> list[Worker]:
        with self._cond:
            return list(self._all.values())

    def _spawn(self) -> None:
        try:
            worker = start_worker(self.spec, self.code_dir, self.log_dir, self.base_env)
        except WorkerInitFailed as exc:
            with self._cond:
                self._starting -= 1
                self._init_error = exc.error
                self._cond.notify_all()
            return
        with self._cond:
            self._starting -= 1
            if self._closed:
                worker.stop()
            else:
                self._all[worker.pid] = worker
                self._idle.append(worker)
            self._cond.notify_all()

    def acquire(self, wait_s: float) -> Worker:
        deadline = time.monotonic() + wait_s
        with self._cond:
            self._waiting += 1
            try:
                while True:
                    while self._idle:
                        worker = self._idle.pop()
                        if worker.alive():
                            self._busy.add(worker.pid)
                            return worker
                        self._all.pop(worker.pid, None)
                        worker.kill()
                    if self._init_error is not None and self._starting == 0:
                        error, self._init_error = self._init_error, None
                        raise WorkerInitFailed(error)
                    # scale out: an environment starting for each invocation waiting, within the concurrency, a
                    # few at a time: starts cost CPU, and an environment freed meanwhile serves a waiter first
                    if self._starting < min(self._waiting, PARALLEL_STARTS) and \
                            len(self._all) + self._starting < self.max_workers:
                        self._starting += 1
                        threading.Thread(target=self._spawn, daemon=True, name="worker-spawn").start()
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise WorkerTimedOut()
                    self._cond.wait(remaining)
            finally:
                self._waiting -= 1

    def idle(self) -> bool:
        with self._cond:
            return not self._busy and self._starting == 0

    def release(self, worker: Worker, healthy: bool) -> None:
        with self._cond:
            self._busy.discard(worker.pid)
            if healthy and worker.alive() and not self._closed:
                self._idle.append(worker)
            else:
                self._all.pop(worker.pid, None)
                worker.kill()
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            for worker in idle:
                self._all.pop(worker.pid, None)
        for worker in idle:
            worker.stop()

    def kill_all(self) -> None:
        with self._cond:
            self._closed = True
            workers = list(self._all.values())
            self._all.clear()
            self._idle.clear()
        for worker in workers:
            worker.stop()


def remove_code_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
