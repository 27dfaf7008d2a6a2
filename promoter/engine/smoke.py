"""The runbook's smoke tests over HTTP: the same request definitions as the pre-traffic gate.

Stages: resolve the API's URL (``PROMOTER_API_URL``, else ``https://<domain>``) and a bearer token
(given, ``PROMOTER_TOKEN``, or obtained from the environment's Cognito user pool with a test user's
credentials), send the sequence of :mod:`promoter.engine.smoke_requests` with :func:`run_sequence` (which
still deletes what it created when a later test fails), judge each answer's status, body shape and latency
against the plan's SLA, and report as data, JUnit XML or a table.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree as ET

from promoter.adapters.http import HttpClient
from promoter.engine.smoke_requests import SmokeRequest, SmokeResult, run_sequence, smoke_requests
from promoter.errors import ConfigurationError, UsageError
from promoter.plan.models import Plan

API_URL_VAR = "PROMOTER_API_URL"
TOKEN_VAR = "PROMOTER_TOKEN"
USERNAME_VAR = "PROMOTER_SMOKE_USERNAME"
PASSWORD_VAR = "PROMOTER_SMOKE_PASSWORD"


@dataclass(frozen=True)
class SmokeCase:
    """One smoke result judged against the latency budget as well."""

    result: SmokeResult
    latency_budget_ms: float

    @property
    def problems(self) -> tuple[str, ...]:
        extra = ()
        if self.result.status is not None and self.result.duration_ms > self.latency_budget_ms:
            extra = (f"took {self.result.duration_ms:.0f} ms, over the {self.latency_budget_ms:g} ms budget",)
        return tuple(self.result.problems) + extra

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        data = self.result.to_dict()
        data.update(ok=self.ok, problems=list(self.problems), latency_budget_ms=self.latency_budget_ms)
        return data


@dataclass
class SmokeReport:
    env: str
    api_url: str
    cases: list[SmokeCase] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.cases) and all(c.ok for c in self.cases) and not self.skipped

    def to_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "api_url": self.api_url,
            "ok": self.ok,
            "passed": sum(c.ok for c in self.cases),
            "failed": sum(not c.ok for c in self.cases),
            "skipped": list(self.skipped),
            "duration_ms": round(self.duration_ms, 1),
            "tests": [c.to_dict() for c in self.cases],
        }

    def to_junit(self) -> str:
        suite = ET.Element(
            "testsuite",
            name=f"promoter.smoke.{self.env}",
            tests=str(len(self.cases) + len(self.skipped)),
            failures=str(sum(not c.ok for c in self.cases)),
            skipped=str(len(self.skipped)),
            time=f"{self.duration_ms / 1000:.3f}",
        )
        for case in self.cases:
            r = case.result
            el = ET.SubElement(
                suite, "testcase", classname=f"smoke.{self.env}", name=f"{r.test}-{r.name}",
                time=f"{r.duration_ms / 1000:.3f}",
            )
            if not case.ok:
                failure = ET.SubElement(el, "failure", message="; ".join(case.problems))
                failure.text = f"{r.method} {r.path} -> {r.status}"
        for name in self.skipped:
            el = ET.SubElement(suite, "testcase", classname=f"smoke.{self.env}", name=name)
            ET.SubElement(el, "skipped", message="not run: an earlier test failed")
        return ET.tostring(ET.ElementTree(suite).getroot(), encoding="unicode", xml_declaration=True)


def api_url_for(plan: Plan, env: str, override: str | None = None) -> str:
    url = override or os.environ.get(API_URL_VAR) or f"https://{plan.environment(env).domain}"
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"API URL {url!r} must start with http:// or https://")
    return url.rstrip("/")


def cognito_token(aws: Any, plan: Plan, env: str, username: str, password: str) -> str:
    """An IdToken for a test user of the environment's user pool (plan ``resources.user_pool``)."""
    from promoter.adapters.aws import translate

    names = plan.names(env)
    idp = aws.client("cognito-idp")
    try:
        pools = [
            p for page in idp.get_paginator("list_user_pools").paginate(MaxResults=60)
            for p in page["UserPools"] if p["Name"] == names.user_pool
        ]
        if not pools:
            raise ConfigurationError(f"no Cognito user pool named {names.user_pool!r} in {env}")
        pool_id = pools[0]["Id"]
        clients = [
            c for c in idp.list_user_pool_clients(UserPoolId=pool_id, MaxResults=60)["UserPoolClients"]
            if c["ClientName"] == names.user_pool_client
        ]
        if not clients:
            raise ConfigurationError(f"no app client named {names.user_pool_client!r} in pool {pool_id}")
        auth = idp.initiate_auth(
            ClientId=clients[0]["ClientId"],
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": username, "PASSWORD": password},
        )
    except ConfigurationError:
        raise
    except Exception as exc:
        raise translate(exc, "obtaining a smoke-test token from Cognito") from None
    token = auth.get("AuthenticationResult", {}).get("IdToken")
    if not token:
        raise ConfigurationError(
            f"Cognito asked for a challenge ({auth.get('ChallengeName')}) instead of a token",
            hint="give the test user a permanent password",
        )
    return token


def resolve_token(token: str | None, aws_factory: Any, plan: Plan, env: str) -> str:
    token = token or os.environ.get(TOKEN_VAR)
    if token:
        return token
    username, password = os.environ.get(USERNAME_VAR), os.environ.get(PASSWORD_VAR)
    if username and password:
        return cognito_token(aws_factory(), plan, env, username, password)
    raise ConfigurationError(
        "no bearer token for the smoke tests",
        hint=f"pass --token, set {TOKEN_VAR}, or set {USERNAME_VAR} and {PASSWORD_VAR} for a Cognito test user",
    )


def run_smoke(
    plan: Plan,
    env: str,
    client: HttpClient,
    *,
    latency_budget_ms: float | None = None,
    requests: tuple[SmokeRequest, ...] | None = None,
) -> SmokeReport:
    budget = latency_budget_ms if latency_budget_ms is not None else plan.smoke.latency_budget_ms
    sequence = requests or smoke_requests(plan)

    def send(request: SmokeRequest, path: str, _variables: Mapping[str, str]) -> tuple[int | None, Any]:
        resp = client.request(request.method, path, json_body=request.body, auth=request.auth)
        try:
            body = resp.json()
        except ValueError:
            body = resp.body.decode("utf-8", "replace")
        return resp.status, body

    started = time.perf_counter()
    results = run_sequence(sequence, send)
    report = SmokeReport(env=env, api_url=client.base_url, duration_ms=(time.perf_counter() - started) * 1000)
    report.cases = [SmokeCase(r, budget) for r in results]
    ran = {(r.name, r.test) for r in results}
    report.skipped = [f"{r.test}-{r.name}" for r in sequence if (r.name, r.test) not in ran]
    return report
