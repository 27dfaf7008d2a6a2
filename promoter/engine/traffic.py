"""Steady synthetic traffic against the API, for rehearsals and benchmarks.

A canary can only be judged on traffic: ``SteadyTraffic`` sends a fixed rate of requests (alternating the
health check, which names the release that answered, and an authenticated list) from a few threads, and
counts answers by status and by release, with the time each release was first and last seen.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from promoter.adapters.http import HttpClient, HttpTransportError


@dataclass
class TrafficStats:
    sent: int = 0
    by_status: Counter = field(default_factory=Counter)
    by_release: Counter = field(default_factory=Counter)
    first_seen: dict[str, float] = field(default_factory=dict)  # wall-clock epoch seconds
    last_seen: dict[str, float] = field(default_factory=dict)
    transport_errors: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "by_status": dict(self.by_status),
            "by_release": dict(self.by_release),
            "first_seen": dict(self.first_seen),
            "last_seen": dict(self.last_seen),
            "transport_errors": self.transport_errors,
        }


class SteadyTraffic:
    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        rate: float = 20.0,
        threads: int = 4,
        base_path: str = "/v1.0/campaigns",
        health_path: str = "/v1.0/campaigns/health",
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.base_url = base_url
        self.token = token
        self.rate = rate
        self.threads = threads
        self.paths = [(health_path, False), (f"{base_path}?limit=5", True)]
        self.stats = TrafficStats()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []

    def __enter__(self) -> SteadyTraffic:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._stop.clear()
        interval = self.threads / self.rate
        for i in range(self.threads):
            worker = threading.Thread(target=self._run, args=(i, interval), name=f"traffic-{i}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def stop(self) -> TrafficStats:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=15)
        self._workers.clear()
        return self.stats

    def _run(self, index: int, interval: float) -> None:
        client = HttpClient(self.base_url, token=self.token, timeout=5)
        next_at = time.monotonic() + interval * index / self.threads
        n = index
        while not self._stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            next_at = max(next_at + interval, time.monotonic() - interval)
            path, auth = self.paths[n % len(self.paths)]
            n += 1
            self._one(client, path, auth)
        client.close()

    def _one(self, client: HttpClient, path: str, auth: bool) -> None:
        try:
            resp = client.request("GET", path, auth=auth)
        except HttpTransportError:
            with self._lock:
                self.stats.sent += 1
                self.stats.transport_errors += 1
            return
        release = None
        if not auth:
            try:
                release = (resp.json() or {}).get("release")
            except ValueError:
                release = None
        now = time.time()
        with self._lock:
            self.stats.sent += 1
            self.stats.by_status[resp.status] += 1
            if release:
                self.stats.by_release[release] += 1
                self.stats.first_seen.setdefault(release, now)
                self.stats.last_seen[release] = now
