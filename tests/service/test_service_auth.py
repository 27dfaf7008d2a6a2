"""Authentication via Cognito authorizer claims and group-based authorization."""

import uuid

import pytest

from campaigns_lambda.auth import parse_groups

BASE = "/v1.0/campaigns"
GROUPS = ["campaigns-viewer", "campaigns-editor", "campaigns-admin", "marketing", ""]
OPERATIONS = ["list", "get", "create", "update", "delete"]
ALLOWED = {
    "campaigns-viewer": {"list", "get"},
    "campaigns-editor": {"list", "get", "create", "update"},
    "campaigns-admin": {"list", "get", "create", "update", "delete"},
    "marketing": set(),
    "": set(),
}
SUCCESS = {"list": 200, "get": 200, "create": 201, "update": 200, "delete": 204}


def perform(api, operation, campaign_id, groups):
    if operation == "list":
        return api.get(BASE, groups=groups)
    if operation == "get":
        return api.get(f"{BASE}/{campaign_id}", groups=groups)
    if operation == "create":
        return api.post(BASE, json_body={"name": "by " + groups}, groups=groups)
    if operation == "update":
        return api.put(f"{BASE}/{campaign_id}", json_body={"name": "renamed"}, groups=groups)
    return api.delete(f"{BASE}/{campaign_id}", groups=groups)


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("operation", OPERATIONS)
def test_authorization_matrix(aws, api, group, operation):
    campaign = api.create()

    response = perform(api, operation, campaign["id"], group)

    if operation in ALLOWED[group]:
        assert response.status == SUCCESS[operation], response.text
    else:
        assert response.status == 403
        assert response.error_code == "forbidden"
        # a refused write changes nothing
        assert api.get(f"{BASE}/{campaign['id']}").json == campaign
        assert len(aws.scan_all()) == 1


@pytest.mark.parametrize("operation", OPERATIONS)
def test_missing_claims_is_401(aws, api, operation):
    campaign = api.create()
    response = perform_unauthenticated(api, operation, campaign["id"])
    assert response.status == 401
    assert response.error_code == "unauthorized"


def perform_unauthenticated(api, operation, campaign_id):
    method, path, kwargs = {
        "list": ("GET", BASE, {}),
        "get": ("GET", f"{BASE}/{campaign_id}", {}),
        "create": ("POST", BASE, {"json_body": {"name": "x"}}),
        "update": ("PUT", f"{BASE}/{campaign_id}", {"json_body": {"name": "x"}}),
        "delete": ("DELETE", f"{BASE}/{campaign_id}", {}),
    }[operation]
    return api.request(method, path, authenticated=False, **kwargs)


@pytest.mark.parametrize(
    "authorizer",
    [None, {}, {"claims": None}, {"claims": {}}, {"claims": "sub=x"}, {"claims": {"email": "a@b.c"}}],
)
def test_unusable_claims_are_401(aws, api, authorizer):
    event = api.build_event("GET", BASE)
    event["requestContext"]["authorizer"] = authorizer
    response = api.invoke(event)
    assert response.status == 401
    assert response.error_code == "unauthorized"


def test_unauthenticated_is_checked_before_body(aws, api):
    response = api.post(BASE, body="{", headers={"Content-Type": "text/plain"}, authenticated=False)
    assert response.status == 401


def test_forbidden_is_checked_before_existence(aws, api):
    response = api.delete(f"{BASE}/{uuid.uuid4()}", groups="campaigns-editor")
    assert response.status == 403


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("campaigns-admin", {"campaigns-admin"}),
        ("[campaigns-admin, other]", {"campaigns-admin", "other"}),
        ("[campaigns-viewer]", {"campaigns-viewer"}),
        ("a,b c", {"a", "b", "c"}),
        ('["x", "y"]', {"x", "y"}),
        (["x", "y", 3], {"x", "y"}),
        ("", set()),
        (None, set()),
        (42, set()),
        ("[]", set()),
    ],
)
def test_parse_groups(raw, expected):
    assert parse_groups(raw) == frozenset(expected)


@pytest.mark.parametrize(
    "groups",
    ["[campaigns-admin, other]", "other campaigns-admin", '["campaigns-admin"]', "other,campaigns-admin"],
)
def test_group_formats_grant_access(aws, api, groups):
    campaign = api.create()
    assert api.delete(f"{BASE}/{campaign['id']}", groups=groups).status == 204


def test_group_name_must_match_exactly(aws, api):
    assert api.get(BASE, groups="campaigns-admins").status == 403
    assert api.get(BASE, groups="Campaigns-Viewer").status == 403
