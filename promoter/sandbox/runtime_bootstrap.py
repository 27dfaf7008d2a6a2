"""The sandbox's Lambda execution environment: the process that imports one version's handler and serves it.

Run as a script by the interpreter the version's ``Runtime`` names, isolated from everything installed on the
host (``python -I -S runtime_bootstrap.py ...``: no site-packages, no user site, no environment variables of
Python's own, not even this file's directory on ``sys.path``)::

    python3.12 -I -S runtime_bootstrap.py --code-dir DIR --layer DIR --handler MOD.FN --fd N

``sys.path`` is then Lambda's order: the function's code (``LAMBDA_TASK_ROOT``) first, then the runtime layer
(boto3 and its dependencies), then the standard library. So a package that lacks a dependency, or carries
compiled extensions for another Python, fails to import here as it would on Lambda.

This file imports the standard library only: it runs under whatever Python the runtime names.

Wire format: ``multiprocessing.connection`` framing over an inherited socket, JSON messages: a hello after init
(``ready``, ``init_ms``, ``error``, ``python``), then one reply per event.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import time
import traceback
from multiprocessing.connection import Connection


class LambdaContext:
    """The context object a Python Lambda handler receives."""

    def __init__(self, data: dict) -> None:
        self.function_name = data["function_name"]
        self.function_version = data["function_version"]
        self.invoked_function_arn = data["invoked_function_arn"]
        self.memory_limit_in_mb = int(data["memory_limit_in_mb"])
        self.aws_request_id = data["aws_request_id"]
        self.log_group_name = data["log_group_name"]
        self.log_stream_name = data["log_stream_name"]
        self.identity = None
        self.client_context = None
        self._deadline_ms = int(data["deadline_ms"])

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def _error_payload(exc: BaseException) -> dict:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": "",
        "stackTrace": list(traceback.format_list(frames)),
    }


def _load_handler(handler: str):
    module_name, _, function_name = handler.rpartition(".")
    if not module_name:
        raise ImportError(f"Bad handler '{handler}': not enough values to unpack (expected 2, got 1)")
    module = importlib.import_module(module_name.replace("/", "."))
    try:
        return getattr(module, function_name)
    except AttributeError:
        raise AttributeError(f"Handler '{function_name}' missing on module '{module_name}'") from None


def _max_rss_mb() -> int:
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    except Exception:
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runtime_bootstrap.py")
    parser.add_argument("--code-dir", required=True)
    parser.add_argument("--layer", action="append", default=[])
    parser.add_argument("--handler", required=True)
    parser.add_argument("--fd", type=int, required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    conn = Connection(args.fd)
    os.chdir(args.code_dir)
    sys.path[:0] = [args.code_dir, *args.layer]
    python = ".".join(str(part) for part in sys.version_info[:3])
    started = time.perf_counter()
    try:
        handler = _load_handler(args.handler)
        init_error = None
    except Exception as exc:
        handler = None
        payload = _error_payload(exc)
        module = args.handler.rpartition(".")[0]
        if isinstance(exc, ImportError | SyntaxError):
            payload["errorType"] = "Runtime.ImportModuleError"
            payload["errorMessage"] = f"Unable to import module '{module}': {exc}"
        elif isinstance(exc, AttributeError):
            payload["errorType"] = "Runtime.HandlerNotFound"
        init_error = payload
        traceback.print_exc()
    init_ms = (time.perf_counter() - started) * 1000
    sys.stdout.flush()
    sys.stderr.flush()
    conn.send_bytes(json.dumps({"ready": init_error is None, "init_ms": init_ms, "error": init_error,
                                "python": python}).encode())
    if init_error is not None:
        return 1
    while True:
        try:
            message = json.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return 0
        ctx = LambdaContext(message["context"])
        reply: dict
        try:
            event = json.loads(message["event"]) if message["event"] else {}
            result = handler(event, ctx)
            try:
                reply = {"ok": True, "payload": json.dumps(result)}
            except (TypeError, ValueError) as exc:
                reply = {"ok": False, "error": {
                    "errorMessage": f"Unable to marshal response: {exc}",
                    "errorType": "Runtime.MarshalError", "requestId": ctx.aws_request_id, "stackTrace": []}}
        except Exception as exc:
            payload = _error_payload(exc)
            payload["requestId"] = ctx.aws_request_id
            print(f"[ERROR] {payload['errorType']}: {payload['errorMessage']}", file=sys.stderr)
            traceback.print_exc()
            reply = {"ok": False, "error": payload}
        sys.stdout.flush()
        sys.stderr.flush()
        reply["max_rss_mb"] = _max_rss_mb()
        conn.send_bytes(json.dumps(reply).encode())


if __name__ == "__main__":
    sys.exit(main())
