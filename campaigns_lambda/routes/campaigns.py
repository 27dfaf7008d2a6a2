"""Campaign CRUD under ``/v1.0/campaigns``."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from campaigns_lambda import deps
from campaigns_lambda.auth import Permission, Principal, require
from campaigns_lambda.errors import (
    CampaignNotFound,
    Conflict,
    InvalidStatusTransition,
    UnknownEmailTemplate,
    ValidationFailed,
)
from campaigns_lambda.http_utils import get_header, read_json_body
from campaigns_lambda.models import (
    MAX_VERSION,
    CampaignCreate,
    CampaignUpdate,
    ListQuery,
    is_allowed_transition,
    is_valid_id,
    parse_model,
    to_public,
)
from campaigns_lambda.routes import PREFIX

router = APIGatewayRouter()

_IF_MATCH_PATTERN = re.compile(r'(?:W/)?(?:"([0-9]{1,16})"|([0-9]{1,16}))')


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _principal() -> Principal:
    return router.context["principal"]


def _raw_event() -> dict[str, Any]:
    return router.current_event.raw_event


def _json(body: Any, status: int = HTTPStatus.OK, headers: dict[str, str] | None = None) -> Response:
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=headers or {}
    )


def _load(campaign_id: str) -> dict[str, Any]:
    if not is_valid_id(campaign_id):
        raise CampaignNotFound()
    campaign = deps.repository().get(campaign_id)
    if campaign is None:
        raise CampaignNotFound()
    return campaign


def _if_match() -> int | None:
    """Expected version from an ``If-Match`` header (``3``, ``"3"`` or ``W/"3"``); ``*`` means any."""
    raw = get_header(_raw_event(), "if-match")
    if raw is None or raw.strip() in ("", "*"):
        return None
    match = _IF_MATCH_PATTERN.fullmatch(raw.strip())
    version = int(match.group(1) or match.group(2)) if match else 0
    if not 1 <= version <= MAX_VERSION:
        raise ValidationFailed(
            details=[{"loc": ["header", "If-Match"], "type": "version", "msg": "must be a campaign version"}]
        )
    return version


def _ensure_template_exists(key: str) -> None:
    if not deps.templates().exists(key):
        raise UnknownEmailTemplate(details={"email_template": key})


@router.get("/", middlewares=[require(Permission.READ)])
def list_campaigns() -> Response:
    query: ListQuery = parse_model(ListQuery, router.current_event.query_string_parameters or {}, "query")
    items, next_token = deps.repository().list(
        limit=query.limit,
        next_token=query.next_token,
        status=query.status.value if query.status else None,
    )
    public = [to_public(item) for item in items]
    return _json({"items": public, "next_token": next_token, "count": len(public)})


@router.post("/", middlewares=[require(Permission.CREATE)])
def create_campaign() -> Response:
    payload: CampaignCreate = parse_model(CampaignCreate, read_json_body(_raw_event()))
    if payload.email_template:
        _ensure_template_exists(payload.email_template)
    now = _utc_now()
    subject = _principal().subject
    campaign = {
        **payload.model_dump(mode="json", exclude_none=True),
        "id": str(uuid.uuid4()),
        "version": 1,
        "created_at": now,
        "updated_at": now,
        "created_by": subject,
        "updated_by": subject,
    }
    deps.repository().create(campaign)
    return _json(to_public(campaign), HTTPStatus.CREATED, {"Location": f"{PREFIX}/{campaign['id']}"})


@router.get("/<campaign_id>", middlewares=[require(Permission.READ)])
def get_campaign(campaign_id: str) -> Response:
    return _json(to_public(_load(campaign_id)))


@router.put("/<campaign_id>", middlewares=[require(Permission.UPDATE)])
def update_campaign(campaign_id: str) -> Response:
    if not is_valid_id(campaign_id):
        raise CampaignNotFound()
    payload: CampaignUpdate = parse_model(CampaignUpdate, read_json_body(_raw_event()))
    header_version = _if_match()
    if header_version is not None and payload.version is not None and header_version != payload.version:
        raise ValidationFailed(
            details=[{"loc": ["version"], "type": "version_mismatch", "msg": "If-Match and version disagree"}]
        )
    expected = header_version if header_version is not None else payload.version

    current = _load(campaign_id)
    current_version = int(current["version"])
    if expected is not None and expected != current_version:
        raise Conflict(details={"expected_version": expected, "current_version": current_version})

    changes = payload.changed_fields()
    new_status = changes.get("status")
    if new_status is not None and not is_allowed_transition(current["status"], new_status):
        raise InvalidStatusTransition(details={"from": current["status"], "to": new_status})

    merged = {**current, **changes}
    start, end = merged.get("start_date"), merged.get("end_date")
    if start is not None and end is not None and end < start:
        raise ValidationFailed(
            details=[
                {"loc": ["end_date"], "type": "date_order", "msg": "end_date must not be before start_date"}
            ]
        )

    changes = {field: value for field, value in changes.items() if current.get(field) != value}
    if not changes:
        return _json(to_public(current))  # nothing differs: a no-op, the version stays as is

    template = changes.get("email_template")
    if template:
        _ensure_template_exists(template)

    updated = deps.repository().update(
        campaign_id,
        changes,
        expected_version=current_version,
        audit={"updated_at": _utc_now(), "updated_by": _principal().subject},
    )
    return _json(to_public(updated))


@router.delete("/<campaign_id>", middlewares=[require(Permission.DELETE)])
def delete_campaign(campaign_id: str) -> Response:
    if not is_valid_id(campaign_id):
        raise CampaignNotFound()
    deps.repository().delete(campaign_id, expected_version=_if_match())
    return Response(status_code=HTTPStatus.NO_CONTENT, content_type=None, body="")
