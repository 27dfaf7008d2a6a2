"""What a notification costs the release: the time ``Notifier.notify`` holds the caller, and the time to deliver
to a webhook on loopback, healthy and hanging (the bound: attempts x timeout plus the backoff).

    python bench/bench_notify.py [--runs 200]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from promoter.engine.notify import Notifier, WebhookTarget


def _server(delay: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(delay)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            return None

    class Server(ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            return None

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _measure(delay: float, runs: int, timeout: float, attempts: int) -> tuple[list[float], list[float], int]:
    server = _server(delay)
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    held, delivered, ok = [], [], 0
    try:
        for _ in range(runs):
            notifier = Notifier([WebhookTarget(url)], None, "bench", attempts=attempts, timeout=timeout)
            started = time.perf_counter()
            notifier.notify("step-passed", "bench")
            held.append(time.perf_counter() - started)
            [result] = notifier.flush()
            delivered.append(time.perf_counter() - started)
            ok += result.ok
    finally:
        server.shutdown()
        server.server_close()
    return held, delivered, ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    for name, delay, runs, timeout, attempts in (("healthy", 0.0, args.runs, 5.0, 3),
                                                 ("hanging", 2.0, 5, 0.5, 3)):
        held, delivered, ok = _measure(delay, runs, timeout, attempts)
        print(f"{name:8} runs={runs:4} notify() holds the caller: median {statistics.median(held) * 1e3:.2f} ms, "
              f"max {max(held) * 1e3:.2f} ms; delivery: median {statistics.median(delivered) * 1e3:.1f} ms, "
              f"max {max(delivered) * 1e3:.1f} ms; delivered {ok}/{runs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
