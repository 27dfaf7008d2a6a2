"""Domain errors and their single mapping to HTTP responses.

Every error response has the shape
``{"error": {"code": str, "message": str, "details": object | list | null}}``.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from campaigns_lambda.observability import logger


class ApiError(Exception):
    """Base class for errors that map to a client-visible HTTP response."""

    status: int = HTTPStatus.INTERNAL_SERVER_ERROR
    code: str = "internal_error"
    message: str = "internal error"

    def __init__(
        self,
        message: str | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or type(self).message
        self.details = details
        self.headers = headers or {}
        super().__init__(self.message)


class BadRequest(ApiError):
    status = HTTPStatus.BAD_REQUEST
    code = "bad_request"
    message = "the request could not be understood"


class MalformedJson(BadRequest):
    code = "malformed_json"
    message = "the request body is not valid JSON"


class MalformedBody(BadRequest):
    code = "malformed_body"
    message = "the request body could not be decoded"


class InvalidNextToken(BadRequest):
    code = "invalid_next_token"
    message = "next_token is not a valid pagination token"


class Unauthorized(ApiError):
    status = HTTPStatus.UNAUTHORIZED
    code = "unauthorized"
    message = "authentication is required"


class Forbidden(ApiError):
    status = HTTPStatus.FORBIDDEN
    code = "forbidden"
    message = "you are not allowed to perform this operation"


class NotFound(ApiError):
    status = HTTPStatus.NOT_FOUND
    code = "not_found"
    message = "resource not found"


class CampaignNotFound(NotFound):
    message = "campaign not found"


class MethodNotAllowed(ApiError):
    status = HTTPStatus.METHOD_NOT_ALLOWED
    code = "method_not_allowed"
    message = "method not allowed for this resource"

    def __init__(self, allowed: list[str]) -> None:
        super().__init__(details={"allowed": allowed}, headers={"Allow": ", ".join(allowed)})


class Conflict(ApiError):
    status = HTTPStatus.CONFLICT
    code = "conflict"
    message = "the campaign was modified concurrently; reload it and retry"


class PayloadTooLarge(ApiError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    code = "payload_too_large"
    message = "the request body is too large"


class UnsupportedMediaType(ApiError):
    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    code = "unsupported_media_type"
    message = "request bodies must be sent as application/json"


class ValidationFailed(ApiError):
    status = HTTPStatus.UNPROCESSABLE_ENTITY
    code = "validation_error"
    message = "the request is invalid"


class UnknownEmailTemplate(ValidationFailed):
    code = "unknown_email_template"
    message = "email_template does not exist in the templates bucket"


class InvalidStatusTransition(ValidationFailed):
    code = "invalid_status_transition"
    message = "the campaign cannot move to the requested status"


class ServiceUnavailable(ApiError):
    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "service_unavailable"
    message = "the service is temporarily unavailable"


class ChaosInjected(ApiError):
    status = HTTPStatus.INTERNAL_SERVER_ERROR
    code = "chaos_injected"
    message = "fault injected by chaos configuration"


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(
        status_code=int(status),
        content_type=content_types.APPLICATION_JSON,
        body=error_body(code, message, details),
        headers=dict(headers or {}),
    )


def internal_error_response(request_id: str | None) -> Response:
    return error_response(
        HTTPStatus.INTERNAL_SERVER_ERROR,
        "internal_error",
        "internal error",
        {"request_id": request_id},
    )


def register_error_handlers(app, allowed_methods: Callable[[str], list[str] | None]) -> None:
    """Attach the one and only error-to-HTTP mapping to the resolver.

    ``allowed_methods(path)`` returns the methods served on a known path (or None), so
    an unmatched request on a known path answers 405 instead of 404.
    """

    @app.exception_handler(ApiError)
    def _handle_api_error(exc: ApiError) -> Response:
        if exc.status >= HTTPStatus.INTERNAL_SERVER_ERROR:
            logger.warning("request failed", extra={"error_code": exc.code})
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.not_found
    def _handle_not_found(_exc: NotFoundError) -> Response:
        event = app.current_event
        allowed = allowed_methods(event.path)
        if allowed and event.http_method.upper() not in allowed:
            return _handle_api_error(MethodNotAllowed(allowed))
        return _handle_api_error(NotFound())

    @app.exception_handler(Exception)
    def _handle_unexpected(exc: Exception) -> Response:
        logger.exception("unhandled error", extra={"error_type": type(exc).__name__})
        return internal_error_response(logger.get_correlation_id())
