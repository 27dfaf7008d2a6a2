"""Health endpoint and release tag resolution."""

from campaigns_lambda import _release
from campaigns_lambda._release import UNRELEASED, resolve_release

HEALTH = "/v1.0/campaigns/health"


def test_health_reports_release_and_reachable_table_without_auth(aws, api):
    response = api.get(HEALTH, authenticated=False)

    assert response.status == 200
    assert response.header("Content-Type") == "application/json"
    body = response.json
    assert body["status"] == "ok"
    assert body["release"] == "v1.4.2-test"
    assert body["table"]["name"] == "campaigns-test"
    assert body["table"]["reachable"] is True
    assert isinstance(body["table"]["latency_ms"], (int, float))
    assert body["table"]["latency_ms"] >= 0


def test_health_probe_does_not_write_to_the_table(aws, api):
    assert api.get(HEALTH).status == 200
    assert aws.scan_all() == []


def test_health_is_degraded_when_table_is_missing(aws, api):
    aws.dynamodb.delete_table(TableName="campaigns-test")

    response = api.get(HEALTH, authenticated=False)

    assert response.status == 503
    body = response.json
    assert body["status"] == "degraded"
    assert body["release"] == "v1.4.2-test"
    assert body["table"]["reachable"] is False
    assert body["table"]["name"] == "campaigns-test"
    assert body["table"]["error"] == "ResourceNotFoundException"


def test_health_is_degraded_when_table_is_not_configured(aws, api, monkeypatch):
    monkeypatch.delenv("CAMPAIGNS_TABLE")

    response = api.get(HEALTH)

    assert response.status == 503
    assert response.json["status"] == "degraded"
    assert response.json["table"]["name"] is None


def test_health_rejects_other_methods_with_allow_header(aws, api):
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        response = api.request(method, HEALTH)
        assert response.status == 405, method
        assert response.error_code == "method_not_allowed"
        assert response.header("Allow") == "GET"


def test_release_from_environment_wins(tmp_path):
    release_file = tmp_path / "RELEASE"
    release_file.write_text("v9.9.9\n")

    assert resolve_release({"RELEASE_VERSION": " v2.0.0 "}, release_file) == "v2.0.0"


def test_release_from_file_when_env_missing_or_blank(tmp_path):
    release_file = tmp_path / "RELEASE"
    release_file.write_text("v3.1.0\n")

    assert resolve_release({}, release_file) == "v3.1.0"
    assert resolve_release({"RELEASE_VERSION": "  "}, release_file) == "v3.1.0"


def test_release_defaults_to_unreleased(tmp_path):
    assert resolve_release({}, tmp_path / "missing") == UNRELEASED == "unreleased"
    empty = tmp_path / "RELEASE"
    empty.write_text("\n")
    assert resolve_release({}, empty) == "unreleased"


def test_health_reports_release_file_written_by_build(aws, api, monkeypatch, tmp_path):
    release_file = tmp_path / "RELEASE"
    release_file.write_text("v5.0.1\n")
    monkeypatch.setattr(_release, "RELEASE_FILE", release_file)
    monkeypatch.delenv("RELEASE_VERSION")

    assert api.get(HEALTH).json["release"] == "v5.0.1"


def test_health_reports_unreleased_without_env_or_file(aws, api, monkeypatch, tmp_path):
    monkeypatch.setattr(_release, "RELEASE_FILE", tmp_path / "absent")
    monkeypatch.delenv("RELEASE_VERSION")

    assert api.get(HEALTH).json["release"] == "unreleased"


def test_service_builds_its_own_clients_when_none_are_injected(aws, api):
    from campaigns_lambda import deps, handler

    handler.reset_state()
    created = api.create(name="own clients")

    repo = deps.repository()
    assert repo.client is not aws.dynamodb
    assert repo.client.meta.region_name == "eu-west-1"
    assert api.get(f"/v1.0/campaigns/{created['id']}").status == 200
    assert api.get(HEALTH).status == 200
