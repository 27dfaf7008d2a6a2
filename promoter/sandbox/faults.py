"""Control-plane faults on demand, so every fault path of a release can be exercised against the sandbox.

A fault is a rule: which calls it hits (a ``service`` as in the SigV4 scope, ``lambda``, ``cloudwatch``, ``sts``,
``sqs``...; an ``operation`` such as ``UpdateAlias`` or ``*``), what it does, and how long it lasts (``count``
calls, ``seconds`` from now, or both, whichever ends first; one call when neither is given):

- ``throttle``: answer the service's own throttling error (Lambda: ``429 TooManyRequestsException``; query and
  JSON services: ``400 Throttling`` / ``ThrottlingException``), as AWS does beyond a rate limit;
- ``error``: answer a ``5xx`` (``status``, default 500) service error;
- ``latency``: hold the call ``latency_ms`` before serving it normally;
- ``drop``: serve the call (the change is applied), then close the connection without a reply: what a client
  sees when the reply is lost after the change, and why its retry meets its own ``RevisionId``.

Both endpoints that serve AWS APIs (moto's server and the Lambda front) hold a :class:`FaultBook` and expose it at
``/__sandbox/faults``: ``GET`` lists the rules (with their hits), ``POST`` adds one (JSON: the fields of
:class:`Fault`), ``DELETE`` clears them all. ``promoter sandbox fault add|list|clear`` drives it.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Kind = Literal["throttle", "error", "latency", "drop"]
KINDS = ("throttle", "error", "latency", "drop")
PATH = "/__sandbox/faults"

_LAMBDA_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (method, re.compile(pattern), operation)
    for method, pattern, operation in [
        ("POST", r"^/2015-03-31/functions/[^/]+/invocations$", "Invoke"),
        ("GET", r"^/2015-03-31/functions/[^/]+/aliases/[^/]+$", "GetAlias"),
        ("PUT", r"^/2015-03-31/functions/[^/]+/aliases/[^/]+$", "UpdateAlias"),
        ("DELETE", r"^/2015-03-31/functions/[^/]+/aliases/[^/]+$", "DeleteAlias"),
        ("POST", r"^/2015-03-31/functions/[^/]+/aliases/?$", "CreateAlias"),
        ("GET", r"^/2015-03-31/functions/[^/]+/aliases/?$", "ListAliases"),
        ("POST", r"^/2015-03-31/functions/[^/]+/versions$", "PublishVersion"),
        ("GET", r"^/2015-03-31/functions/[^/]+/versions$", "ListVersionsByFunction"),
        ("GET", r"^/2015-03-31/functions/[^/]+/configuration$", "GetFunctionConfiguration"),
        ("PUT", r"^/2015-03-31/functions/[^/]+/configuration$", "UpdateFunctionConfiguration"),
        ("PUT", r"^/2015-03-31/functions/[^/]+/code$", "UpdateFunctionCode"),
        ("POST", r"^/2015-03-31/functions/?$", "CreateFunction"),
        ("GET", r"^/2015-03-31/functions/?$", "ListFunctions"),
        ("GET", r"^/2015-03-31/functions/[^/]+$", "GetFunction"),
        ("DELETE", r"^/2015-03-31/functions/[^/]+$", "DeleteFunction"),
        ("PUT", r"^/2017-10-31/functions/[^/]+/concurrency$", "PutFunctionConcurrency"),
        ("GET", r"^/2019-09-30/functions/[^/]+/concurrency$", "GetFunctionConcurrency"),
        ("DELETE", r"^/2017-10-31/functions/[^/]+/concurrency$", "DeleteFunctionConcurrency"),
        ("GET", r"^/2016-08-19/account-settings/?$", "GetAccountSettings"),
    ]
]
SIGNING_NAMES = {"cloudwatch": "monitoring"}  # service names as people say them -> the SigV4 scope's name
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")


def lambda_operation(method: str, path: str) -> str:
    """The Lambda API operation of a REST request (``PUT /2015-03-31/functions/f/aliases/live`` -> UpdateAlias)."""
    for wanted, pattern, operation in _LAMBDA_ROUTES:
        if method == wanted and pattern.match(path):
            return operation
    return "Unknown"


def signed_service(authorization: str | None) -> str | None:
    """The service of a SigV4 ``Authorization`` header's credential scope."""
    match = _SCOPE.search(authorization or "")
    return match.group(1) if match else None


