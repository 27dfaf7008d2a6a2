"""Error statuses and the error body shape for malformed or unusual requests."""

import base64
import json
import uuid

import pytest

from campaigns_lambda import deps

BASE = "/v1.0/campaigns"
JSON = {"Content-Type": "application/json"}


def assert_error(response, status, code):
    assert response.status == status, response.text
    assert response.header("Content-Type") == "application/json"
    body = response.json
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    "body", ["{", '{"name": "x",}', "nope", "{'name': 'x'}", '{"name": NaN}', "\ufeff{}"]
)
def test_malformed_json_is_400(aws, api, body):
    response = api.post(BASE, body=body, headers={"Content-Type": "application/json"})
    assert_error(response, 400, "malformed_json")


def test_missing_body_is_400(aws, api):
    assert_error(api.post(BASE), 400, "malformed_json")


def test_deeply_nested_json_is_400_not_500(aws, api):
    body = "[" * 50_000 + "]" * 50_000
    response = api.post(BASE, body=body[:65_000], headers={"Content-Type": "application/json"})
    assert response.status == 400


@pytest.mark.parametrize("body", ["[1, 2]", "3", '"text"', "null", "true"])
def test_non_object_json_body_is_422(aws, api, body):
    response = api.post(BASE, body=body, headers={"Content-Type": "application/json"})
    assert_error(response, 422, "validation_error")


def test_body_over_64_kib_is_413(aws, api):
    body = json.dumps({"name": "x", "description": "d" * (64 * 1024)})
    assert_error(api.post(BASE, body=body, headers=JSON), 413, "payload_too_large")
    assert aws.scan_all() == []


def test_multibyte_body_counted_in_bytes(aws, api):
    body = json.dumps({"name": "x", "description": "é" * 33_000}, ensure_ascii=False)
    assert len(body) < 64 * 1024 < len(body.encode("utf-8"))
    assert_error(api.post(BASE, body=body, headers=JSON), 413, "payload_too_large")


def test_base64_body_size_counted_after_decoding(aws, api):
    # 60 KiB of JSON is under the limit even though its base64 form is over 64 KiB.
    padding = " " * (60 * 1024)
    body = '{"name": "b64"}' + padding
    response = api.post(BASE, body=body, is_base64=True, headers={"Content-Type": "application/json"})
    assert response.status == 201
    assert response.json["name"] == "b64"

    too_big = '{"name": "b64"}' + " " * (65 * 1024)
    response = api.post(BASE, body=too_big, is_base64=True, headers={"Content-Type": "application/json"})
    assert_error(response, 413, "payload_too_large")


def test_invalid_base64_is_400(aws, api):
    event = api.build_event("POST", BASE, headers={"Content-Type": "application/json"})
    event.update(body="not*base64!", isBase64Encoded=True)
    assert_error(api.invoke(event), 400, "malformed_body")


def test_non_utf8_body_is_400(aws, api):
    event = api.build_event("POST", BASE, headers={"Content-Type": "application/json"})
    event.update(body=base64.b64encode(b'{"name": "\xff\xfe"}').decode(), isBase64Encoded=True)
    assert_error(api.invoke(event), 400, "malformed_body")


def test_lone_surrogates_are_rejected(aws, api):
    escaped = api.post(BASE, body='{"name": "\\ud800"}', headers={"Content-Type": "application/json"})
    assert_error(escaped, 422, "validation_error")
    raw = api.post(BASE, body='{"name": "\ud800"}', headers={"Content-Type": "application/json"})
    assert_error(raw, 400, "malformed_body")
    assert aws.scan_all() == []


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/xml", "application/json; charset=latin-1"]
)
def test_body_without_json_content_type_is_415(aws, api, content_type):
    event = api.build_event("POST", BASE, body='{"name": "x"}')
    for field in ("headers", "multiValueHeaders"):
        event[field].pop("Content-Type", None)
    if content_type:
        event["headers"]["Content-Type"] = content_type
    assert_error(api.invoke(event), 415, "unsupported_media_type")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("content-type", "application/json"),
        ("CONTENT-TYPE", "Application/JSON"),
        ("Content-Type", "application/json; charset=utf-8"),
        ("Content-Type", 'application/json;charset="UTF-8"'),
    ],
)
def test_json_content_type_variants_are_accepted(aws, api, name, value):
    response = api.post(BASE, body='{"name": "x"}', headers={name: value})
    assert response.status == 201


def test_content_type_from_multi_value_headers_only(aws, api):
    event = api.build_event("POST", BASE, body='{"name": "x"}')
    event["headers"] = None
    event["multiValueHeaders"]["content-type"] = ["application/json"]
    assert api.invoke(event).status == 201


