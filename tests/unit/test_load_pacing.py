"""The load generator's arrivals: the real Locust child against a campaigns API on loopback that stamps each
request as it arrives. The plan's rate must reach the API as a stream spread over each second, not the whole
user population at once."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from promoter.engine.load import LoadSettings, run_load
from promoter.plan import load_plan


@pytest.fixture(scope="module")
def plan():
    return load_plan()



class _Campaigns(BaseHTTPRequestHandler):
    """The campaigns API's routes, in memory, answering as the service does."""

    protocol_version = "HTTP/1.1"
    store: ClassVar[dict[str, dict]] = {}
    arrivals: ClassVar[list[float]] = []
    lock = threading.Lock()

    def log_message(self, *args) -> None:
        pass

    def _answer(self, status: int, body: dict | None = None) -> None:
        raw = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _route(self, method: str) -> None:
        with self.lock:
            self.arrivals.append(time.monotonic())
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        path = self.path.split("?", 1)[0].rstrip("/")
        base = "/v1.0/campaigns"
        if path == f"{base}/health":
            return self._answer(200, {"status": "ok"})
        if path == base and method == "GET":
            with self.lock:
                items = list(self.store.values())
            return self._answer(200, {"items": items, "next_token": None})
        if path == base and method == "POST":
            item = {**body, "id": str(uuid.uuid4())}
            with self.lock:
                self.store[item["id"]] = item
            return self._answer(201, item)
        ident = path.rsplit("/", 1)[1]
        with self.lock:
            item = self.store.get(ident)
            if item is not None and method == "DELETE":
                del self.store[ident]
        if item is None:
            return self._answer(404, {"message": "not found"})
        if method == "DELETE":
            return self._answer(204)
        return self._answer(200, {**item, **(body or {})})

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_DELETE(self) -> None:
        self._route("DELETE")


def test_the_users_requests_are_spread_over_each_second_not_sent_together(plan, tmp_path):
    # GIVEN 40 users at 1 req/s each, all spawned within half a second (Locust spawns them in one batch)
    _Campaigns.arrivals = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Campaigns)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    load = plan.load.model_copy(update={"spawn_seconds": 0.5, "per_user_rps": 1})
    settings = LoadSettings(plan=plan.model_copy(update={"load": load}), env="sit",
                            api_url=f"http://127.0.0.1:{server.server_address[1]}", token="t", rate=40, duration=6,
                            metrics=False)
    try:
        # WHEN the load runs
        result = run_load(settings, report_dir=tmp_path / "report")
    finally:
        server.shutdown()
        server.server_close()
    # THEN the rate is held, and after the ramp no 50 ms holds more than a few of the 40 requests of a second
    assert result.span().to_dict()["achieved_rps"] >= 38, result.span().to_dict()
    start = min(_Campaigns.arrivals)
    steady = [t - start for t in _Campaigns.arrivals if 2.0 <= t - start < 5.0]
    assert len(steady) >= 110
    windows = Counter(int(t / 0.05) for t in steady)
    # evenly spread, a 50 ms window holds 2 on average; random phases rarely put more than 8 in one.
    # Phase-locked users put all 40 in one window every second
    assert max(windows.values()) <= 10, sorted(windows.values())[-5:]
