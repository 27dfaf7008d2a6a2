"""Fixtures for the campaigns service tests: moto-backed AWS and a REST proxy event client."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from campaigns_lambda import handler as service_handler

TABLE = "campaigns-test"
BUCKET = "bbws-templates-test"
TEMPLATE_KEY = "emails/welcome.html"
RELEASE = "v1.4.2-test"
AUTH_TOKEN = "eyJraWQiOiJleGFtcGxlIiwiYWxnIjoiUlMyNTYifQ.placeholder.signature"
BASE_EVENT = json.loads((Path(__file__).parent / "events" / "rest_proxy.json").read_text())

SERVICE_ENV = {
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_REGION": "eu-west-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "CAMPAIGNS_TABLE": TABLE,
    "TEMPLATES_BUCKET": BUCKET,
    "RELEASE_VERSION": RELEASE,
}
UNSET_ENV = ("CHAOS_ERROR_RATE", "CHAOS_LATENCY_MS", "AWS_PROFILE", "POWERTOOLS_DEV")


def _apply_env(mp: pytest.MonkeyPatch) -> None:
    for key, value in SERVICE_ENV.items():
        mp.setenv(key, value)
    for key in UNSET_ENV:
        mp.delenv(key, raising=False)


def make_clients() -> tuple[Any, Any]:
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-west-1"
    )
    return session.client("dynamodb"), session.client("s3")


def create_resources(dynamodb: Any, s3: Any) -> None:
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_object(Bucket=BUCKET, Key=TEMPLATE_KEY, Body=b"<html>Hello {{name}}</html>")


@pytest.fixture(autouse=True)
def service_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    _apply_env(monkeypatch)
    service_handler.reset_state()
    yield
    service_handler.reset_state()


@dataclass
class AwsResources:
    dynamodb: Any
    s3: Any

    def scan_all(self) -> list[dict[str, Any]]:
        return self.dynamodb.scan(TableName=TABLE)["Items"]


@pytest.fixture(scope="session")
def aws_clients() -> tuple[Any, Any]:
    """boto3 clients built once; moto intercepts them inside every mock_aws context."""
    with mock_aws():
        return make_clients()


@pytest.fixture
def aws(service_env: None, aws_clients: tuple[Any, Any]) -> Iterator[AwsResources]:
    """Fresh moto state per test: the table and bucket (with one template) exist and are empty."""
    dynamodb, s3 = aws_clients
    with mock_aws():
        create_resources(dynamodb, s3)
        service_handler.use_clients(dynamodb=dynamodb, s3=s3)
        yield AwsResources(dynamodb, s3)


@pytest.fixture(scope="module")
def module_aws() -> Iterator[AwsResources]:
    """One moto context for a whole module (used by property-based tests)."""
    with pytest.MonkeyPatch.context() as mp:
        _apply_env(mp)
        with mock_aws():
            dynamodb, s3 = make_clients()
            create_resources(dynamodb, s3)
            yield AwsResources(dynamodb, s3)


class FakeLambdaContext:
    function_name = "campaigns-api-test"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:campaigns-api-test"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())


@dataclass
class ApiResponse:
    status: int
    headers: dict[str, list[str]]
    text: str | None
    raw: dict[str, Any] = field(repr=False)

    @property
    def json(self) -> Any:
        return json.loads(self.text) if self.text else None

    def header(self, name: str) -> str | None:
        for key, values in self.headers.items():
            if key.lower() == name.lower():
                return values[-1]
        return None

    @property
    def error_code(self) -> str | None:
        body = self.json
        return body["error"]["code"] if isinstance(body, dict) and "error" in body else None


def _resource_for(path: str) -> tuple[str, dict[str, str] | None]:
    rest = path.removeprefix("/v1.0/campaigns").strip("/")
    if not rest:
        return "/v1.0/campaigns", None
    if rest == "health":
        return "/v1.0/campaigns/health", None
    return "/v1.0/campaigns/{id}", {"id": rest}


def build_event(
    method: str,
    path: str,
    *,
    body: str | None = None,
    json_body: Any = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    groups: Any = "campaigns-admin",
    authenticated: bool = True,
    is_base64: bool = False,
    request_id: str | None = None,
) -> dict[str, Any]:
    """A REST proxy event shaped like the ones API Gateway sends, adapted to this request."""
    event = copy.deepcopy(BASE_EVENT)
    resource, path_parameters = _resource_for(path)
    all_headers = dict(event["headers"])
    if json_body is not None:
        body = json.dumps(json_body)
        all_headers["Content-Type"] = "application/json"
    if is_base64 and body is not None:
        body = base64.b64encode(body.encode("utf-8")).decode("ascii")
    all_headers.update(headers or {})
    if not authenticated:
        all_headers.pop("Authorization", None)
        event["requestContext"].pop("authorizer", None)
    else:
        event["requestContext"]["authorizer"]["claims"]["cognito:groups"] = groups
    event.update(
        resource=resource,
        path=path,
        httpMethod=method,
        headers=all_headers,
        multiValueHeaders={k: [v] for k, v in all_headers.items()},
        queryStringParameters=dict(query) if query else None,
        multiValueQueryStringParameters={k: [v] for k, v in query.items()} if query else None,
        pathParameters=path_parameters,
        body=body,
        isBase64Encoded=is_base64,
    )
    ctx = event["requestContext"]
    ctx.update(
        httpMethod=method,
        path=f"/{ctx['stage']}{path}",
        resourcePath=resource,
        requestId=request_id or str(uuid.uuid4()),
    )
    return event


def invoke(event: Any) -> ApiResponse:
    raw = service_handler.lambda_handler(event, FakeLambdaContext())
    assert isinstance(raw, dict)
    headers = dict(raw.get("multiValueHeaders") or {})
    for key, value in (raw.get("headers") or {}).items():
        headers.setdefault(key, [value])
    return ApiResponse(status=raw["statusCode"], headers=headers, text=raw.get("body"), raw=raw)


class Api:
    """Drives the Lambda handler with REST proxy events."""

    build_event = staticmethod(build_event)
    invoke = staticmethod(invoke)

    def request(self, method: str, path: str, **kwargs: Any) -> ApiResponse:
        return invoke(build_event(method, path, **kwargs))

    def get(self, path: str, **kwargs: Any) -> ApiResponse:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> ApiResponse:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> ApiResponse:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> ApiResponse:
        return self.request("DELETE", path, **kwargs)

    def create(self, **fields: Any) -> dict[str, Any]:
        payload = {"name": "Spring sale", **fields}
        response = self.post("/v1.0/campaigns", json_body=payload)
        assert response.status == 201, response.text
        return response.json


@pytest.fixture
def api() -> Api:
    return Api()
