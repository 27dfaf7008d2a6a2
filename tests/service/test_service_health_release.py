"""Health endpoint and release tag resolution."""

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


def test_release_comes_from_the_function_configuration():
    assert resolve_release({"RELEASE_VERSION": " v2.0.0 "}) == "v2.0.0"
    assert resolve_release({"RELEASE_VERSION": "v3.1.0\nignored"}) == "v3.1.0"


def test_release_defaults_to_unreleased():
    assert resolve_release({}) == UNRELEASED == "unreleased"
    assert resolve_release({"RELEASE_VERSION": "  "}) == "unreleased"
    assert resolve_release({"RELEASE_VERSION": "v" * 200}) == "unreleased"


def test_health_reports_unreleased_without_the_variable(aws, api, monkeypatch):
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
