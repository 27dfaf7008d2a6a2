"""The load generator's child process: Locust as a library, headless, streaming its figures as JSON lines.

Run as ``python -m promoter.engine.load_runner`` with the run's settings as one JSON document on stdin. Locust
imports gevent and monkey-patches the whole process, which is why it runs here and never in the CLI's (or
pytest's) process: :mod:`promoter.engine.load` starts this module, reads its stdout and does all the judging.

What it does:

1. a Locust ``Environment`` with one ``FastHttpUser`` class whose tasks are the plan's request mix (health,
   list, get, create, update, delete, by weight), each user paced at the per-user rate from a random phase of
   its own (:meth:`wait_time`), so the rate is the number of users times the per-user rate, spread evenly over
   each second, whatever the latency (until the latency exceeds the pacing);
2. each user owns the campaigns it creates (named with the run's prefix) and only reads, updates and deletes
   those, so no request depends on another user's data and no update races another;
3. the schedule: one or more steps (rate, seconds); users are added (spawned over ``spawn_seconds``) when a step
   raises the rate, stopped when it lowers it;
4. every ``interval`` seconds one ``interval`` line: requests, failures, status classes and a latency histogram
   of that interval only, so the parent can merge any span exactly (a step, the whole run);
5. on the end of the schedule, SIGTERM or SIGINT: the users stop, every campaign the run created is deleted,
   then the collection is swept for any name with the run's prefix (a create whose answer was lost), and a
   ``cleanup`` line, a ``summary`` line (Locust's own per-request statistics) and an ``end`` line close the run.

Lines: ``start``, ``interval``, ``step``, ``cleanup``, ``summary``, ``end``; each a JSON object with ``type``.
"""

from __future__ import annotations

import json
import math
import random
import signal
import sys
import time
from collections import Counter
from typing import Any, ClassVar

KINDS = ("health", "list", "get", "create", "update", "delete")
EXPECTED = {"health": 200, "list": 200, "get": 200, "create": 201, "update": 200, "delete": 204}


def bucket_ms(ms: float) -> int:
    """The histogram bucket of a response time: 1 ms under 100 ms, 10 ms under 1 s, 100 ms above."""
    if ms < 100:
        return round(ms)
    if ms < 1000:
        return int(round(ms, -1))
    return int(round(ms, -2))


def status_class(status: int | None) -> str:
    if not status:
        return "none"  # no HTTP answer: refused, reset, timed out
    if status == 429:
        return "429"
    return f"{status // 100}xx"


class Emitter:
    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdout

    def __call__(self, kind: str, **data: Any) -> None:
        self.stream.write(json.dumps({"type": kind, "ts": round(time.time(), 3), **data}, default=str) + "\n")
        self.stream.flush()


class Interval:
    """What happened since the last ``interval`` line."""

    def __init__(self) -> None:
        self.requests = 0
        self.failures = 0
        self.status: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()
        self.failed_kinds: Counter[str] = Counter()
        self.hist: Counter[int] = Counter()
        self.examples: list[str] = []

    def add(self, kind: str, ms: float, status: int | None, failed: bool, why: str | None) -> None:
        self.requests += 1
        self.kinds[kind] += 1
        self.status[status_class(status)] += 1
        self.hist[bucket_ms(ms)] += 1
        if failed:
            self.failures += 1
            self.failed_kinds[kind] += 1
            if why and len(self.examples) < 3:
                self.examples.append(f"{kind}: {why}"[:200])

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "failures": self.failures, "status": dict(self.status),
                "kinds": dict(self.kinds), "failed_kinds": dict(self.failed_kinds),
                "hist": {str(k): v for k, v in sorted(self.hist.items())}, "examples": self.examples}


