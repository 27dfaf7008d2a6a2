"""Request validation (pydantic v2) and the public representation of a campaign."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from campaigns_lambda.errors import ValidationFailed

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
TEMPLATE_KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9!_.*'()/-]{0,1023}")
_ISO_DATE_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
MAX_VERSION = 2**53


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    ARCHIVED = "archived"


ALLOWED_TRANSITIONS: dict[CampaignStatus, frozenset[CampaignStatus]] = {
    CampaignStatus.DRAFT: frozenset({CampaignStatus.ACTIVE, CampaignStatus.ARCHIVED}),
    CampaignStatus.ACTIVE: frozenset({CampaignStatus.PAUSED, CampaignStatus.COMPLETED}),
    CampaignStatus.PAUSED: frozenset(
        {CampaignStatus.ACTIVE, CampaignStatus.COMPLETED, CampaignStatus.ARCHIVED}
    ),
    CampaignStatus.COMPLETED: frozenset({CampaignStatus.ARCHIVED}),
    CampaignStatus.ARCHIVED: frozenset(),
}


def is_allowed_transition(current: str, new: str) -> bool:
    """Staying in the same status is an allowed no-op."""
    if current == new:
        return True
    try:
        return CampaignStatus(new) in ALLOWED_TRANSITIONS[CampaignStatus(current)]
    except (ValueError, KeyError):
        return False


def is_valid_id(value: str) -> bool:
    return ID_PATTERN.fullmatch(value) is not None


def _encodable(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def _iso_date_string(value: Any) -> Any:
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or _ISO_DATE_PATTERN.fullmatch(value) is None:
        raise ValueError("must be a date formatted as YYYY-MM-DD")
    return value


def _template_key(value: str) -> str:
    if TEMPLATE_KEY_PATTERN.fullmatch(value) is None or ".." in value.split("/"):
        raise ValueError("must be an S3 object key made of safe characters")
    return value


Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(_encodable)
]
Description = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=2000), AfterValidator(_encodable)
]
IsoDate = Annotated[date, BeforeValidator(_iso_date_string)]
TemplateKey = Annotated[str, StringConstraints(max_length=1024), AfterValidator(_template_key)]
Version = Annotated[StrictInt, Field(ge=1, le=MAX_VERSION)]


def _check_date_order(start: date | None, end: date | None) -> None:
    if start is not None and end is not None and end < start:
        raise ValueError("end_date must not be before start_date")


class CampaignCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    status: CampaignStatus = CampaignStatus.DRAFT
    start_date: IsoDate | None = None
    end_date: IsoDate | None = None
    description: Description | None = None
    email_template: TemplateKey | None = None

    @model_validator(mode="after")
    def _dates_in_order(self) -> CampaignCreate:
        _check_date_order(self.start_date, self.end_date)
        return self


class CampaignUpdate(BaseModel):
    """Partial update. ``description``, ``email_template`` and the dates may be cleared with null."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    status: CampaignStatus | None = None
    start_date: IsoDate | None = None
    end_date: IsoDate | None = None
    description: Description | None = None
    email_template: TemplateKey | None = None
    version: Version | None = None

    @field_validator("name", "status")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may not be null")
        return value

    @model_validator(mode="after")
    def _has_changes(self) -> CampaignUpdate:
        if not self.changed_fields():
            raise ValueError("at least one campaign field must be provided")
        return self

    def changed_fields(self) -> dict[str, Any]:
        """The campaign attributes the client sent, in storable form (None means remove)."""
        changes: dict[str, Any] = {}
        for field in sorted(self.model_fields_set - {"version"}):
            value = getattr(self, field)
            if isinstance(value, date):
                value = value.isoformat()
            elif isinstance(value, CampaignStatus):
                value = value.value
            changes[field] = value
        return changes


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    limit: Annotated[int, Field(ge=1, le=100)] = 20
    status: CampaignStatus | None = None
    next_token: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None


def _safe_loc(loc: tuple[Any, ...]) -> list[Any]:
    parts: list[Any] = []
    for part in loc:
        if isinstance(part, str):
            part = part[:100].encode("utf-8", "replace").decode("utf-8")
        parts.append(part)
    return parts


_OBJECT_ERRORS = frozenset({"model_type", "model_attributes_type", "dict_type"})


def validation_failed(exc: ValidationError, location: str | None = None) -> ValidationFailed:
    """Convert a pydantic error into the API's 422, without echoing submitted values."""
    details = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = _safe_loc(err["loc"])
        if location:
            loc = [location, *loc]
        message = "must be a JSON object" if err["type"] in _OBJECT_ERRORS else err["msg"]
        details.append({"loc": loc, "type": err["type"], "msg": message})
    return ValidationFailed(details=details)


def parse_model(model: type[BaseModel], data: Any, location: str | None = None) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_failed(exc, location) from None


PUBLIC_FIELDS = (
    "id",
    "name",
    "status",
    "start_date",
    "end_date",
    "description",
    "email_template",
    "version",
    "created_at",
    "updated_at",
    "created_by",
    "updated_by",
)


def plain(value: Any) -> Any:
    """Convert DynamoDB values (Decimal, sets) to JSON-friendly types."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(plain(v) for v in value)
    return value


def to_public(item: dict[str, Any]) -> dict[str, Any]:
    return {field: plain(item.get(field)) for field in PUBLIC_FIELDS}
