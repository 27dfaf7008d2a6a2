"""``GET /v1.0/campaigns/health``: release tag and a cheap probe of the table (no auth)."""

from __future__ import annotations

from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from campaigns_lambda import deps
from campaigns_lambda.errors import MethodNotAllowed

router = APIGatewayRouter()


@router.get("/health")
def health() -> Response:
    settings = deps.settings()
    table: dict[str, object] = {"name": settings.table_name, "reachable": False, "latency_ms": None}
    if settings.table_name:
        probe = deps.repository().probe()
        table.update(reachable=probe.reachable, latency_ms=probe.latency_ms)
        if probe.error:
            table["error"] = probe.error
    else:
        table["error"] = "not_configured"
    healthy = bool(table["reachable"])
    return Response(
        status_code=HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE,
        content_type=content_types.APPLICATION_JSON,
        body={"status": "ok" if healthy else "degraded", "release": settings.release, "table": table},
        headers={"Cache-Control": "no-store"},
    )


# PUT/DELETE would otherwise be taken by the campaign-id routes.
@router.route("/health", method=["PUT", "DELETE"])
def health_wrong_method() -> Response:
    raise MethodNotAllowed(["GET"])
