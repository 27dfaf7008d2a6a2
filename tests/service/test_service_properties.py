"""Property-based tests: whatever arrives, the handler answers with JSON and never a 500."""

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns_lambda import handler as service_handler

BASE = "/v1.0/campaigns"
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=40)
methods = st.one_of(
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "get", "TRACE"]),
    any_text,
)
paths = st.one_of(
    st.sampled_from([BASE, f"{BASE}/", f"{BASE}/health", f"{BASE}/abc", "/", "/v1.0", f"{BASE}/a/b"]),
    any_text.map(lambda s: f"{BASE}/{s}"),
    any_text,
    st.just(f"{BASE}/" + "x" * 3000),
)
header_names = st.one_of(
    st.sampled_from(["Content-Type", "content-type", "If-Match", "if-match", "Authorization", "Accept"]),
    any_text,
)
header_values = st.one_of(
    st.sampled_from(
        ["application/json", "application/json; charset=utf-8", "text/plain", "", "1", '"2"', "*", 'W/"1"']
    ),
    any_text,
)
headers = st.one_of(st.none(), st.dictionaries(header_names, header_values, max_size=5))
query = st.one_of(
    st.none(),
    st.dictionaries(
        st.one_of(st.sampled_from(["limit", "status", "next_token"]), any_text),
        st.one_of(st.sampled_from(["0", "10", "101", "active", "bogus", "e30", "!!"]), any_text),
        max_size=4,
    ),
)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), any_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(any_text, children, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    ["name", "status", "start_date", "end_date", "description", "email_template", "version", "id", "x"]
)
field_values = st.one_of(
    st.sampled_from(
        ["draft", "active", "archived", "2025-01-01", "2024-12-31", "emails/welcome.html", "", " ", 1, None]
    ),
    json_values,
)
campaign_like = st.dictionaries(field_names, field_values, max_size=6).map(json.dumps)
text_bodies = st.one_of(st.none(), campaign_like, json_values.map(json.dumps), any_text, st.just("{" * 2000))
binary_bodies = st.binary(max_size=300)
groups = st.one_of(
    st.none(),
    st.sampled_from(
        ["campaigns-admin", "campaigns-editor", "campaigns-viewer", "[campaigns-admin, x]", "nobody", ""]
    ),
    any_text,
)


@pytest.fixture
def fuzz_service(module_aws):
    service_handler.use_clients(dynamodb=module_aws.dynamodb, s3=module_aws.s3)
    return module_aws


def check_response(raw):
    assert isinstance(raw, dict)
    status = raw["statusCode"]
    assert isinstance(status, int)
    assert status != 500, raw
    assert 200 <= status < 600
    if status == 204:
        return
    content_type = raw["multiValueHeaders"]["Content-Type"]
    assert content_type == ["application/json"]
    body = json.loads(raw["body"])
    if status >= 400:
        assert set(body) == {"error"}
        error = body["error"]
        assert set(error) == {"code", "message", "details"}
        assert isinstance(error["code"], str)
        assert error["code"]
        assert isinstance(error["message"], str)
        assert error["details"] is None or isinstance(error["details"], (dict, list))
    assert "Traceback" not in raw["body"]


def make_event(api, method, path, body, hdrs, qs, group, is_base64):
    event = api.build_event("GET", BASE, authenticated=group is not None, groups=group)
    event.update(
        httpMethod=method,
        path=path,
        body=body,
        isBase64Encoded=is_base64,
        headers=hdrs,
        multiValueHeaders={k: [v] for k, v in hdrs.items()} if hdrs else None,
        queryStringParameters=qs,
        multiValueQueryStringParameters={k: [v] for k, v in qs.items()} if qs else None,
    )
    return event


@FUZZ
@given(method=methods, path=paths, body=text_bodies, hdrs=headers, qs=query, group=groups)
def test_text_requests_never_fail_the_server(fuzz_service, api, method, path, body, hdrs, qs, group):
    event = make_event(api, method, path, body, hdrs, qs, group, is_base64=False)
    check_response(service_handler.lambda_handler(event, _Context()))


@FUZZ
@given(
    method=st.sampled_from(["POST", "PUT"]),
    path=st.sampled_from([BASE, f"{BASE}/abc"]),
    body=st.one_of(
        binary_bodies.map(lambda b: base64.b64encode(b).decode()),
        campaign_like.map(lambda s: base64.b64encode(s.encode("utf-8", "surrogatepass")).decode()),
        any_text,
        campaign_like,
    ),
    content_type=st.sampled_from(["application/json", "text/plain", "application/JSON; charset=UTF-8"]),
    group=groups,
)
def test_base64_bodies_never_fail_the_server(fuzz_service, api, method, path, body, content_type, group):
    event = make_event(api, method, path, body, {"Content-Type": content_type}, None, group, is_base64=True)
    check_response(service_handler.lambda_handler(event, _Context()))


@FUZZ
@given(body=campaign_like, group=st.sampled_from(["campaigns-admin", "campaigns-editor"]))
def test_campaign_like_bodies_are_created_or_rejected_cleanly(fuzz_service, api, body, group):
    event = make_event(api, "POST", BASE, body, {"Content-Type": "application/json"}, None, group, False)
    raw = service_handler.lambda_handler(event, _Context())
    check_response(raw)
    assert raw["statusCode"] in (201, 422)
    if raw["statusCode"] == 201:
        created = json.loads(raw["body"])
        fetch = make_event(api, "GET", f"{BASE}/{created['id']}", None, None, None, group, False)
        fetched = service_handler.lambda_handler(fetch, _Context())
        assert fetched["statusCode"] == 200
        assert json.loads(fetched["body"]) == created


EVENT_FIELDS = [
    "httpMethod",
    "path",
    "headers",
    "multiValueHeaders",
    "queryStringParameters",
    "multiValueQueryStringParameters",
    "pathParameters",
    "requestContext",
    "body",
    "isBase64Encoded",
    "resource",
]


@FUZZ
@given(
    replacements=st.dictionaries(st.sampled_from(EVENT_FIELDS), json_values, max_size=4),
    removals=st.sets(st.sampled_from(EVENT_FIELDS), max_size=4),
)
def test_malformed_event_shapes_always_get_a_json_answer(fuzz_service, api, replacements, removals):
    event = api.build_event("POST", BASE, json_body={"name": "shape"})
    event.update(replacements)
    for field in removals:
        event.pop(field, None)
    check_response(service_handler.lambda_handler(event, _Context()))


@FUZZ
@given(
    claims=st.one_of(
        json_values, st.dictionaries(st.sampled_from(["sub", "cognito:groups", "x"]), json_values)
    ),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
)
def test_arbitrary_claims_never_fail_the_server(fuzz_service, api, claims, method):
    event = api.build_event(method, BASE, json_body={"name": "claims"})
    event["requestContext"]["authorizer"]["claims"] = claims
    raw = service_handler.lambda_handler(event, _Context())
    check_response(raw)
    assert raw["statusCode"] in (200, 201, 401, 403, 405)


class _Context:
    function_name = "campaigns-api-fuzz"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:campaigns-api-fuzz"
    aws_request_id = "fuzz-request"
