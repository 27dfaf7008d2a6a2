"""The one HTTP client of the engine (smoke tests, synthetic traffic), over urllib3's connection pool.

A small seam: code takes an :class:`HttpClient`; tests point it at a real server on loopback.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from promoter.errors import PromoterError


class HttpTransportError(PromoterError):
    """The request never got an HTTP answer (refused, reset, timed out, bad URL)."""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed_ms: float

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None


@dataclass
class HttpClient:
    base_url: str
    token: str | None = None
    timeout: float = 10.0
    retries: int = 0
    _pool: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        import urllib3

        self.base_url = self.base_url.rstrip("/")
        self._pool = urllib3.PoolManager(
            num_pools=4, maxsize=16, retries=urllib3.Retry(total=self.retries, redirect=0, raise_on_status=False)
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        body: bytes | None = None,  # sent as is (a malformed body, for tests of the API's refusals)
    ) -> HttpResponse:
        import urllib3

        all_headers = {"Accept": "application/json"}
        if json_body is not None:
            body = json.dumps(json_body).encode()
            all_headers["Content-Type"] = "application/json"
        if auth and self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        all_headers.update(headers or {})
        url = self.base_url + path
        started = time.perf_counter()
        try:
            resp = self._pool.request(
                method, url, body=body, headers=all_headers, timeout=urllib3.Timeout(total=self.timeout),
                redirect=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise HttpTransportError(
                f"{method} {url}: no HTTP answer ({type(exc).__name__}: {exc})",
                hint="is the API up? check PROMOTER_API_URL or the environment's domain",
            ) from None
        elapsed = (time.perf_counter() - started) * 1000
        return HttpResponse(status=resp.status, headers=dict(resp.headers), body=resp.data, elapsed_ms=elapsed)

    def close(self) -> None:
        self._pool.clear()
