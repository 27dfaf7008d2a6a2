"""The runbook's six smoke requests, defined once, as data.

The runbook ("Post-Deployment Validation: Smoke Tests") lists six requests: health; list; create; get by id;
update to ``{"status": "active"}``; delete. Here they are seven entries, because the delete is confirmed by a
``GET`` that must answer 404. Each entry says what to send (method, path template, body), what must come
back (status, body keys, values) and what to remember for later requests (``captures``: the created
campaign's ``id``).

Two transports use the same definitions: the HTTP smoke suite sends them to the API's URL with a bearer
token, and the pre-traffic gate of a release renders them as API Gateway REST proxy events
(:func:`to_apigw_event`) and invokes the new Lambda version directly. :func:`run_sequence` drives either
transport through a ``send`` callable, so the sequencing, substitution and checks exist once.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from promoter.plan.models import Plan

PRETRAFFIC_CLAIMS: dict[str, str] = {"sub": "promoter-pretraffic", "cognito:groups": "campaigns-admin"}

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class SmokeRequest:
    """One request of the smoke sequence and what a good answer looks like."""

    name: str
    test: int  # the runbook's test number (1-6)
    method: str
    path: str  # template; ``{id}`` is filled from an earlier capture
    expected_status: int
    body: Mapping[str, Any] | None = None
    required_keys: tuple[str, ...] = ()
    expected_values: Mapping[str, Any] = field(default_factory=dict)
    captures: Mapping[str, str] = field(default_factory=dict)  # variable -> key of the response body
    auth: bool = True
    cleans_up: bool = False  # removes what an earlier request created

    def render_path(self, variables: Mapping[str, str]) -> str:
        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in variables:
                raise KeyError(f"smoke request {self.name!r} needs {{{name}}}, which no earlier request captured")
            return str(variables[name])

        return _PLACEHOLDER.sub(fill, self.path)

    def check(self, status: int | None, body: Any) -> list[str]:
        """What is wrong with an answer; empty when it is as expected."""
        problems = []
        if status != self.expected_status:
            problems.append(f"status {status}, expected {self.expected_status}")
            return problems
        if self.required_keys or self.expected_values:
            if not isinstance(body, Mapping):
                return [f"body is not a JSON object: {str(body)[:120]!r}"]
            missing = [k for k in self.required_keys if k not in body]
            if missing:
                problems.append(f"body lacks {', '.join(missing)}")
            for key, value in self.expected_values.items():
                if body.get(key) != value:
                    problems.append(f"body {key}={body.get(key)!r}, expected {value!r}")
        return problems

    def capture(self, body: Any) -> dict[str, str]:
        if not self.captures or not isinstance(body, Mapping):
            return {}
        return {var: str(body[key]) for var, key in self.captures.items() if key in body}


def smoke_requests(plan: Plan) -> tuple[SmokeRequest, ...]:
    """The runbook's smoke sequence for this plan's service."""
    base = plan.service.base_path.rstrip("/")
    campaign = plan.smoke.test_campaign.model_dump(mode="json", exclude_none=True)
    return (
        SmokeRequest("health", 1, "GET", plan.service.health_path, 200, required_keys=("status",), auth=False),
        SmokeRequest("list", 2, "GET", base, 200, required_keys=("items",)),
        SmokeRequest(
            "create",
            3,
            "POST",
            base,
            201,
            body=campaign,
            required_keys=("id", "name", "status"),
            expected_values={"name": campaign["name"]},
            captures={"id": "id"},
        ),
        SmokeRequest("get", 4, "GET", base + "/{id}", 200, required_keys=("id", "name"), captures={}),
        SmokeRequest(
            "update",
            5,
            "PUT",
            base + "/{id}",
            200,
            body={"status": "active"},
            required_keys=("id", "status"),
            expected_values={"status": "active"},
        ),
        SmokeRequest("delete", 6, "DELETE", base + "/{id}", 204, cleans_up=True),
        SmokeRequest("confirm-deleted", 6, "GET", base + "/{id}", 404),
    )


def to_apigw_event(
    request: SmokeRequest,
    claims: Mapping[str, str] | None,
    variables: Mapping[str, str] | None = None,
    *,
    stage: str = "promoter",
) -> dict[str, Any]:
    """Render one request as the API Gateway REST proxy event a Cognito-authorized API would send."""
    path = request.render_path(variables or {})
    body = None if request.body is None else json.dumps(dict(request.body), separators=(",", ":"))
    headers = {"Accept": "application/json", "User-Agent": "promoter-pretraffic"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    request_id = str(uuid.uuid4())
    context: dict[str, Any] = {
        "httpMethod": request.method,
        "path": f"/{stage}{path}",
        "resourcePath": _resource_path(request.path),
        "stage": stage,
        "requestId": request_id,
        "requestTimeEpoch": int(time.time() * 1000),
        "protocol": "HTTP/1.1",
        "identity": {"sourceIp": "127.0.0.1", "userAgent": "promoter-pretraffic"},
    }
    if request.auth and claims:
        context["authorizer"] = {"claims": dict(claims)}
    path_params = dict(variables or {}) if "{" in request.path else None
    if path_params is not None:
        path_params = {k: v for k, v in path_params.items() if "{" + k + "}" in request.path}
    return {
        "resource": _resource_path(request.path),
        "path": path,
        "httpMethod": request.method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": path_params,
        "stageVariables": None,
        "requestContext": context,
        "body": body,
        "isBase64Encoded": False,
    }


def _resource_path(template: str) -> str:
    return template.replace("{id}", "{campaign_id}")


@dataclass(frozen=True)
class SmokeResult:
    name: str
    test: int
    method: str
    path: str
    status: int | None
    ok: bool
    problems: tuple[str, ...]
    duration_ms: float
    body: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "test": self.test,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "ok": self.ok,
            "problems": list(self.problems),
            "duration_ms": round(self.duration_ms, 2),
        }


# ``send(request, path, variables)`` performs one request and returns (status, parsed body); it raises only for
# transport failures, which count as a failed request.
Send = Callable[[SmokeRequest, str, Mapping[str, str]], tuple[int | None, Any]]


def run_sequence(
    requests: tuple[SmokeRequest, ...],
    send: Send,
    *,
    stop_on_failure: bool = True,
    timer: Callable[[], float] = time.perf_counter,
) -> list[SmokeResult]:
    """Send the requests in order, substituting captures, and check each answer.

    On a failure the sequence stops, except that a clean-up request (delete) still runs when an earlier
    request created something, so a failed run leaves no test data behind.
    """
    variables: dict[str, str] = {}
    results: list[SmokeResult] = []
    failed = False
    for request in requests:
        if failed and not (request.cleans_up and _placeholders(request.path) <= variables.keys()):
            continue
        try:
            path = request.render_path(variables)
        except KeyError as exc:
            results.append(SmokeResult(request.name, request.test, request.method, request.path, None, False,
                                       (str(exc.args[0]),), 0.0))
            failed = True
            continue
        started = timer()
        try:
            status, body = send(request, path, variables)
            problems = request.check(status, body)
        except Exception as exc:  # a transport failure is a failed request, with its reason
            status, body, problems = None, None, [f"{type(exc).__name__}: {exc}"]
        elapsed_ms = (timer() - started) * 1000
        variables.update(request.capture(body))
        results.append(SmokeResult(request.name, request.test, request.method, path, status, not problems,
                                   tuple(problems), elapsed_ms, body))
        if problems:
            failed = True
            if not stop_on_failure:
                failed = False
    return results


def _placeholders(template: str) -> set[str]:
    return set(_PLACEHOLDER.findall(template))
