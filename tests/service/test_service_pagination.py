"""Listing: pagination with opaque tokens, limits and the status filter."""

import base64
import json

import pytest

from campaigns_lambda.repository import decode_next_token, encode_next_token

BASE = "/v1.0/campaigns"


def page_through(api, limit, **query):
    seen, pages, token = [], 0, None
    while True:
        params = {"limit": str(limit), **query}
        if token:
            params["next_token"] = token
        response = api.get(BASE, query=params)
        assert response.status == 200, response.text
        body = response.json
        assert body["count"] == len(body["items"]) <= limit
        seen.extend(item["id"] for item in body["items"])
        pages += 1
        token = body["next_token"]
        if token is None:
            return seen, pages
        assert pages < 50, "pagination does not terminate"


def test_page_through_25_campaigns_with_limit_10(aws, api):
    created = {api.create(name=f"campaign {i}")["id"] for i in range(25)}

    seen, pages = page_through(api, 10)

    assert len(seen) == 25
    assert set(seen) == created
    assert pages in (3, 4)  # 10 + 10 + 5 (plus possibly one empty page)


def test_first_page_is_full_and_returns_token(aws, api):
    for i in range(25):
        api.create(name=f"c{i}")
    body = api.get(BASE, query={"limit": "10"}).json
    assert body["count"] == 10
    assert isinstance(body["next_token"], str)


def test_default_limit_is_20(aws, api):
    for i in range(25):
        api.create(name=f"c{i}")
    body = api.get(BASE).json
    assert body["count"] == 20
    assert body["next_token"] is not None


def test_empty_table_lists_nothing(aws, api):
    assert api.get(BASE).json == {"items": [], "next_token": None, "count": 0}


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "1.5", ""])
def test_invalid_limit_is_rejected(aws, api, limit):
    response = api.get(BASE, query={"limit": limit})
    assert response.status == 422
    assert response.error_code == "validation_error"
    assert response.json["error"]["details"][0]["loc"] == ["query", "limit"]


@pytest.mark.parametrize("limit", ["1", "100"])
def test_limit_bounds_are_accepted(aws, api, limit):
    assert api.get(BASE, query={"limit": limit}).status == 200


@pytest.mark.parametrize(
    "token",
    [
        "garbage!!",
        "e30",  # {}
        base64.urlsafe_b64encode(b'{"id": 5}').decode(),
        base64.urlsafe_b64encode(b'{"id": "x", "extra": 1}').decode(),
        base64.urlsafe_b64encode(b'["id"]').decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        base64.urlsafe_b64encode(json.dumps({"id": "a/b"}).encode()).decode(),
        "\u00e9t\u00e9",
    ],
)
def test_invalid_next_token_is_400(aws, api, token):
    response = api.get(BASE, query={"next_token": token})
    assert response.status == 400
    assert response.error_code == "invalid_next_token"


def test_token_round_trip():
    key = {"id": "8d4e3f4e-2a8a-4b39-9f1d-2f8fd5a7f1a0"}
    token = encode_next_token(key)
    assert "=" not in token
    assert "+" not in token
    assert "/" not in token
    assert decode_next_token(token) == key


def test_status_filter_returns_only_matching(aws, api):
    active = {api.create(name=f"a{i}", status="active")["id"] for i in range(7)}
    for i in range(9):
        api.create(name=f"d{i}")

    seen, _ = page_through(api, 3, status="active")

    assert len(seen) == len(active)
    assert set(seen) == active


def test_filtered_page_is_filled_across_scan_pages(aws, api):
    for i in range(30):
        api.create(name=f"d{i}")
    paused = {api.create(name=f"p{i}", status="paused")["id"] for i in range(4)}

    body = api.get(BASE, query={"status": "paused", "limit": "4"}).json

    assert {item["id"] for item in body["items"]} == paused


def test_invalid_status_filter_is_422(aws, api):
    response = api.get(BASE, query={"status": "running"})
    assert response.status == 422
    assert response.json["error"]["details"][0]["loc"] == ["query", "status"]


def test_unknown_query_parameters_are_ignored(aws, api):
    api.create()
    assert api.get(BASE, query={"sort": "name"}).json["count"] == 1