def run(config: dict[str, Any], emit: Emitter) -> int:
    import gevent
    from locust import task  # (imports gevent's monkey patching)
    from locust.contrib.fasthttp import FastHttpUser
    from locust.env import Environment

    base = config["base_path"].rstrip("/")
    prefix = config["prefix"]
    per_user = float(config["per_user_rps"])
    period = 1.0 / per_user
    mix = {k: float(v) for k, v in config["mix"].items() if float(v) > 0}
    created: set[str] = set()
    state = STATE
    state.update(interval=Interval(), seq=0, unanswered_creates=0)

    def record(request_type, name, response_time, response_length, response=None, context=None, exception=None,
               **_kw):
        status = getattr(response, "status_code", None) if response is not None else None
        failed = exception is not None
        why = None
        if exception is not None:
            why = f"{status or 'no answer'}: {exception}"
        state["interval"].add(name, float(response_time or 0.0), status, failed, why)

    def next_name() -> str:
        state["seq"] += 1
        return f"{prefix}{state['seq']:07d}"

    class CampaignsUser(FastHttpUser):
        host = config["host"]
        network_timeout = float(config["timeout_s"])
        connection_timeout = float(config["timeout_s"])
        default_headers: ClassVar[dict[str, str]] = {"Authorization": f"Bearer {config['token']}",
                                                     "Accept": "application/json"}

        def on_start(self) -> None:
            self.last_status: int | None = None
            self.own: list[str] = []
            self.updates = 0
            # A random phase within the pacing period. Locust spawns users in batches of floor(spawn rate) at one
            # instant, and its constant_throughput keeps the phase a user was created with (even across a sleep
            # here), so the whole population fired together once a period: at 100 users, 100 requests within
            # 50 ms every second, not 100 req/s.
            gevent.sleep(random.uniform(0.0, period))
            self.due = time.perf_counter()  # the first request starts now, each next one a period later

        def wait_time(self) -> float:
            """The pacing: one request per period from the user's own phase; a request slower than the period is
            followed at once, and the schedule goes on from then (no burst to catch up what was missed)."""
            now = time.perf_counter()
            self.due = max(self.due + period, now)
            return self.due - now

        def _send(self, kind: str, method: str, path: str, body: Any = None) -> Any:
            with self.client.request(method, path, name=kind, json=body, catch_response=True) as resp:
                self.last_status = resp.status_code
                if resp.status_code != EXPECTED[kind]:
                    text = (resp.text or "")[:120] if resp.status_code else ""
                    resp.failure(f"{resp.status_code} (expected {EXPECTED[kind]}) {text}".strip())
                    return None
                resp.success()
                if kind == "create" or kind in ("get", "update"):
                    try:
                        return resp.json()
                    except ValueError:
                        resp.failure("the answer is not JSON")
                return True

        def create(self) -> None:
            body = {"name": next_name(), "status": "draft", "description": "load test data, removed at the end"}
            data = self._send("create", "POST", base, body)
            if data is None and (not self.last_status or self.last_status >= 500):
                state["unanswered_creates"] += 1  # it may still be written: the clean-up sweeps again later
            if isinstance(data, dict) and data.get("id"):
                self.own.append(data["id"])
                created.add(data["id"])

        def pick(self) -> str | None:
            return random.choice(self.own) if self.own else None

        @task
        def one(self) -> None:
            kind = random.choices(list(mix), weights=list(mix.values()))[0]
            # reads and writes of one's own data need some: the first such request of a user creates it
            if kind in ("get", "update", "delete") and not self.own:
                kind = "create"
            if kind == "delete" and len(self.own) < 2:
                kind = "create"  # keep one campaign to read and update; the mix counts what was sent
            if kind == "health":
                self._send("health", "GET", config["health_path"])
            elif kind == "list":
                self._send("list", "GET", f"{base}?limit=20")
            elif kind == "create":
                self.create()
            elif kind == "get":
                self._send("get", "GET", f"{base}/{self.pick()}")
            elif kind == "update":
                self.updates += 1
                self._send("update", "PUT", f"{base}/{self.pick()}", {"description": f"load update {self.updates}"})
            elif kind == "delete":
                victim = self.own.pop(random.randrange(len(self.own)))
                if self._send("delete", "DELETE", f"{base}/{victim}"):
                    created.discard(victim)
                else:
                    self.own.append(victim)

    import logging

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # users stop once their request in flight is answered (or timed out): a create is never cut off unseen
    env = Environment(user_classes=[CampaignsUser], host=config["host"], catch_exceptions=True,
                      stop_timeout=float(config["timeout_s"]) + 1)
    env.events.request.add_listener(record)
    runner = env.create_local_runner()

    gevent.signal_handler(signal.SIGTERM, _stop)
    gevent.signal_handler(signal.SIGINT, _stop)

    interval = float(config.get("interval", 1.0))
    spawn_seconds = max(float(config.get("spawn_seconds", 5.0)), 0.1)
    started = time.monotonic()
    emit("start", steps=config["steps"], per_user_rps=per_user, prefix=prefix)
    reason = "completed"
    users = 0
    for index, step in enumerate(config["steps"]):
        if state["stop"]:
            reason = "stopped"
            break
        target = float(step["rate"])
        wanted = max(1, math.ceil(target / per_user))
        # a step's users start within its first quarter, so most of the step runs at its full rate
        ramp_s = max(min(spawn_seconds, float(step["seconds"]) / 4), 0.1)
        spawn_rate = max(1.0, abs(wanted - users) / ramp_s)
        runner.start(wanted, spawn_rate=spawn_rate)
        users = wanted
        emit("step", step=index, target_rps=target, users=wanted, seconds=step["seconds"],
             elapsed=round(time.monotonic() - started, 3))
        step_end = time.monotonic() + float(step["seconds"])
        ramping = True  # until every user of the step runs: the achieved rate is judged after it
        next_tick = time.monotonic() + interval
        while not state["stop"]:
            now = time.monotonic()
            if now >= next_tick:
                current, state["interval"] = state["interval"], Interval()
                emit("interval", step=index, target_rps=target, users=runner.user_count,
                     ramp=ramping, elapsed=round(now - started, 3), seconds=interval, **current.to_dict())
                ramping = runner.user_count != wanted
                next_tick += interval
                if now >= step_end - 1e-6:
                    break
            gevent.sleep(min(0.05, max(next_tick - time.monotonic(), 0.0)))
        if state["stop"]:
            reason = "stopped"
    runner.stop()
    runner.quit()
    tail = state["interval"]
    if tail.requests:
        emit("interval", step=len(config["steps"]) - 1, target_rps=0, users=0,
             elapsed=round(time.monotonic() - started, 3), seconds=interval, tail=True, **tail.to_dict())
    summary = {}
    for (name, _method), entry in sorted(env.stats.entries.items()):
        if not entry.num_requests:
            continue
        summary[name] = {"requests": entry.num_requests, "failures": entry.num_failures,
                         "avg_ms": round(entry.avg_response_time, 2),
                         "p50_ms": entry.get_response_time_percentile(0.50),
                         "p95_ms": entry.get_response_time_percentile(0.95),
                         "p99_ms": entry.get_response_time_percentile(0.99),
                         "max_ms": round(entry.max_response_time or 0, 2)}
    emit("summary", kinds=summary, errors={str(k): v.occurrences for k, v in list(env.stats.errors.items())[:20]})
    emit("cleanup", **cleanup(config, created, resweep_after=float(config.get("settle_s", 10))
                              if state["unanswered_creates"] else None))
    emit("end", reason=reason)
    return 0


