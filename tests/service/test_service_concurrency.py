"""Optimistic concurrency: versions, If-Match and racing writers."""

import threading

import pytest

from campaigns_lambda import deps
from campaigns_lambda.errors import Conflict

BASE = "/v1.0/campaigns"


def test_if_match_with_current_version_succeeds(aws, api):
    created = api.create()
    response = api.put(f"{BASE}/{created['id']}", json_body={"name": "v2"}, headers={"If-Match": '"1"'})
    assert response.status == 200
    assert response.json["version"] == 2


@pytest.mark.parametrize("if_match", ["1", '"1"', 'W/"1"'])
def test_stale_if_match_is_409(aws, api, if_match):
    created = api.create()
    assert api.put(f"{BASE}/{created['id']}", json_body={"name": "v2"}).status == 200

    response = api.put(f"{BASE}/{created['id']}", json_body={"name": "v3"}, headers={"If-Match": if_match})

    assert response.status == 409
    assert response.error_code == "conflict"
    assert response.json["error"]["details"] == {"expected_version": 1, "current_version": 2}
    current = api.get(f"{BASE}/{created['id']}").json
    assert current["name"] == "v2"
    assert current["version"] == 2


def test_stale_version_in_body_is_409(aws, api):
    created = api.create()
    api.put(f"{BASE}/{created['id']}", json_body={"name": "v2"})
    response = api.put(f"{BASE}/{created['id']}", json_body={"name": "v3", "version": 1})
    assert response.status == 409
    assert response.error_code == "conflict"


def test_if_match_star_means_any_version(aws, api):
    created = api.create()
    api.put(f"{BASE}/{created['id']}", json_body={"name": "v2"})
    response = api.put(f"{BASE}/{created['id']}", json_body={"name": "v3"}, headers={"If-Match": "*"})
    assert response.status == 200
    assert response.json["version"] == 3


@pytest.mark.parametrize("if_match", ["abc", "0", "-1", '"1', "1.0"])
def test_malformed_if_match_is_422(aws, api, if_match):
    created = api.create()
    response = api.put(f"{BASE}/{created['id']}", json_body={"name": "x"}, headers={"If-Match": if_match})
    assert response.status == 422
    assert response.error_code == "validation_error"


def test_if_match_and_body_version_must_agree(aws, api):
    created = api.create()
    response = api.put(
        f"{BASE}/{created['id']}", json_body={"name": "x", "version": 2}, headers={"If-Match": "1"}
    )
    assert response.status == 422


def test_stale_if_match_on_delete_is_409(aws, api):
    created = api.create()
    api.put(f"{BASE}/{created['id']}", json_body={"name": "v2"})
    response = api.delete(f"{BASE}/{created['id']}", headers={"If-Match": "1"})
    assert response.status == 409
    assert api.get(f"{BASE}/{created['id']}").status == 200
    assert api.delete(f"{BASE}/{created['id']}", headers={"If-Match": "2"}).status == 204


def test_write_between_read_and_update_is_a_conflict_not_a_lost_update(aws, api, monkeypatch):
    """A request that read version 1 must not overwrite a change made after its read."""
    created = api.create()
    repo_type = type(deps.repository())
    original_get = repo_type.get
    interleaved = []

    def get_then_let_another_writer_in(self, campaign_id):
        item = original_get(self, campaign_id)
        if not interleaved:
            interleaved.append(True)
            # another execution environment commits its update right after this read
            aws.dynamodb.update_item(
                TableName="campaigns-test",
                Key={"id": {"S": campaign_id}},
                UpdateExpression="SET description = :d, version = version + :one",
                ExpressionAttributeValues={":d": {"S": "other writer"}, ":one": {"N": "1"}},
            )
        return item

    monkeypatch.setattr(repo_type, "get", get_then_let_another_writer_in)
    response = api.put(f"{BASE}/{created['id']}", json_body={"name": "first writer"})
    monkeypatch.undo()

    assert response.status == 409
    assert response.error_code == "conflict"
    final = api.get(f"{BASE}/{created['id']}").json
    assert final["description"] == "other writer"
    assert final["name"] == created["name"]
    assert final["version"] == 2


def test_update_of_campaign_deleted_meanwhile_is_404(aws, api, monkeypatch):
    created = api.create()
    repo_type = type(deps.repository())
    original_get = repo_type.get

    def get_then_delete(self, campaign_id):
        item = original_get(self, campaign_id)
        aws.dynamodb.delete_item(TableName="campaigns-test", Key={"id": {"S": campaign_id}})
        return item

    monkeypatch.setattr(repo_type, "get", get_then_delete)
    response = api.put(f"{BASE}/{created['id']}", json_body={"name": "x"})
    monkeypatch.undo()

    assert response.status == 404
    assert aws.scan_all() == []


def make_item_writes_atomic(monkeypatch, client):
    """DynamoDB applies each conditional write atomically; moto's in-process backend does not
    lock between evaluating the condition and applying the write, so serialise single API
    calls the way the real service does. The two writers still race between calls."""
    lock = threading.Lock()
    for operation in ("get_item", "update_item", "put_item", "delete_item"):
        original = getattr(client, operation)

        def atomic(*args, _original=original, **kwargs):
            with lock:
                return _original(*args, **kwargs)

        monkeypatch.setattr(client, operation, atomic)


@pytest.mark.parametrize("round_", range(5))
def test_racing_updates_with_same_expected_version_exactly_one_wins(aws, api, monkeypatch, round_):
    created = api.create()
    repo = deps.repository()
    make_item_writes_atomic(monkeypatch, repo.client)
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def writer(name):
        barrier.wait()
        try:
            outcomes[name] = repo.update(
                created["id"], {"name": name}, expected_version=1, audit={"updated_by": name}
            )
        except Conflict as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=writer, args=(f"writer-{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    winners = [name for name, outcome in outcomes.items() if isinstance(outcome, dict)]
    losers = [name for name, outcome in outcomes.items() if isinstance(outcome, Conflict)]
    assert len(winners) == 1, outcomes
    assert len(losers) == 1, outcomes
    final = api.get(f"{BASE}/{created['id']}").json
    assert final["version"] == 2
    assert final["name"] == winners[0]
    assert final["updated_by"] == winners[0]
