"""Create, read, update and delete campaigns through the Lambda handler."""

import re
import uuid

import pytest

BASE = "/v1.0/campaigns"
ISO_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def test_create_returns_201_location_and_stored_campaign(aws, api):
    payload = {
        "name": "  Winter promo  ",
        "status": "draft",
        "start_date": "2025-06-01",
        "end_date": "2025-06-30",
        "description": "Site-wide discount",
        "email_template": "emails/welcome.html",
    }
    response = api.post(BASE, json_body=payload)

    assert response.status == 201
    body = response.json
    assert uuid.UUID(body["id"]).version == 4
    assert response.header("Location") == f"{BASE}/{body['id']}"
    assert body["name"] == "Winter promo"
    assert body["status"] == "draft"
    assert body["start_date"] == "2025-06-01"
    assert body["end_date"] == "2025-06-30"
    assert body["description"] == "Site-wide discount"
    assert body["email_template"] == "emails/welcome.html"
    assert body["version"] == 1
    assert ISO_UTC.fullmatch(body["created_at"])
    assert body["created_at"] == body["updated_at"]
    assert body["created_by"] == "7d8ca528-4931-4254-9273-ea5ee853f271"

    stored = aws.dynamodb.get_item(TableName="campaigns-test", Key={"id": {"S": body["id"]}})["Item"]
    assert stored["name"] == {"S": "Winter promo"}
    assert stored["version"] == {"N": "1"}
    assert stored["created_by"] == {"S": "7d8ca528-4931-4254-9273-ea5ee853f271"}


def test_create_defaults_status_to_draft_and_optional_fields_to_null(aws, api):
    body = api.create(name="Minimal")
    assert body["status"] == "draft"
    assert body["description"] is None
    assert body["email_template"] is None
    assert body["start_date"] is None


def test_created_by_falls_back_to_username(aws, api):
    event = api.build_event("POST", BASE, json_body={"name": "x"})
    del event["requestContext"]["authorizer"]["claims"]["sub"]
    response = api.invoke(event)
    assert response.status == 201
    assert response.json["created_by"] == "jane.doe"