def test_unknown_routes_are_404(aws, api):
    for path in ("/v1.0/other", "/", "/v1.0/campaigns/a/b", "/v2.0/campaigns"):
        assert_error(api.get(path), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PATCH", BASE, "GET, POST"),
        ("DELETE", BASE, "GET, POST"),
        ("PUT", BASE, "GET, POST"),
        ("POST", f"{BASE}/abc", "GET, PUT, DELETE"),
        ("PATCH", f"{BASE}/abc", "GET, PUT, DELETE"),
        ("OPTIONS", f"{BASE}/abc", "GET, PUT, DELETE"),
    ],
)
def test_known_path_with_wrong_method_is_405(aws, api, method, path, allow):
    response = api.request(method, path)
    assert_error(response, 405, "method_not_allowed")
    assert response.header("Allow") == allow


def test_weird_ids_are_404(aws, api):
    for campaign_id in ("x" * 5000, "a%00b", "caf\u00e9", "a b", "%2F"):
        assert_error(api.get(f"{BASE}/{campaign_id}"), 404, "not_found")


def test_null_byte_in_path_is_404(aws, api):
    assert_error(api.get(f"{BASE}/abc\x00def"), 404, "not_found")
    assert_error(api.delete(f"{BASE}/\x00"), 404, "not_found")


@pytest.mark.parametrize(
    "event",
    [
        None,
        [],
        "GET /",
        {},
        {"httpMethod": "GET"},
        {"path": "/v1.0/campaigns"},
        {"httpMethod": 5, "path": "/v1.0/campaigns"},
        {"httpMethod": "GET", "path": ["x"]},
        {"httpMethod": "G E T", "path": "/v1.0/campaigns"},
        {"httpMethod": "POST", "path": "/v1.0/campaigns", "body": {"name": "x"}},
        {"httpMethod": "GET", "path": "/v1.0/campaigns", "headers": "oops"},
    ],
)
def test_unusable_events_are_400(aws, api, event):
    assert_error(api.invoke(event), 400, "bad_request")


def test_minimal_event_without_request_context_is_401(aws, api):
    response = api.invoke({"httpMethod": "GET", "path": BASE})
    assert_error(response, 401, "unauthorized")


def test_minimal_health_event_works(aws, api):
    response = api.invoke({"httpMethod": "GET", "path": "/v1.0/campaigns/health"})
    assert response.status == 200


def test_odd_header_and_query_shapes_do_not_break(aws, api):
    event = api.build_event("GET", BASE)
    event["headers"]["X-Number"] = 5
    event["headers"][7] = "seven"
    event["multiValueHeaders"]["X-List"] = [None, 3]
    event["queryStringParameters"] = {"limit": 5, "status": None}
    event["requestContext"]["authorizer"]["claims"]["cognito:groups"] = ["campaigns-viewer"]
    response = api.invoke(event)
    assert response.status == 200


def test_unexpected_exception_is_500_with_request_id_and_logged(aws, api, monkeypatch, capsys):
    created = api.create()

    def explode(self, campaign_id):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(type(deps.repository()), "get", explode)
    request_id = "req-" + uuid.uuid4().hex
    response = api.get(f"{BASE}/{created['id']}", request_id=request_id)

    assert_error(response, 500, "internal_error")
    assert response.json["error"] == {
        "code": "internal_error",
        "message": "internal error",
        "details": {"request_id": request_id},
    }
    assert "secret internals" not in response.text
    logs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    errors = [log for log in logs if log.get("level") == "ERROR"]
    assert errors
    assert "RuntimeError" in errors[0]["exception"]
    assert errors[0]["correlation_id"] == request_id


def test_write_failure_leaves_nothing_half_written(aws, api, monkeypatch):
    created = api.create(status="draft")
    repo_type = type(deps.repository())

    def failing_update(self, *args, **kwargs):
        raise RuntimeError("dynamodb went away")

    monkeypatch.setattr(repo_type, "update", failing_update)
    response = api.put(f"{BASE}/{created['id']}", json_body={"status": "active", "name": "changed"})

    assert response.status == 500
    assert api.get(f"{BASE}/{created['id']}").json == created


def test_throttling_maps_to_503(aws, api, monkeypatch):
    from botocore.exceptions import ClientError

    client = deps.repository().client

    def throttled(**kwargs):
        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "Scan")

    monkeypatch.setattr(client, "scan", throttled)
    response = api.get(BASE)
    assert_error(response, 503, "service_unavailable")
    assert response.header("Retry-After") == "1"


def test_every_response_carries_request_id_header(aws, api):
    response = api.get(BASE, request_id="abc-123")
    assert response.header("X-Request-Id") == "abc-123"
