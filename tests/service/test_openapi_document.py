"""The OpenAPI document in the checkout describes the service as it is: every route of the resolver (method, path,
permission), every request body field of the model its handler validates with, every query parameter of the list
query model. Adding a route or a field without documenting it fails here."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from campaigns_lambda import models
from campaigns_lambda.handler import app
from promoter.engine.security.openapi import load_document, mismatches, operations
from promoter.engine.security.routes import table_from_dict

DOCUMENT = Path(__file__).resolve().parents[2] / "campaigns_lambda" / "openapi.yaml"


def service_table():
    """The resolver's routes with the permission each one's middleware carries."""
    routes = []
    for route in app._static_routes + app._dynamic_routes:
        declared = [m.permission.value for m in route.middlewares if getattr(m, "permission", None) is not None]
        routes.append({"method": route.method, "path": route.path, "permission": declared[0] if declared else None,
                       "handler": route.func})
    return table_from_dict({"routes": routes}), {r["path"]: r for r in routes}, routes


def validated_models(pattern: str) -> dict[str, type]:
    """``"METHOD /path"`` -> the model a route's handler validates with (read from the handler's source)."""
    found = {}
    for route in app._static_routes + app._dynamic_routes:
        match = re.search(pattern, inspect.getsource(route.func))
        if match:
            path = re.sub(r"<([^>]+)>", r"{\1}", route.path)
            found[f"{route.method} {path}"] = getattr(models, match.group(1))
    return found


def body_models() -> dict[str, set[str]]:
    return {key: set(model.model_fields) for key, model in
            validated_models(r"parse_model\((\w+), read_json_body").items()}


def test_the_document_and_the_service_agree():
    table, _, _ = service_table()
    bodies = body_models()
    assert set(bodies) == {"POST /v1.0/campaigns", "PUT /v1.0/campaigns/{campaign_id}"}
    assert mismatches(load_document(DOCUMENT), table, bodies) == []


def test_query_parameters_are_the_list_query_models_fields():
    doc = load_document(DOCUMENT)
    queries = validated_models(r"parse_model\((\w+), router\.current_event\.query_string_parameters")
    assert queries, "the list route validates its query with a model"
    for key, model in queries.items():
        documented = {p["name"] for p in operations(doc)[key].get("parameters", []) if p["in"] == "query"}
        assert documented == set(model.model_fields), key


def test_a_new_route_or_field_without_documentation_is_named():
    table, _, routes = service_table()
    grown = table_from_dict({"routes": [*routes, {"method": "PATCH", "path": "/v1.0/campaigns/<campaign_id>",
                                                  "permission": "update"}]})
    doc = load_document(DOCUMENT)
    assert mismatches(doc, grown, {}) == ["route PATCH /v1.0/campaigns/{campaign_id} is not in the OpenAPI document"]
    bodies = body_models()
    bodies["POST /v1.0/campaigns"] = bodies["POST /v1.0/campaigns"] | {"budget"}
    [problem] = mismatches(doc, table, bodies)
    assert "POST /v1.0/campaigns" in problem and "not documented: ['budget']" in problem


@pytest.mark.parametrize("change", ["permission", "public"])
def test_a_permission_the_document_misstates_is_named(change):
    table, _, _ = service_table()
    doc = load_document(DOCUMENT)
    operation = doc["paths"]["/v1.0/campaigns/{campaign_id}"]["delete"]
    if change == "permission":
        operation["x-permission"] = "update"
    else:
        operation["security"] = []
    problems = mismatches(doc, table, {})
    assert problems and all(p.startswith("DELETE /v1.0/campaigns/{campaign_id}") for p in problems)