@dataclass
class Fault:
    service: str
    operation: str = "*"
    kind: Kind = "error"
    count: int | None = None
    seconds: float | None = None
    status: int = 500
    latency_ms: float = 0.0
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    hits: int = 0
    expires_at: float | None = None  # epoch seconds, from ``seconds``

    @classmethod
    def from_dict(cls, data: dict[str, Any], now: float) -> Fault:
        allowed = {"service", "operation", "kind", "count", "seconds", "status", "latency_ms"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(unknown)}")
        if not data.get("service"):
            raise ValueError("a fault needs a service (lambda, cloudwatch, sts, sqs, ...)")
        kind = data.get("kind", "error")
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r}: choose one of {', '.join(KINDS)}")
        count = data.get("count")
        seconds = data.get("seconds")
        if count is not None and (not isinstance(count, int) or count < 1):
            raise ValueError("count must be a whole number of calls, 1 or more")
        if seconds is not None and (not isinstance(seconds, int | float) or seconds <= 0):
            raise ValueError("seconds must be more than 0")
        if count is None and seconds is None:
            count = 1
        status = int(data.get("status", 500 if kind != "throttle" else 429))
        if kind == "error" and not 500 <= status <= 599:
            raise ValueError("an error fault answers a 5xx status")
        latency = float(data.get("latency_ms", 0))
        if kind == "latency" and not 0 < latency <= 120_000:
            raise ValueError("latency_ms must be more than 0 and at most 120000")
        service = str(data["service"]).lower()
        return cls(service=SIGNING_NAMES.get(service, service), operation=str(data.get("operation") or "*"), kind=kind,
                   count=count, seconds=seconds, status=status, latency_ms=latency,
                   expires_at=now + float(seconds) if seconds is not None else None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def live(self, now: float) -> bool:
        if self.count is not None and self.hits >= self.count:
            return False
        return self.expires_at is None or now < self.expires_at


class FaultBook:
    """The rules of one endpoint; thread-safe. ``take`` returns the rule a call hits (and counts the hit)."""

    def __init__(self) -> None:
        self._rules: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, data: dict[str, Any]) -> Fault:
        rule = Fault.from_dict(data, time.time())
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> int:
        with self._lock:
            count, self._rules = len(self._rules), []
        return count

    def list(self) -> list[dict[str, Any]]:
        now = time.time()
        with self._lock:
            return [{**r.to_dict(), "active": r.live(now)} for r in self._rules]

    def take(self, service: str | None, operation: str) -> Fault | None:
        if not service:
            return None
        now = time.time()
        with self._lock:
            for rule in self._rules:
                if rule.service == service and rule.operation in ("*", operation) and rule.live(now):
                    rule.hits += 1
                    return rule
        return None

    # -- the /__sandbox/faults endpoint, for any HTTP front ----------------------------------------------------
    def endpoint(self, method: str, body: bytes) -> tuple[int, bytes]:
        if method == "GET":
            return 200, json.dumps({"faults": self.list()}).encode()
        if method == "DELETE":
            return 200, json.dumps({"cleared": self.clear()}).encode()
        if method == "POST":
            try:
                data = json.loads(body or b"{}")
                if not isinstance(data, dict):
                    raise ValueError("expected a JSON object")
                rule = self.add(data)
            except ValueError as exc:
                return 400, json.dumps({"message": str(exc)}).encode()
            return 201, json.dumps(rule.to_dict()).encode()
        return 405, json.dumps({"message": f"{method} is not allowed on {PATH}"}).encode()


def error_body(rule: Fault, protocol: Literal["rest-json", "json", "query"]) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the error a ``throttle`` or ``error`` rule answers, in the service's protocol."""
    request_id = str(uuid.uuid4())
    throttle = rule.kind == "throttle"
    if protocol == "rest-json":  # Lambda
        code = "TooManyRequestsException" if throttle else "ServiceException"
        status = 429 if throttle else rule.status
        body = {"Type": "User" if throttle else "Service",
                "message": "Rate exceeded" if throttle else "The service encountered an internal error (injected)"}
        if throttle:
            body["Reason"] = "CallerRateLimitExceeded"
        return status, {"Content-Type": "application/json", "x-amzn-ErrorType": code,
                        "x-amzn-RequestId": request_id}, json.dumps(body).encode()
    if protocol == "json":
        code = "ThrottlingException" if throttle else "InternalFailure"
        status = 400 if throttle else rule.status
        return status, {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": request_id}, json.dumps(
            {"__type": code, "message": "Rate exceeded" if throttle else "internal error (injected)"}).encode()
    code = "Throttling" if throttle else "InternalFailure"
    status = 400 if throttle else rule.status
    kind = "Sender" if throttle else "Receiver"
    message = "Rate exceeded" if throttle else "internal error (injected)"
    xml = (f"<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error>"
           f"<RequestId>{request_id}</RequestId></ErrorResponse>")
    return status, {"Content-Type": "text/xml", "x-amzn-RequestId": request_id}, xml.encode()
