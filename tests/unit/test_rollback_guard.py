"""Rolling back past a recorded terraform or schema change needs an explicit yes (decided on plain records)."""

from __future__ import annotations

import pytest

from promoter.engine.rollback_guard import changes_since, last_served, refuse_older_than_changes
from promoter.errors import RefusedError

RECORDS = [
    {"kind": "alias-change", "ts": "2026-03-01T10:00:00Z", "after": {"version": "1", "weights": {}}},
    {"kind": "alias-change", "ts": "2026-03-02T10:00:00Z", "after": {"version": "1", "weights": {"2": 0.1}}},
    {"kind": "alias-change", "ts": "2026-03-02T10:05:00Z", "after": {"version": "2", "weights": {}}},
    {"kind": "infra-plan", "ts": "2026-03-03T09:00:00Z", "sha256": "p" * 64,
     "review": {"counts": {"update": 1}, "destructive": ["replace aws_dynamodb_table.campaigns"]}},
    {"kind": "infra-apply", "ts": "2026-03-03T09:10:00Z", "sha256": "p" * 64, "outcome": "applied",
     "counts": {"create": 0, "update": 1}},
    {"kind": "schema-change", "ts": "2026-03-04T09:00:00Z", "table": "campaigns-prod", "description": "GSI by status"},
]


def test_a_version_that_served_before_the_changes_is_warned_about():
    assert last_served(RECORDS, "1") == "2026-03-02T10:05:00Z"  # until version 2 took over
    changes = changes_since(RECORDS, "1")
    assert changes == [
        "terraform plan pppppppppppp applied at 2026-03-03T09:10:00Z (update 1); table changes: replace "
        "aws_dynamodb_table.campaigns",
        "table schema change at 2026-03-04T09:00:00Z: campaigns-prod GSI by status",
    ]
    with pytest.raises(RefusedError, match="older than changes made since in prod") as err:
        refuse_older_than_changes(RECORDS, "1", "prod", acknowledged=False)
    assert "--yes" in err.value.hint
    assert refuse_older_than_changes(RECORDS, "1", "prod", acknowledged=True) == changes


def test_no_warning_for_a_version_newer_than_every_change():
    later = [*RECORDS, {"kind": "alias-change", "ts": "2026-03-05T10:00:00Z", "after": {"version": "3", "weights": {}}}]
    assert changes_since(later, "3") == []
    assert refuse_older_than_changes(later, "3", "prod", acknowledged=False) == []


def test_a_version_never_seen_serving_counts_every_change():
    assert last_served(RECORDS, "7") is None
    assert len(changes_since(RECORDS, "7")) == 2
