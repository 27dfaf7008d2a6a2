"""Authentication (Cognito authorizer claims) and group-based authorization."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from campaigns_lambda.errors import Forbidden, Unauthorized


class Permission(StrEnum):
    READ = "read"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


GROUP_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "campaigns-viewer": frozenset({Permission.READ}),
    "campaigns-editor": frozenset({Permission.READ, Permission.CREATE, Permission.UPDATE}),
    "campaigns-admin": frozenset(Permission),
}

_GROUP_SEPARATORS = re.compile(r"[,\s]+")


@dataclass(frozen=True)
class Principal:
    subject: str
    groups: frozenset[str]

    @property
    def permissions(self) -> frozenset[Permission]:
        granted: set[Permission] = set()
        for group in self.groups:
            granted |= GROUP_PERMISSIONS.get(group, frozenset())
        return frozenset(granted)

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions


def parse_groups(raw: Any) -> frozenset[str]:
    """Parse the ``cognito:groups`` claim.

    API Gateway flattens the claim to a string such as ``"campaigns-admin"`` or
    ``"[campaigns-admin, other]"``; comma/space separated lists and JSON arrays are
    accepted as well.
    """
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("["):
            try:
                decoded = json.loads(text)
            except ValueError:
                decoded = None
            if isinstance(decoded, list):
                raw = decoded
            else:
                text = text.strip("[]")
        if isinstance(raw, str):
            raw = _GROUP_SEPARATORS.split(text)
    if not isinstance(raw, (list, tuple)):
        return frozenset()
    groups = set()
    for item in raw:
        if isinstance(item, str):
            name = item.strip().strip("\"'")
            if name:
                groups.add(name)
    return frozenset(groups)


def principal_from_event(event: Mapping[str, Any]) -> Principal | None:
    """The caller described by the authorizer claims, or None when unauthenticated."""
    context = event.get("requestContext")
    authorizer = context.get("authorizer") if isinstance(context, Mapping) else None
    claims = authorizer.get("claims") if isinstance(authorizer, Mapping) else None
    if not isinstance(claims, Mapping) or not claims:
        return None
    subject = claims.get("sub") or claims.get("cognito:username")
    if not isinstance(subject, str) or not subject.strip():
        return None
    return Principal(subject=subject.strip(), groups=parse_groups(claims.get("cognito:groups")))


def authorize(event: Mapping[str, Any], permission: Permission) -> Principal:
    principal = principal_from_event(event)
    if principal is None:
        raise Unauthorized()
    if not principal.can(permission):
        raise Forbidden(details={"required_permission": permission.value})
    return principal


def require(permission: Permission):
    """Route middleware: authenticate the caller and check ``permission``.

    The middleware carries its permission (``.permission``), so the route table declares who may call each route
    and the authorization matrix of ``promoter security`` reads its expectations from it.
    """

    def _middleware(app, next_middleware):
        app.append_context(principal=authorize(app.current_event.raw_event, permission))
        return next_middleware(app)

    _middleware.permission = permission
    return _middleware
