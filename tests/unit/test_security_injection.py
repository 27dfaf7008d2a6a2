"""The injection check against an in-memory campaigns API: a service that stores values as data passes; one that
answers a hostile value with a 5xx, alters what it stores, or serves it as HTML fails, with the field named; and
whatever it created is gone afterwards, the rest of the table untouched."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace
from urllib.parse import unquote, urlsplit

from promoter.engine.security.injection import FIELDS, PAYLOADS, run_injection

BASE = "/v1.0/campaigns"
LIMITS = {"name": 200, "description": 2000, "email_template": 1024}


class InMemoryCampaigns:
    def __init__(self, *, crash_on: str | None = None, mangle: bool = False, html: bool = False) -> None:
        self.items: dict[str, dict] = {"existing": {"id": "existing", "name": "kept", "version": 1}}
        self.crash_on, self.mangle, self.html = crash_on, mangle, html

    def scan(self) -> list[dict]:
        return [dict(v) for v in self.items.values()]

    def _reply(self, status: int, body=None):
        kind = "text/html" if self.html and status == 200 else "application/json"
        data = json.dumps(body).encode() if body is not None else b""
        return SimpleNamespace(status=status, body=data, json=lambda: json.loads(data) if data else None,
                               header=lambda name: kind if name.lower() == "content-type" else None)

    def _invalid(self, body: dict) -> bool:
        for field, value in body.items():
            if field in ("status", "start_date", "end_date") or not isinstance(value, str):
                return True
            if len(value) > LIMITS.get(field, 10**6) or (field == "email_template" and ".." in value):
                return True
        return False

    def __call__(self, method, path, *, json_body=None, headers=None):
        url = urlsplit(path)
        if url.query:
            return self._reply(422 if "limit" in url.query else 200, {"items": []})
        rest = unquote(url.path[len(BASE):]).lstrip("/")
        body = json_body or {}
        if self.crash_on and any(v == self.crash_on for v in body.values()):
            return self._reply(500, {"error": {"code": "internal_error"}})
        if method == "POST":
            if self._invalid(body):
                return self._reply(422, {"error": {"code": "validation_failed"}})
            item_id = uuid.uuid4().hex
            stored = {k: (v + " " if self.mangle and k == "description" else v) for k, v in body.items()}
            self.items[item_id] = {**stored, "id": item_id, "version": 1}
            return self._reply(201, self.items[item_id])
        if rest not in self.items:
            return self._reply(404, {"error": {"code": "not_found"}})
        if method == "GET":
            return self._reply(200, self.items[rest])
        if method == "PUT":
            if self._invalid(body):
                return self._reply(422, {"error": {"code": "validation_failed"}})
            self.items[rest].update(body)
            return self._reply(200, self.items[rest])
        if method == "DELETE":
            del self.items[rest]
            return self._reply(204)
        return self._reply(405)


def test_a_service_that_keeps_values_as_data_passes_and_is_left_as_it_was():
    api = InMemoryCampaigns()
    results = run_injection(api, BASE, api.scan)
    assert [r.name for r in results if r.status != "passed"] == []
    names = {r.name for r in results}
    assert {f"stored {f} [script-tag]" for f in FIELDS} <= names and "updated name [unicode]" in names
    assert "query next_token [nosql-operator]" in names and "path parameter [path-traversal]" in names
    assert list(api.items) == ["existing"]
    assert len(results) == len(PAYLOADS) * (2 * len(FIELDS) + 4) + 2


def test_a_server_error_on_a_hostile_value_is_a_high_finding_naming_the_field():
    api = InMemoryCampaigns(crash_on="' OR '1'='1' --")
    failed = [r for r in run_injection(api, BASE, api.scan) if r.status == "failed"]
    assert {r.name for r in failed} == {f"{verb} {f} [sql-tautology]" for verb in ("stored", "updated")
                                        for f in ("name", "description", "email_template", "status", "start_date",
                                                  "end_date")}
    assert all(r.severity == "high" and "server error 500" in r.message for r in failed)


def test_a_value_stored_otherwise_than_sent_or_served_as_html_fails():
    api = InMemoryCampaigns(mangle=True)
    failed = {r.name for r in run_injection(api, BASE, api.scan) if r.status == "failed"}
    assert "stored description [script-tag]" in failed and "stored name [script-tag]" not in failed
    html = InMemoryCampaigns(html=True)
    failed = [r for r in run_injection(html, BASE, html.scan) if r.status == "failed"]
    assert any("not JSON" in r.message for r in failed)


def test_a_change_outside_the_checks_own_items_is_reported():
    api = InMemoryCampaigns()

    def scan_with_a_concurrent_write():
        rows = api.scan()
        api.items["existing"]["name"] = "changed by someone"
        return rows

    results = {r.name: r for r in run_injection(api, BASE, scan_with_a_concurrent_write)}
    unchanged = results["table unchanged outside the check's items"]
    assert unchanged.status == "failed" and unchanged.details["modified"] == ["existing"]
