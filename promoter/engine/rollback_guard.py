"""A rollback must not silently run old code on new data.

``rollback --to`` a version that last served before a recorded change (a Terraform apply, a table schema
change) warns and needs an explicit yes: the old code may not know the new table or infrastructure.

Changes come from the environment's ledger: ``infra-apply`` records with outcome ``applied`` (with the
reviewed plan's summary, which names the DynamoDB tables it touched) and ``schema-change`` records (the table
schema promotion's own record). :func:`changes_since` is the pure decision.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from promoter.errors import RefusedError


def last_served(records: Iterable[dict[str, Any]], version: str) -> str | None:
    """When ``version`` last took traffic at 100 % (the time the alias moved away from it, or onto it when it
    still serves), from the ledger's alias changes; None when the ledger never saw it serve."""
    served_from: str | None = None
    until: str | None = None
    for r in records:
        if r.get("kind") != "alias-change":
            continue
        after = r.get("after") or {}
        if str(after.get("version")) == version and not after.get("weights"):
            served_from, until = r["ts"], None
        elif served_from is not None and until is None and str(after.get("version")) != version:
            until = r["ts"]
    return until or served_from


def changes_since(records: Iterable[dict[str, Any]], version: str) -> list[str]:
    """Terraform applies and schema changes recorded after ``version`` last served (all of them when the ledger
    never saw it serve), each as one line (pure)."""
    records = list(records)
    since = last_served(records, version)
    plans = {r.get("sha256"): r for r in records if r.get("kind") == "infra-plan"}
    out = []
    for r in records:
        if since is not None and r["ts"] <= since:
            continue
        if r.get("kind") == "infra-apply" and r.get("outcome") == "applied":
            review = (plans.get(r.get("sha256")) or {}).get("review") or {}
            counts = ", ".join(f"{k} {v}" for k, v in (r.get("counts") or review.get("counts") or {}).items() if v)
            touched = [a for a in review.get("destructive", []) if "aws_dynamodb_table" in a]
            table = f"; table changes: {', '.join(touched)}" if touched else ""
            out.append(f"terraform plan {str(r.get('sha256'))[:12]} applied at {r['ts']}"
                       + (f" ({counts})" if counts else "") + table)
        elif r.get("kind") == "schema-change":
            out.append(f"table schema change at {r['ts']}: {r.get('table', '?')} {r.get('description', '')}".rstrip())
    return out


def refuse_older_than_changes(records: Iterable[dict[str, Any]], version: str, env: str, *,
                              acknowledged: bool) -> list[str]:
    """The changes made since ``version`` served; refuses unless the caller acknowledged them."""
    records = list(records)
    changes = changes_since(records, version)
    if changes and not acknowledged:
        served = last_served(records, version)
        when = f"last served at {served}" if served else "never seen serving in this ledger"
        raise RefusedError(
            f"version {version} ({when}) is older than changes made since in {env}: " + "; ".join(changes)
            + "; rolling back would run old code on new data or infrastructure",
            hint="check the old version works with them, then confirm (interactively) or pass --yes",
        )
    return changes