def cleanup(config: dict[str, Any], created: set[str], resweep_after: float | None = None) -> dict[str, Any]:
    """Delete what the run created, then sweep the collection for names with the run's prefix; when a create went
    unanswered (refused, timed out, cut off), sweep again once the function's timeout has passed, since such a
    create may still be written."""
    from geventhttpclient import HTTPClient
    from geventhttpclient.url import URL

    base = config["base_path"].rstrip("/")
    url = URL(config["host"].rstrip("/") + base)
    headers = {"Authorization": f"Bearer {config['token']}", "Accept": "application/json"}
    client = HTTPClient.from_url(url, concurrency=4, network_timeout=float(config["timeout_s"]),
                                 connection_timeout=float(config["timeout_s"]))
    prefix_path = url.request_uri.rstrip("/")
    deleted, failed = 0, []

    def delete(cid: str) -> bool:
        for _attempt in range(3):
            try:
                resp = client.request("DELETE", f"{prefix_path}/{cid}", headers=headers)
                resp.read()
                if resp.status_code in (204, 404):
                    return True
            except Exception:  # retried; reported below when it never succeeds
                pass
            time.sleep(0.2)
        return False

    for cid in sorted(created):
        if delete(cid):
            deleted += 1
        else:
            failed.append(cid)
    swept, pages = 0, 0
    sweep_error = None
    max_pages = int(config.get("sweep_pages", 200))

    def sweep() -> None:
        nonlocal swept, pages, sweep_error
        token = None
        for _page in range(max_pages):
            pages += 1
            query = "?limit=100" + (f"&next_token={_quote(token)}" if token else "")
            try:
                resp = client.request("GET", prefix_path + query, headers=headers)
                body = json.loads(resp.read() or b"{}")
            except Exception as exc:
                sweep_error = f"{type(exc).__name__}: {exc}"
                return
            if resp.status_code != 200:
                sweep_error = f"list answered {resp.status_code}"
                return
            for item in body.get("items", []):
                if str(item.get("name", "")).startswith(config["prefix"]) and item.get("id") not in created:
                    if delete(item["id"]):
                        swept += 1
                        created.add(item["id"])  # counted once, even when the next sweep lists it again
                    else:
                        failed.append(item["id"])
            token = body.get("next_token")
            if not token:
                return

    created = set(created)
    total_created = len(created)
    sweep()
    if resweep_after and sweep_error is None:
        time.sleep(resweep_after)
        sweep()
    client.close()
    return {"created": total_created, "deleted": deleted, "swept": swept, "left": failed, "pages": pages,
            "sweep_error": sweep_error, "swept_twice": bool(resweep_after)}


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


STATE: dict[str, Any] = {"stop": False}


def _stop(*_args: Any) -> None:
    STATE["stop"] = True


def main() -> int:
    # first of all: a stop that comes while Locust is still being imported ends the run as any other stop does
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    config = json.loads(sys.stdin.read())
    emit = Emitter()
    try:
        return run(config, emit)
    except Exception as exc:  # the parent reports it; the traceback goes to the child's log
        import traceback

        traceback.print_exc()
        emit("error", error=f"{type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
