"""The HTTP adapter and the synthetic traffic generator, against a real server on loopback."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from promoter.adapters.http import HttpClient, HttpTransportError
from promoter.engine.traffic import SteadyTraffic


class _Api(BaseHTTPRequestHandler):
    release = "v1.0.0"
    seen_auth: list[str | None]

    def do_GET(self):
        type(self).seen_auth.append(self.headers.get("Authorization"))
        if self.path.endswith("/health"):
            status, body = 200, {"status": "ok", "release": type(self).release}
        elif self.headers.get("Authorization") != "Bearer tok":
            status, body = 401, {"message": "Unauthorized"}
        else:
            status, body = 200, {"items": [], "next_token": None, "count": 0}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Api.release = "v1.0.0"
    _Api.seen_auth = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_client_sends_token_and_parses_json(api):
    client = HttpClient(api, token="tok")
    resp = client.request("GET", "/v1.0/campaigns")
    assert resp.status == 200 and resp.json()["count"] == 0
    assert resp.header("content-type") == "application/json"
    assert resp.elapsed_ms > 0
    assert client.request("GET", "/v1.0/campaigns/health", auth=False).json()["release"] == "v1.0.0"
    assert _Api.seen_auth == ["Bearer tok", None]


def test_transport_error_is_a_promoter_error():
    with pytest.raises(HttpTransportError, match="no HTTP answer"):
        HttpClient("http://127.0.0.1:9", timeout=1).request("GET", "/")


def test_steady_traffic_counts_by_release_and_status(api):
    traffic = SteadyTraffic(api, "tok", rate=40, threads=2)
    with traffic:
        time.sleep(0.6)
        _Api.release = "v1.1.0"
        time.sleep(0.6)
    stats = traffic.stats
    assert 10 <= stats.sent <= 60  # paced at 40/s for 1.2 s: never more than the rate allows
    assert set(stats.by_status) == {200}
    assert stats.by_release["v1.0.0"] > 0 and stats.by_release["v1.1.0"] > 0
    assert stats.first_seen["v1.0.0"] < stats.first_seen["v1.1.0"]
    assert stats.to_dict()["sent"] == stats.sent
