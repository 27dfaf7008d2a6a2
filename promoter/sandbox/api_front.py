"""The sandbox's API Gateway: serves the campaigns API on loopback as a REST API stage with a Lambda proxy.

Run as::

    python -m promoter.sandbox.api_front --port P --moto-url URL --lambda-url URL --env ENV --plan PLANFILE \\
        --state-dir DIR --region R --user-pool-id ID

Per request, as API Gateway does:

1. match the route under the plan's ``service.base_path`` (the collection, ``/health``, ``/{id}``, else a
   ``{proxy+}`` resource); anything else, and any method the API does not define (OPTIONS, TRACE, ...), is
   ``403 {"message":"Missing Authentication Token"}``, as API Gateway answers it;
2. run the Cognito user-pool authorizer (:mod:`promoter.sandbox.auth`) except on the health route:
   ``401 {"message":"Unauthorized"}`` without a valid ID token;
3. build a REST (v1) proxy event, pick the version by the alias's weights (the alias read through the Lambda front,
   cached for 250 ms) and invoke that version through the Lambda front, attributing the invocation to the alias;
4. map the proxy result back to HTTP; a function error or a malformed result is ``502 Internal server error``;
5. record ``AWS/ApiGateway`` metrics (Count, 4XXError, 5XXError, Latency, IntegrationLatency by ApiName and Stage).

Sandbox endpoints: ``GET /__sandbox/health``, ``GET /__sandbox/stats`` (requests per executed version and per
status since start; when each version first answered, last answered and first failed), ``POST /__sandbox/flush``
(flushes this front's and the Lambda front's metrics and logs).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import os
import random
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from promoter.sandbox.auth import CognitoAuthorizer, Unauthorized, bearer_token, flatten_claims, issuer_for
from promoter.sandbox.lambda_front import MotoClient, Reply, choose_version, serve
from promoter.sandbox.metrics import FLUSH_INTERVAL, Datapoint, Telemetry

log = logging.getLogger("promoter.sandbox.api_front")

STAGE = "v1"
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"}  # the API's methods; API Gateway refuses any other
ALIAS_TTL = 0.25
TOKEN_CACHE_MAX = 2048


def _json_reply(status: int, payload: dict, request_id: str, extra: dict | None = None) -> Reply:
    headers = {"Content-Type": "application/json", "x-amzn-RequestId": request_id, **(extra or {})}
    return Reply(status, headers, json.dumps(payload).encode())


class ApiFront:
    wants_client_ip = True  # identity.sourceIp
    wants_multi_headers = True  # multiValueHeaders

    def __init__(self, *, moto_url: str, lambda_url: str, function: str, alias: str, rest_api: str,
                 base_path: str, health_path: str, region: str, user_pool_id: str,
                 flush_interval: float = FLUSH_INTERVAL) -> None:
        import boto3

        self.function = function
        self.alias_name = alias
        self.rest_api = rest_api
        self.base_path = base_path.rstrip("/")
        self.health_path = health_path.rstrip("/")
        self.region = region
        self.api_id = hashlib.sha256(rest_api.encode()).hexdigest()[:10]
        self.lambda_ = MotoClient(lambda_url, region)
        session = boto3.session.Session(aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
                                        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
                                        region_name=region)
        cognito = session.client("cognito-idp", endpoint_url=moto_url)

        def app_clients() -> set[str]:
            listed = cognito.list_user_pool_clients(UserPoolId=user_pool_id, MaxResults=60)["UserPoolClients"]
            return {c["ClientId"] for c in listed}

        self.authorizer = CognitoAuthorizer(f"{moto_url.rstrip('/')}/{user_pool_id}/.well-known/jwks.json",
                                            issuer_for(user_pool_id, region), audiences=app_clients)
        self.authorizer.read_audiences()  # now, so the first request does not wait for it
        self.telemetry = Telemetry(session.client("cloudwatch", endpoint_url=moto_url),
                                   session.client("logs", endpoint_url=moto_url), interval=flush_interval)
        self._alias: tuple[float, dict] | None = None
        self._tokens: dict[str, dict] = {}
        self._lock = threading.Lock()
        self.by_version: Counter[str] = Counter()
        self.first_seen: dict[str, float] = {}  # epoch seconds of each version's first and last request
        self.first_failed: dict[str, float] = {}  # ... and of its first 5xx answer
        self.last_seen: dict[str, float] = {}
        self.by_status: Counter[int] = Counter()
        self.started = time.time()

    # ---------------------------------------------------------------------------------------------- helpers

    def live_alias(self) -> dict:
        now = time.monotonic()
        cached = self._alias
        if cached and cached[0] > now:
            return cached[1]
        reply, data = self.lambda_.json("GET", f"/2015-03-31/functions/{quote(self.function, safe='')}/aliases/"
                                               f"{quote(self.alias_name, safe='')}")
        if not 200 <= reply.status < 300 or not data:
            raise LookupError(f"alias {self.function}:{self.alias_name}: HTTP {reply.status} {reply.body[:200]!r}")
        self._alias = (now + ALIAS_TTL, data)
        return data

    def claims_for(self, authorization: str | None) -> dict[str, str]:
        token = bearer_token(authorization)
        if token is None:
            raise Unauthorized("no token")
        cached = self._tokens.get(token)
        if cached is not None and cached["_exp"] > time.time():
            return cached["claims"]
        raw = self.authorizer.verify(token)
        claims = flatten_claims(raw)
        with self._lock:
            if len(self._tokens) >= TOKEN_CACHE_MAX:
                self._tokens.clear()
            self._tokens[token] = {"_exp": float(raw["exp"]), "claims": claims}
        return claims

    def resource_for(self, path: str) -> tuple[str, dict | None] | None:
        base = self.base_path
        if path.rstrip("/") == base:
            return base, None
        if path.rstrip("/") == self.health_path:
            return self.health_path, None
        if path.startswith(base + "/"):
            rest = path[len(base) + 1:]
            if rest and "/" not in rest.rstrip("/"):
                return base + "/{id}", {"id": unquote(rest.rstrip("/"))}
            return base + "/{proxy+}", {"proxy": unquote(rest)}
        return None

    def build_event(self, method: str, route, headers: dict[str, str], body: bytes, resource: str,
                    path_params: dict | None, claims: dict | None, request_id: str, account_id: str,
                    multi_headers: dict[str, list[str]] | None = None) -> dict:
        """A REST (v1) proxy event. ``headers`` holds the last value of each header, ``multi_headers`` all of them
        (as API Gateway fills ``headers`` and ``multiValueHeaders``)."""
        multi_query = parse_qs(route.query, keep_blank_values=True) if route.query else {}
        now = time.time()
        try:
            text = body.decode("utf-8") if body else None
            is_b64 = False
        except UnicodeDecodeError:
            text, is_b64 = base64.b64encode(body).decode(), True
        context = {
            "resourceId": hashlib.sha256(resource.encode()).hexdigest()[:6],
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": base64.b64encode(uuid.uuid4().bytes[:12]).decode(),
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "path": route.path,
            "accountId": account_id,
            "protocol": "HTTP/1.1",
            "stage": STAGE,
            "domainPrefix": "localhost",
            "requestTimeEpoch": int(now * 1000),
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None, "accountId": None, "cognitoIdentityId": None, "caller": None,
                "sourceIp": headers.get("_client_ip", "127.0.0.1"), "principalOrgId": None, "accessKey": None,
                "cognitoAuthenticationType": None, "cognitoAuthenticationProvider": None, "userArn": None,
                "userAgent": next((v for k, v in headers.items() if k.lower() == "user-agent"), None), "user": None,
            },
            "domainName": next((v for k, v in headers.items() if k.lower() == "host"), "localhost"),
            "apiId": self.api_id,
        }
        if claims is not None:
            context["authorizer"] = {"claims": claims}
        visible = {k: v for k, v in headers.items() if not k.startswith("_")}
        multi = {k: list(v) for k, v in (multi_headers or {}).items() if not k.startswith("_") and v}
        for key, value in visible.items():
            multi.setdefault(key, [value])
        return {
            "resource": resource,
            "path": route.path,
            "httpMethod": method,
            "headers": visible or None,
            "multiValueHeaders": multi or None,
            "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": path_params,
            "stageVariables": None,
            "requestContext": context,
            "body": text,
            "isBase64Encoded": is_b64,
        }

    # ---------------------------------------------------------------------------------------------- dispatch

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes,
               multi_headers: dict[str, list[str]] | None = None) -> Reply:
        route = urlsplit(path)
        if route.path.startswith("/__sandbox/"):
            return self.sandbox_endpoint(method, route.path)
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        reply, version, integration_ms = self._serve(method, route, headers, body, request_id, multi_headers)
        latency = (time.perf_counter() - started) * 1000
        dims = (("ApiName", self.rest_api), ("Stage", STAGE))
        points = [
            Datapoint("AWS/ApiGateway", "Count", dims, 1.0),
            Datapoint("AWS/ApiGateway", "4XXError", dims, 1.0 if 400 <= reply.status < 500 else 0.0),
            Datapoint("AWS/ApiGateway", "5XXError", dims, 1.0 if reply.status >= 500 else 0.0),
            Datapoint("AWS/ApiGateway", "Latency", dims, round(latency, 2), "Milliseconds", raw=True),
        ]
        if integration_ms is not None:
            points.append(Datapoint("AWS/ApiGateway", "IntegrationLatency", dims, round(integration_ms, 2),
                                    "Milliseconds", raw=True))
        self.telemetry.metrics.add(points)
        with self._lock:
            self.by_status[reply.status] += 1
            if version is not None:
                self.by_version[version] += 1
                now = time.time()
                self.first_seen.setdefault(version, now)
                self.last_seen[version] = now
                if reply.status >= 500:
                    self.first_failed.setdefault(version, now)
        reply.headers.setdefault("x-amzn-RequestId", request_id)
        reply.headers["x-amz-apigw-id"] = request_id[:12]
        return reply

    def _serve(self, method: str, route, headers: dict[str, str], body: bytes, request_id: str,
               multi_headers: dict[str, list[str]] | None = None) -> tuple[Reply, str | None, float | None]:
        matched = self.resource_for(route.path) if method in METHODS else None
        if matched is None:
            return _json_reply(403, {"message": "Missing Authentication Token"}, request_id,
                               {"x-amzn-ErrorType": "MissingAuthenticationTokenException"}), None, None
        resource, path_params = matched
        claims = None
        if resource != self.health_path:
            authorization = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
            try:
                claims = self.claims_for(authorization)
            except Unauthorized as exc:
                log.debug("unauthorized: %s", exc)
                return _json_reply(401, {"message": "Unauthorized"}, request_id,
                                   {"x-amzn-ErrorType": "UnauthorizedException"}), None, None
        try:
            alias = self.live_alias()
        except (LookupError, OSError) as exc:
            log.error("cannot route: %s", exc)
            return _json_reply(500, {"message": "Internal server error"}, request_id), None, None
        version = choose_version(alias, random.random())
        account_id = (alias.get("AliasArn") or "arn:aws:lambda:r:000000000000").split(":")[4]
        event = self.build_event(method, route, headers, body, resource, path_params, claims, request_id,
                                 account_id, multi_headers)
        began = time.perf_counter()
        try:
            result = self.lambda_.request(
                "POST", f"/2015-03-31/functions/{quote(self.function, safe='')}/invocations"
                        f"?Qualifier={quote(version, safe='')}",
                json.dumps(event).encode(),
                {"Content-Type": "application/json", "X-Sandbox-Resource": self.alias_name},
            )
        except Exception as exc:
            log.error("invoke failed: %s", exc)
            return _json_reply(502, {"message": "Internal server error"}, request_id), version, None
        integration_ms = (time.perf_counter() - began) * 1000
        executed = result.headers.get("X-Amz-Executed-Version") or version
        if result.status == 429:
            return _json_reply(429, {"message": "Too Many Requests"}, request_id), executed, integration_ms
        if result.status != 200 or "X-Amz-Function-Error" in result.headers:
            log.info("function error on version %s: HTTP %s %s", executed, result.status, result.body[:300])
            return _json_reply(502, {"message": "Internal server error"}, request_id), executed, integration_ms
        mapped = self.map_result(result.body)
        if mapped is None:
            log.info("malformed Lambda proxy response from version %s: %s", executed, result.body[:300])
            return _json_reply(502, {"message": "Internal server error"}, request_id), executed, integration_ms
        return mapped, executed, integration_ms

    @staticmethod
    def map_result(payload: bytes) -> Reply | None:
        """A Lambda proxy result -> HTTP reply; None when the result is not a valid proxy response."""
        try:
            data = json.loads(payload)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        status = data.get("statusCode")
        if isinstance(status, str) and status.isdigit():
            status = int(status)
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
            return None
        headers: dict[str, str] = {}
        for key, value in (data.get("headers") or {}).items():
            headers[str(key)] = str(value)
        for key, values in (data.get("multiValueHeaders") or {}).items():
            if isinstance(values, list) and values:
                headers[str(key)] = ", ".join(str(v) for v in values)
        body = data.get("body")
        if body is None:
            raw = b""
        elif data.get("isBase64Encoded"):
            try:
                raw = base64.b64decode(body)
            except (ValueError, TypeError):
                return None
        else:
            raw = (body if isinstance(body, str) else json.dumps(body)).encode()
        headers.setdefault("Content-Type", "application/json")
        return Reply(status, headers, raw)

    def sandbox_endpoint(self, method: str, path: str) -> Reply:
        ok = {"Content-Type": "application/json"}
        if path == "/__sandbox/health":
            return Reply(200, ok, b'{"status":"ok"}')
        if path == "/__sandbox/stats":
            with self._lock:
                stats = {"since": self.started, "total": sum(self.by_status.values()),
                         "versions": dict(self.by_version), "statuses": {str(k): v for k, v in self.by_status.items()},
                         "first_seen": dict(self.first_seen), "last_seen": dict(self.last_seen),
                         "first_failed": dict(self.first_failed)}
            return Reply(200, ok, json.dumps(stats).encode())
        if path == "/__sandbox/flush" and method == "POST":
            self.telemetry.flush()
            result = self.lambda_.request("POST", "/__sandbox/flush")
            return Reply(200 if result.status == 200 else 502, ok, b'{"flushed":true}')
        return Reply(404, ok, b'{"message":"no such sandbox endpoint"}')

    def shutdown(self) -> None:
        try:
            self.telemetry.stop()
        except Exception:
            log.exception("final metrics flush failed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m promoter.sandbox.api_front")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--moto-url", required=True)
    parser.add_argument("--lambda-url", required=True)
    parser.add_argument("--env", required=True)
    parser.add_argument("--plan", required=True)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--region", required=True)
    parser.add_argument("--user-pool-id", required=True)
    parser.add_argument("--flush-interval", type=float,
                        default=float(os.environ.get("SANDBOX_FLUSH_INTERVAL", FLUSH_INTERVAL)))
    parser.add_argument("--log-level", default=os.environ.get("SANDBOX_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(),
                        format="%(asctime)s api_front %(levelname)s %(message)s")
    from promoter.plan.loader import load_plan

    plan = load_plan(args.plan)
    names = plan.names(args.env)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    front = ApiFront(moto_url=args.moto_url, lambda_url=args.lambda_url, function=names.function, alias=names.alias,
                     rest_api=names.rest_api, base_path=plan.service.base_path, health_path=plan.service.health_path,
                     region=args.region, user_pool_id=args.user_pool_id, flush_interval=args.flush_interval)
    front.telemetry.start()
    serve(front, args.port, "api front")
    return 0


if __name__ == "__main__":
    sys.exit(main())