@pytest.mark.parametrize(
    ("payload", "bad_field"),
    [
        ({}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": 42}, "name"),
        ({"name": "ok", "status": "running"}, "status"),
        ({"name": "ok", "start_date": "2025-13-01"}, "start_date"),
        ({"name": "ok", "start_date": "01/06/2025"}, "start_date"),
        ({"name": "ok", "end_date": "2025-06-01T00:00:00"}, "end_date"),
        ({"name": "ok", "description": "d" * 2001}, "description"),
        ({"name": "ok", "email_template": "../etc/passwd"}, "email_template"),
        ({"name": "ok", "owner": "me"}, "owner"),
    ],
)
def test_create_validation_errors(aws, api, payload, bad_field):
    response = api.post(BASE, json_body=payload)

    assert response.status == 422
    assert response.error_code == "validation_error"
    locs = [detail["loc"] for detail in response.json["error"]["details"]]
    assert [bad_field] in locs
    assert aws.scan_all() == []


def test_validation_errors_do_not_echo_input(aws, api):
    secret = "do-not-echo-" + "z" * 300
    response = api.post(BASE, json_body={"name": secret, "status": secret})
    assert response.status == 422
    assert "do-not-echo" not in response.text


def test_create_rejects_end_before_start(aws, api):
    response = api.post(BASE, json_body={"name": "x", "start_date": "2025-06-10", "end_date": "2025-06-01"})
    assert response.status == 422
    assert response.error_code == "validation_error"
    assert aws.scan_all() == []


def test_create_accepts_equal_start_and_end(aws, api):
    assert api.create(start_date="2025-06-10", end_date="2025-06-10")["end_date"] == "2025-06-10"


def test_create_with_unknown_email_template(aws, api):
    response = api.post(BASE, json_body={"name": "x", "email_template": "emails/missing.html"})
    assert response.status == 422
    assert response.error_code == "unknown_email_template"
    assert aws.scan_all() == []


def test_get_returns_campaign_and_404_for_missing(aws, api):
    created = api.create()

    response = api.get(f"{BASE}/{created['id']}")
    assert response.status == 200
    assert response.json == created

    missing = api.get(f"{BASE}/{uuid.uuid4()}")
    assert missing.status == 404
    assert missing.error_code == "not_found"


def test_update_partial_fields_and_increments_version(aws, api):
    created = api.create(description="old", start_date="2025-01-01")

    response = api.put(f"{BASE}/{created['id']}", json_body={"status": "active", "description": "new"})

    assert response.status == 200
    body = response.json
    assert body["status"] == "active"
    assert body["description"] == "new"
    assert body["name"] == created["name"]
    assert body["start_date"] == "2025-01-01"
    assert body["version"] == 2
    assert body["created_at"] == created["created_at"]
    assert api.get(f"{BASE}/{created['id']}").json == body


def test_update_can_clear_optional_fields(aws, api):
    created = api.create(description="old", email_template="emails/welcome.html")
    response = api.put(f"{BASE}/{created['id']}", json_body={"description": None, "email_template": None})
    assert response.status == 200
    assert response.json["description"] is None
    assert response.json["email_template"] is None
    stored = aws.dynamodb.get_item(TableName="campaigns-test", Key={"id": {"S": created["id"]}})["Item"]
    assert "description" not in stored


@pytest.mark.parametrize(
    "payload",
    [{}, {"version": 1}, {"name": None}, {"status": None}, {"status": "bogus"}, {"id": "other"}],
)
def test_update_validation_errors(aws, api, payload):
    created = api.create()
    response = api.put(f"{BASE}/{created['id']}", json_body=payload)
    assert response.status == 422
    assert response.error_code == "validation_error"
    assert api.get(f"{BASE}/{created['id']}").json == created


def test_update_rechecks_dates_against_stored_values(aws, api):
    created = api.create(start_date="2025-06-10", end_date="2025-06-20")

    response = api.put(f"{BASE}/{created['id']}", json_body={"end_date": "2025-06-01"})
    assert response.status == 422
    assert response.error_code == "validation_error"

    response = api.put(f"{BASE}/{created['id']}", json_body={"start_date": "2025-06-21"})
    assert response.status == 422

    assert api.put(f"{BASE}/{created['id']}", json_body={"start_date": "2025-06-15"}).status == 200


def test_update_with_unknown_email_template(aws, api):
    created = api.create()
    response = api.put(f"{BASE}/{created['id']}", json_body={"email_template": "emails/nope.html"})
    assert response.status == 422
    assert response.error_code == "unknown_email_template"
    assert api.get(f"{BASE}/{created['id']}").json["version"] == 1


def test_update_missing_campaign_is_404(aws, api):
    response = api.put(f"{BASE}/{uuid.uuid4()}", json_body={"name": "x"})
    assert response.status == 404
    assert response.error_code == "not_found"
    assert aws.scan_all() == []


ALLOWED = {
    "draft": {"active", "archived"},
    "active": {"paused", "completed"},
    "paused": {"active", "completed", "archived"},
    "completed": {"archived"},
    "archived": set(),
}
STATUSES = sorted(ALLOWED)


@pytest.mark.parametrize("current", STATUSES)
@pytest.mark.parametrize("target", STATUSES)
def test_status_transitions(aws, api, current, target):
    created = api.create(status=current)

    response = api.put(f"{BASE}/{created['id']}", json_body={"status": target})

    if target == current:
        assert response.status == 200
        assert response.json["version"] == 1  # same status is a no-op
    elif target in ALLOWED[current]:
        assert response.status == 200
        assert response.json["status"] == target
        assert response.json["version"] == 2
    else:
        assert response.status == 422
        assert response.error_code == "invalid_status_transition"
        assert response.json["error"]["details"] == {"from": current, "to": target}
        assert api.get(f"{BASE}/{created['id']}").json["status"] == current


def test_delete_then_get_is_404_and_second_delete_is_404(aws, api):
    created = api.create()

    response = api.delete(f"{BASE}/{created['id']}")
    assert response.status == 204
    assert response.text in ("", None)

    assert api.get(f"{BASE}/{created['id']}").status == 404
    again = api.delete(f"{BASE}/{created['id']}")
    assert again.status == 404
    assert again.error_code == "not_found"
    assert aws.scan_all() == []


def test_trailing_slash_is_accepted(aws, api):
    created = api.create()
    assert api.get(f"{BASE}/").json["count"] == 1
    assert api.get(f"{BASE}/{created['id']}/").status == 200


def test_decimal_values_are_plain_json_numbers(aws, api):
    created = api.create()
    aws.dynamodb.update_item(
        TableName="campaigns-test",
        Key={"id": {"S": created["id"]}},
        UpdateExpression="SET version = :v",
        ExpressionAttributeValues={":v": {"N": "7"}},
    )
    response = api.get(f"{BASE}/{created['id']}")
    assert '"version":7' in response.text
    assert response.json["version"] == 7
