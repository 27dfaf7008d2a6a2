"""Pure decisions behind the preflight checks, on plain data (no AWS, no git), so each is unit-tested alone."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

# The runbook asks for a certificate that will not lapse during the promotion window and the weeks after it.
CERT_MIN_DAYS = 30

PUBLIC_ACCESS_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


def normalise_dns(name: str) -> str:
    return name.strip().rstrip(".").lower()


def certificate_covers(name: str, cert_names: Iterable[str]) -> bool:
    """True when one of the certificate's names (CN or SAN) is ``name`` or a wildcard matching it.

    A wildcard covers exactly one label: ``*.kimmyai.io`` covers ``api.kimmyai.io`` but neither ``kimmyai.io``
    nor ``api.sit.kimmyai.io``.
    """
    target = normalise_dns(name)
    for cert_name in cert_names:
        candidate = normalise_dns(cert_name)
        if candidate == target:
            return True
        if candidate.startswith("*."):
            first, _, rest = target.partition(".")
            if first and rest and rest == candidate[2:]:
                return True
    return False


def days_left(not_after: datetime, now: datetime) -> float:
    return (not_after - now).total_seconds() / 86400


def expiry_ok(not_after: datetime, now: datetime, min_days: int = CERT_MIN_DAYS) -> bool:
    """True when the certificate is valid for more than ``min_days`` from ``now``."""
    return days_left(not_after, now) > min_days


def certificate_problem(cert: Mapping[str, Any], name: str, now: datetime, min_days: int = CERT_MIN_DAYS) -> str | None:
    """Why an ACM certificate description (``Certificate`` of describe_certificate) is not usable for ``name``;
    None when it is."""
    names = [cert.get("DomainName", ""), *cert.get("SubjectAlternativeNames", [])]
    if not certificate_covers(name, names):
        return f"does not cover {name} (names: {', '.join(n for n in names if n)})"
    status = cert.get("Status")
    if status != "ISSUED":
        return f"status is {status}, not ISSUED"
    not_after = cert.get("NotAfter")
    if not isinstance(not_after, datetime):
        return "has no expiry date"
    if not expiry_ok(not_after, now, min_days):
        left = days_left(not_after, now)
        return f"expires {not_after:%Y-%m-%d} ({left:.0f} days left; needs more than {min_days})"
    return None


def zone_candidates(domain: str) -> list[str]:
    """``api.sit.kimmyai.io`` -> the domain itself and each parent with at least two labels, most specific first."""
    labels = normalise_dns(domain).split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]


def find_zone(domain: str, zones: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The most specific public hosted zone whose name is ``domain`` or a parent of it."""
    by_name: dict[str, Mapping[str, Any]] = {}
    for zone in zones:
        if zone.get("Config", {}).get("PrivateZone"):
            continue
        by_name.setdefault(normalise_dns(zone.get("Name", "")), zone)
    for candidate in zone_candidates(domain):
        if candidate in by_name:
            return by_name[candidate]
    return None


def key_schema_problem(key_schema: Iterable[Mapping[str, str]], partition_key: str) -> str | None:
    """Why a DynamoDB KeySchema does not have ``partition_key`` as its HASH key; None when it does."""
    hash_keys = [k.get("AttributeName") for k in key_schema if k.get("KeyType") == "HASH"]
    if hash_keys != [partition_key]:
        found = hash_keys[0] if hash_keys else "none"
        return f"partition key is {found}, the plan expects {partition_key}"
    return None


def public_access_gaps(config: Mapping[str, Any]) -> list[str]:
    """The public access block flags that are not on."""
    return [flag for flag in PUBLIC_ACCESS_FLAGS if not config.get(flag)]


def trusts_service(policy: str | Mapping[str, Any], service: str = "lambda.amazonaws.com") -> bool:
    """True when an IAM trust policy lets ``service`` assume the role."""
    if isinstance(policy, str):
        policy = json.loads(urllib.parse.unquote(policy))
    statements = policy.get("Statement", [])
    if isinstance(statements, Mapping):
        statements = [statements]
    for statement in statements:
        if statement.get("Effect") != "Allow":
            continue
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if not any(a in {"sts:AssumeRole", "sts:*", "*"} for a in actions):
            continue
        principals = statement.get("Principal", {})
        services = principals.get("Service", []) if isinstance(principals, Mapping) else []
        services = [services] if isinstance(services, str) else services
        if service in services:
            return True
    return False


def missing_names(expected: Iterable[str], found: Iterable[str]) -> list[str]:
    present = set(found)
    return [name for name in expected if name not in present]


def choose_release(tags_on_head: Iterable[str], pattern: str, requested: str | None) -> tuple[str | None, str | None]:
    """Which release HEAD is, and the problem if none can be told.

    With ``requested`` (``--release``): it must match ``pattern`` and be a tag on HEAD. Without: exactly one tag on
    HEAD must match ``pattern``. Returns ``(release, None)`` or ``(None, problem)``.
    """
    tags = sorted(tags_on_head)
    matching = [t for t in tags if re.match(pattern, t)]
    if requested:
        if not re.match(pattern, requested):
            return None, f"release {requested} does not match the plan's tag pattern {pattern}"
        if requested not in tags:
            shown = ", ".join(tags) or "no tags"
            return None, f"HEAD is not tagged {requested} (tags on HEAD: {shown})"
        return requested, None
    if not matching:
        shown = ", ".join(tags) or "no tags"
        return None, f"no tag on HEAD matches {pattern} (tags on HEAD: {shown})"
    if len(matching) > 1:
        return None, f"several release tags on HEAD ({', '.join(matching)}); choose one with --release"
    return matching[0], None


EXAMPLE_TAGS = ("v{n}", "v{n}-{env}", "{n}", "{n}-{env}", "release-{n}", "v{n}-rc1")


def example_tag(pattern: str, env: str) -> str | None:
    """A tag the plan's pattern accepts, to show in hints (never one the plan would then refuse)."""
    for shape in EXAMPLE_TAGS:
        candidate = shape.format(n="1.1.0", env=env)
        if re.match(pattern, candidate):
            return candidate
    return None
