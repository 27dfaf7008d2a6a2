"""The service's OpenAPI document (kept in the checkout beside the code) and its agreement with the route table
and the request models: every route is an operation (same method, same path), every operation a route, the
declared permission is the operation's ``x-permission``, and each request body schema has exactly the fields of
its model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from promoter.engine.security.routes import RouteTable
from promoter.errors import ConfigurationError

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def load_document(path: Path) -> dict[str, Any]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read the OpenAPI document {path}: {exc}",
                                 hint="run from the service's checkout, or set the plan's security.openapi") from None
    if not isinstance(doc, dict) or "paths" not in doc:
        raise ConfigurationError(f"{path} is not an OpenAPI document (no paths)")
    return doc


def operations(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``"METHOD /path"`` -> the operation object."""
    found = {}
    for path, item in (doc.get("paths") or {}).items():
        for method in HTTP_METHODS:
            if isinstance(item, dict) and method in item:
                found[f"{method.upper()} {path}"] = item[method]
    return found


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if not ref:
        return schema
    node: Any = doc
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node


def body_fields(doc: dict[str, Any], operation: dict[str, Any]) -> set[str] | None:
    content = ((operation.get("requestBody") or {}).get("content") or {}).get("application/json")
    if not content:
        return None
    return set(_resolve(doc, content.get("schema") or {}).get("properties") or {})


def mismatches(doc: dict[str, Any], table: RouteTable, body_models: dict[str, set[str]]) -> list[str]:
    """What the document and the service disagree on; ``body_models`` maps ``"METHOD /path"`` -> the fields of the
    model that route validates its body with."""
    problems = []
    ops = operations(doc)
    routes = {r.key: r for r in table.routes}
    for key in sorted(set(routes) - set(ops)):
        problems.append(f"route {key} is not in the OpenAPI document")
    for key in sorted(set(ops) - set(routes)):
        problems.append(f"operation {key} of the OpenAPI document is not a route of the service")
    for key in sorted(set(ops) & set(routes)):
        declared = ops[key].get("x-permission")
        if declared != routes[key].permission:
            problems.append(f"{key}: the document says permission {declared!r}, the route requires "
                            f"{routes[key].permission!r}")
        is_public = ops[key].get("security") == []
        if is_public != (routes[key].permission is None):
            problems.append(f"{key}: the document's security ({ops[key].get('security', 'default')}) does not match "
                            f"the route's permission {routes[key].permission!r}")
    for key, fields in sorted(body_models.items()):
        documented = body_fields(doc, ops[key]) if key in ops else None
        if documented is None:
            problems.append(f"{key}: the document has no JSON request body (the model has {sorted(fields)})")
        elif documented != fields:
            missing, extra = sorted(fields - documented), sorted(documented - fields)
            problems.append(f"{key}: request body fields differ from the model (not documented: {missing}; "
                            f"documented but not in the model: {extra})")
    return problems
