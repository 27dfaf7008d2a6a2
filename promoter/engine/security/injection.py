"""Injection and stored XSS: hostile values in every field of a campaign and in every path and query parameter.

Stages: snapshot the table (a scan); create one marked campaign per hostile value and field (the check's own test
items, named with the run's marker), and update one marked campaign with each value in each field; read each
accepted value back and require it exactly as sent, as JSON, never as HTML;
send the same values as path and query parameters (never a 5xx, never an HTML answer); delete the check's own
items; scan again and require every other item unchanged. A value the service refuses (4xx) is a pass: refusing
is a safe answer. Any 5xx is a finding.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from promoter.engine.security.report import TestResult

CHECK = "injection"
OVERSIZED = "A" * 70_000

# (name, value). Kept free of leading/trailing whitespace: the service trims names, and exactness is the test.
PAYLOADS: tuple[tuple[str, Any], ...] = (
    ("sql-tautology", "' OR '1'='1' --"),
    ("sql-stacked", "x'; DROP TABLE campaigns; --"),
    ("nosql-operator", '{"$gt": ""}'),
    ("nosql-object", {"$ne": None}),
    ("dynamodb-expression", "#n = :v OR attribute_exists(id)"),
    ("script-tag", "<script>alert(document.domain)</script>"),
    ("html-event", '<img src=x onerror="alert(1)">'),
    ("template-expression", "{{7*7}} ${7*7} <%= 7*7 %>"),
    ("path-traversal", "../../../../etc/passwd"),
    ("unicode", "Kampanje ✓ 名前 🚀 \u202etxt.exe Ω"),
    ("null-byte", "nul\u0000byte"),
    ("oversized", OVERSIZED),
)
FIELDS: tuple[str, ...] = ("name", "description", "email_template", "status", "start_date", "end_date")
QUERY_PARAMETERS: tuple[str, ...] = ("status", "limit", "next_token")


def _is_json(response: Any) -> bool:
    return (response.header("content-type") or "").split(";")[0].strip().lower() == "application/json"


def _looks_html(response: Any) -> bool:
    kind = (response.header("content-type") or "").lower()
    return "html" in kind


def snapshot(scan: Callable[[], list[dict[str, Any]]], key: str) -> dict[str, str]:
    """Item key -> a canonical JSON of the item."""
    return {str(item.get(key)): json.dumps(item, sort_keys=True, default=str) for item in scan()}


def compare_snapshots(before: dict[str, str], after: dict[str, str], own: set[str]) -> dict[str, list[str]]:
    """What changed outside the check's own items: added, removed and modified keys."""
    before = {k: v for k, v in before.items() if k not in own}
    after = {k: v for k, v in after.items() if k not in own}
    return {"added": sorted(set(after) - set(before)), "removed": sorted(set(before) - set(after)),
            "modified": sorted(k for k in set(before) & set(after) if before[k] != after[k])}


def run_injection(send: Callable[..., Any], base_path: str, scan: Callable[[], list[dict[str, Any]]],
                  key: str = "id", progress: Callable[[str], None] = lambda _m: None,
                  marker: str | None = None) -> list[TestResult]:
    """``send(method, path, json_body=..., headers=...)`` with a token that may create, read and delete.
    ``marker`` names the check's own items (and lets the log sample recognise a logged request body)."""
    marker = marker or f"sec-check-{uuid.uuid4().hex[:10]}"
    results: list[TestResult] = []
    created: list[str] = []
    before = snapshot(scan, key)
    progress(f"injection: {len(PAYLOADS)} hostile values x {len(FIELDS)} fields (create and update), path and query "
             f"(table holds {len(before)} items)")

    def record(name: str, ok: bool, message: str, location: str, **details: Any) -> None:
        results.append(TestResult(CHECK, name, "passed" if ok else "failed", severity="high", message=message,
                                  location=location, details=details))

    def read_back(test: str, item_id: str, field: str, value: Any) -> None:
        back = send("GET", f"{base_path}/{quote(str(item_id), safe='')}")
        stored = (back.json() or {}).get(field) if _is_json(back) else None
        problems = []
        if back.status != 200:
            problems.append(f"read back {back.status}")
        if not _is_json(back) or _looks_html(back):
            problems.append(f"read back as {back.header('content-type')!r}, not JSON")
        if stored != value:
            problems.append("stored value differs from what was sent")
        record(test, not problems, "; ".join(problems), f"GET {base_path}/{{campaign_id}}", id=item_id)

    def answered(test: str, resp: Any, location: str) -> bool:
        """Record a refusal or a server error; True when the value was accepted (and must be read back)."""
        if resp.status >= 500:
            record(test, False, f"server error {resp.status}", location, status=resp.status)
            return False
        if resp.status not in (200, 201):
            ok = 400 <= resp.status < 500 and _is_json(resp)
            record(test, ok, "" if ok else f"answered {resp.status} {resp.header('content-type')!r}", location,
                   status=resp.status)
            return False
        return True

    try:
        target = send("POST", base_path, json_body={"name": f"{marker} update target", "description": marker})
        target_id = (target.json() or {}).get("id") if target.status == 201 else None
        if target_id:
            created.append(target_id)
        for payload_name, value in PAYLOADS:
            for field in FIELDS:
                body: dict[str, Any] = {"name": f"{marker} {payload_name}", "description": marker}
                body[field] = value
                test = f"stored {field} [{payload_name}]"
                resp = send("POST", base_path, json_body=body)
                if answered(test, resp, f"POST {base_path}"):
                    item_id = (resp.json() or {}).get("id")
                    created.append(item_id)
                    read_back(test, item_id, field, value)
                if target_id:
                    test = f"updated {field} [{payload_name}]"
                    path = f"{base_path}/{quote(str(target_id), safe='')}"
                    if answered(test, send("PUT", path, json_body={field: value}), f"PUT {base_path}/{{campaign_id}}"):
                        read_back(test, target_id, field, value)
            path_test = f"path parameter [{payload_name}]"
            text = value if isinstance(value, str) else json.dumps(value)
            resp = send("GET", f"{base_path}/{quote(text[:4000], safe='')}")
            ok = resp.status < 500 and not _looks_html(resp)
            record(path_test, ok, "" if ok else f"answered {resp.status} {resp.header('content-type')!r}",
                   f"GET {base_path}/{{campaign_id}}", status=resp.status)
            for parameter in QUERY_PARAMETERS:
                resp = send("GET", f"{base_path}?{urlencode({parameter: text[:4000]})}")
                ok = resp.status < 500 and not _looks_html(resp)
                record(f"query {parameter} [{payload_name}]", ok,
                       "" if ok else f"answered {resp.status} {resp.header('content-type')!r}",
                       f"GET {base_path}", status=resp.status)
    finally:
        leftovers = []
        for item_id in created:
            resp = send("DELETE", f"{base_path}/{quote(str(item_id), safe='')}")
            if resp.status not in (204, 404):
                leftovers.append(item_id)
        changes = compare_snapshots(before, snapshot(scan, key), set(created))
        after_own = [i for i in created if i in snapshot(scan, key)]
        changed = {k: v for k, v in changes.items() if v}
        record("table unchanged outside the check's items", not changed,
               "" if not changed else "items changed outside the check's own: " + json.dumps(changed),
               "table", **changed)
        record("check's own items deleted", not after_own and not leftovers,
               "" if not after_own else f"{len(after_own)} test items left in the table: {after_own[:5]}",
               "table", created=len(created))
    progress(f"injection: {sum(r.status == 'passed' for r in results)} of {len(results)} passed")
    return results
