"""Lambda entry point: ``campaigns_lambda.handler.lambda_handler``."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver

from campaigns_lambda import deps
from campaigns_lambda.chaos import chaos_middleware
from campaigns_lambda.errors import ApiError, BadRequest, error_body, register_error_handlers
from campaigns_lambda.observability import logger, record_request_metrics
from campaigns_lambda.routes import PREFIX, allowed_methods, campaigns, health

app = APIGatewayRestResolver(debug=False)
app.use(middlewares=[chaos_middleware])
app.include_router(health.router, prefix=PREFIX)
app.include_router(campaigns.router, prefix=PREFIX)
register_error_handlers(app, allowed_methods)

_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_METHOD_PATTERN = re.compile(r"[A-Za-z]{1,16}")
_MAX_PATH_LENGTH = 8192


def reset_state() -> None:
    """Drop cached settings and AWS clients so the next request re-reads the environment."""
    deps.reset()


def use_clients(dynamodb: Any = None, s3: Any = None) -> None:
    """Serve requests with the given boto3 clients (DynamoDB, S3) instead of building them."""
    deps.use_clients(dynamodb=dynamodb, s3=s3)


def _string_map(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise BadRequest("malformed request parameters")
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _multi_string_map(value: Any) -> dict[str, list[str]] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise BadRequest("malformed request parameters")
    result: dict[str, list[str]] = {}
    for key, values in value.items():
        if isinstance(key, str) and isinstance(values, list):
            strings = [v for v in values if isinstance(v, str)]
            if strings:
                result[key] = strings
    return result


def normalize_event(event: Any) -> dict[str, Any]:
    """Return a copy of a REST proxy event with every field the resolver reads in a safe shape.

    Raises BadRequest for events that cannot describe an HTTP request.
    """
    if not isinstance(event, Mapping):
        raise BadRequest("unsupported event")
    method = event.get("httpMethod")
    path = event.get("path")
    if not isinstance(method, str) or _METHOD_PATTERN.fullmatch(method) is None:
        raise BadRequest("unsupported HTTP method")
    if not isinstance(path, str) or not path.startswith("/") or len(path) > _MAX_PATH_LENGTH:
        raise BadRequest("unsupported request path")
    body = event.get("body")
    if body is not None and not isinstance(body, str):
        raise BadRequest("unsupported request body")

    context = event.get("requestContext")
    context = dict(context) if isinstance(context, Mapping) else {}
    stage = context.get("stage")
    context["stage"] = stage if isinstance(stage, str) else ""
    context_path = context.get("path")
    context["path"] = context_path if isinstance(context_path, str) else path

    normalized = dict(event)
    normalized.update(
        httpMethod=method.upper(),
        path=path,
        body=body,
        isBase64Encoded=event.get("isBase64Encoded") is True,
        headers=_string_map(event.get("headers")),
        multiValueHeaders=_multi_string_map(event.get("multiValueHeaders")),
        queryStringParameters=_string_map(event.get("queryStringParameters")),
        multiValueQueryStringParameters=_multi_string_map(event.get("multiValueQueryStringParameters")),
        pathParameters=_string_map(event.get("pathParameters")),
        requestContext=context,
    )
    return normalized


def _request_id(event: Any) -> str | None:
    if isinstance(event, Mapping):
        context = event.get("requestContext")
        if isinstance(context, Mapping):
            request_id = context.get("requestId")
            if isinstance(request_id, str) and _SAFE_REQUEST_ID.fullmatch(request_id):
                return request_id
    return None


def _plain_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    multi = {"Content-Type": ["application/json"]}
    multi.update({k: [v] for k, v in (headers or {}).items()})
    return {
        "statusCode": status,
        "body": json.dumps(body, separators=(",", ":")),
        "isBase64Encoded": False,
        "multiValueHeaders": multi,
    }


@logger.inject_lambda_context(log_event=False, clear_state=True)
def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    started = time.perf_counter()
    request_id = _request_id(event) or getattr(context, "aws_request_id", None)
    logger.set_correlation_id(request_id)
    method = path = None
    try:
        normalized = normalize_event(event)
        method, path = normalized["httpMethod"], normalized["path"]
        response = app.resolve(normalized, context)
    except ApiError as exc:
        response = _plain_response(exc.status, error_body(exc.code, exc.message, exc.details), exc.headers)
    except Exception:
        logger.exception("unhandled error outside routing")
        response = _plain_response(
            500, error_body("internal_error", "internal error", {"request_id": request_id})
        )
    if request_id:
        response.setdefault("multiValueHeaders", {})["X-Request-Id"] = [request_id]
    status = response.get("statusCode")
    try:
        record_request_metrics(status if isinstance(status, int) else 500, context)
    except Exception:  # metrics must never turn an answer into a failure
        logger.exception("could not record request metrics")
    logger.info(
        "request completed",
        extra={
            "http_method": method,
            "path": path[:256] if path else None,
            "status_code": response.get("statusCode"),
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        },
    )
    return response
