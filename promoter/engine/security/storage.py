"""Transport and storage, read through boto3: the table's server-side encryption, the templates bucket's default
encryption, public access block and TLS-only policy, and the function's log group sampled for secrets.

The log sample is the most recent events of the log group (the plan's ``security.log_sample_minutes`` and
``log_sample_events``), searched for bearer tokens, JWTs, request bodies and the injection check's own marker (a
value only request bodies carried: seeing it in a log means bodies are logged).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from promoter.engine.security.report import TestResult

CHECK = "storage"
SECRET_PATTERNS: dict[str, re.Pattern[str]] = {
    "bearer token": re.compile(r"[Bb]earer\s+[A-Za-z0-9._~+/=-]{16,}"),
    "JWT": re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    "request body": re.compile(r'"(?:body|requestBody|request_body)"\s*:\s*"?[{\[]'),
}


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__))


def table_encryption(ddb: Any, table: str) -> TestResult:
    name = "table encrypted at rest (SSE)"
    try:
        described = ddb.describe_table(TableName=table)["Table"]
    except Exception as exc:
        return TestResult(CHECK, name, "failed", "high", f"cannot describe {table}: {_error_code(exc)}", table)
    sse = described.get("SSEDescription") or {}
    # DynamoDB always encrypts; SSEDescription is absent for the AWS-owned key and present for KMS keys.
    status = sse.get("Status", "ENABLED" if not sse else "")
    ok = status in ("ENABLED", "UPDATING")
    return TestResult(CHECK, name, "passed" if ok else "failed", "high", "" if ok else f"SSE status {status!r}",
                      table, details={"sse": sse or "AWS owned key"})


def bucket_checks(s3: Any, bucket: str, owner: str | None = None) -> list[TestResult]:
    """``owner``: the project that owns the bucket when it is not this one (the plan's dependencies); its
    findings are reported to that owner at medium severity instead of failing this service's verdict."""
    results = []
    try:
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        algorithms = [r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules]
        ok = any(a in ("AES256", "aws:kms", "aws:kms:dsse") for a in algorithms)
        results.append(TestResult(CHECK, "bucket default encryption", "passed" if ok else "failed", "high",
                                  "" if ok else f"algorithms {algorithms}", bucket))
    except Exception as exc:
        results.append(TestResult(CHECK, "bucket default encryption", "failed", "high",
                                  f"no default encryption ({_error_code(exc)})", bucket))
    try:
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        missing = [k for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
                   if not block.get(k)]
        results.append(TestResult(CHECK, "bucket public access block", "failed" if missing else "passed", "high",
                                  f"not set: {', '.join(missing)}" if missing else "", bucket))
    except Exception as exc:
        results.append(TestResult(CHECK, "bucket public access block", "failed", "high",
                                  f"no public access block ({_error_code(exc)})", bucket))
    try:
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except Exception as exc:
        policy = None
        why = f"no bucket policy ({_error_code(exc)})"
    ok = policy is not None and denies_insecure_transport(policy)
    if policy is not None and not ok:
        why = "the policy does not deny requests with aws:SecureTransport = false"
    results.append(TestResult(CHECK, "bucket policy requires TLS", "passed" if ok else "failed", "high",
                              "" if ok else why, bucket))
    if owner:
        from dataclasses import replace

        results = [replace(r, severity="medium", message=f"{r.message} (the bucket is owned by {owner})")
                   if r.finding else r for r in results]
    return results


def denies_insecure_transport(policy: dict[str, Any]) -> bool:
    statements = policy.get("Statement") or []
    if isinstance(statements, dict):
        statements = [statements]
    for st in statements:
        if st.get("Effect") != "Deny":
            continue
        condition = st.get("Condition") or {}
        for operator in ("Bool", "BoolIfExists"):
            value = (condition.get(operator) or {}).get("aws:SecureTransport")
            if str(value).lower() == "false" and st.get("Principal") in ("*", {"AWS": "*"}):
                return True
    return False


def scan_log_events(messages: list[str], markers: tuple[str, ...] = ()) -> dict[str, int]:
    """Kind of secret -> how many of ``messages`` carry it."""
    hits: dict[str, int] = {}
    for message in messages:
        for kind, pattern in SECRET_PATTERNS.items():
            if pattern.search(message):
                hits[kind] = hits.get(kind, 0) + 1
        if any(m and m in message for m in markers):
            hits["request body (injection marker)"] = hits.get("request body (injection marker)", 0) + 1
    return hits


def log_sample(logs: Any, group: str, *, minutes: float, limit: int, markers: tuple[str, ...] = (),
               now: Callable[[], float] = time.time) -> TestResult:
    name = "function logs carry no tokens or request bodies"
    start = int((now() - minutes * 60) * 1000)
    messages: list[str] = []
    try:
        kwargs: dict[str, Any] = {"logGroupName": group, "startTime": start, "limit": min(limit, 10000)}
        while len(messages) < limit:
            page = logs.filter_log_events(**kwargs)
            messages += [e.get("message", "") for e in page.get("events", [])]
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
    except Exception as exc:
        return TestResult(CHECK, name, "failed", "medium", f"cannot read {group}: {_error_code(exc)}", group)
    messages = messages[:limit]
    if not messages:
        return TestResult(CHECK, name, "skipped", "medium", f"no log events in the last {minutes:g} minutes", group)
    hits = scan_log_events(messages, markers)
    return TestResult(CHECK, name, "failed" if hits else "passed", "high",
                      ("found " + ", ".join(f"{n} events with a {k}" for k, n in hits.items())) if hits else "",
                      group, details={"events_sampled": len(messages), **({"hits": hits} if hits else {})})
