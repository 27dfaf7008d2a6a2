"""The authorization matrix on plain data: expectations from declared permissions, the token forgeries, and a run
against an in-memory API that enforces (or, for one route, forgets) the declared permissions."""

from __future__ import annotations

import time
from types import SimpleNamespace

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from promoter.engine.security.matrix import enforcement, probe_path, run_matrix
from promoter.engine.security.routes import (
    ANONYMOUS,
    NO_GROUP,
    NO_TOKEN,
    VARIANTS,
    Route,
    RouteTable,
    expected,
    judge,
    matrix_cells,
    table_from_dict,
)
from promoter.engine.security.tokens import (
    FOREIGN_AUDIENCE,
    expired_claims,
    foreign_audience_claims,
    parts,
    signed_by_another_key,
    unsigned,
)

TABLE = table_from_dict({
    "routes": [
        {"method": "GET", "path": "/v1.0/campaigns/health", "permission": None},
        {"method": "GET", "path": "/v1.0/campaigns", "permission": "read"},
        {"method": "POST", "path": "/v1.0/campaigns", "permission": "create"},
        {"method": "DELETE", "path": "/v1.0/campaigns/<campaign_id>", "permission": "delete"},
    ],
    "groups": {"viewer": ["read"], "editor": ["read", "create"], "admin": ["read", "create", "delete"]},
})
DELETE = TABLE.routes[3]
ISSUER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
AUDIENCE = "portal-client"


def test_paths_are_read_in_openapi_style_and_principals_include_the_user_in_no_group():
    assert DELETE.path == "/v1.0/campaigns/{campaign_id}" and DELETE.parameters == ["campaign_id"]
    assert TABLE.principals() == ["admin", "editor", "viewer", NO_GROUP]


@pytest.mark.parametrize(("principal", "variant", "want"), [
    ("admin", "valid", "served"),
    ("editor", "valid", 403),
    ("viewer", "valid", 403),
    (NO_GROUP, "valid", 403),
    (ANONYMOUS, NO_TOKEN, 401),
    *[("admin", v, 401) for v in VARIANTS if v != "valid"],
])
def test_the_expectation_comes_from_the_declared_permission(principal, variant, want):
    assert expected(DELETE, TABLE, principal, variant) == want


def test_a_public_route_is_served_to_anyone_whatever_the_token():
    health = TABLE.routes[0]
    assert {expected(health, TABLE, p, v) for p in TABLE.principals() for v in (*VARIANTS, NO_TOKEN)} == {"served"}


def test_judging_a_cell():
    assert judge("served", 404) and judge("served", 422) and judge("served", 200)
    assert not judge("served", 403) and not judge("served", 401) and not judge("served", 500)
    assert judge(403, 403) and not judge(403, 204) and not judge(401, 403) and not judge(401, None)


def test_every_route_principal_and_variant_is_a_cell():
    cells = matrix_cells(TABLE)
    assert len(cells) == len(TABLE.routes) * (1 + len(TABLE.principals()) * len(VARIANTS))
    names = {c.name for c in cells}
    assert "DELETE /v1.0/campaigns/{campaign_id} [viewer, valid]" in names
    assert "GET /v1.0/campaigns [anonymous, no-token]" in names
    assert probe_path(cells[-1], "probe-1") == "/v1.0/campaigns/probe-1"


def _issue(groups: list[str], sub: str = "user-1") -> str:
    now = int(time.time())
    claims = {"sub": sub, "aud": AUDIENCE, "iss": "https://issuer", "token_use": "id", "iat": now,
              "exp": now + 3600, "cognito:groups": groups}
    return jwt.encode(claims, ISSUER_KEY, algorithm="RS256", headers={"kid": "k1"})


def test_forgeries_keep_the_claims_and_lose_the_signature():
    real = _issue(["admin"])
    other = signed_by_another_key(real)
    assert parts(other) == parts(real)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(other, ISSUER_KEY.public_key(), algorithms=["RS256"], audience=AUDIENCE)
    none = unsigned(real)
    assert none.endswith(".") and parts(none)[0]["alg"] == "none" and parts(none)[1] == parts(real)[1]
    claims = parts(real)[1]
    assert expired_claims(claims, now=10_000)["exp"] == 10_000 - 3600
    assert foreign_audience_claims(claims)["aud"] == FOREIGN_AUDIENCE


class Issuer:
    """A token source whose issuer key is at hand (as a sandbox's pool), or not (``can_mint=False``)."""

    def __init__(self, can_mint: bool = True) -> None:
        self.can_mint = can_mint

    def token(self, principal: str) -> str:
        return _issue([] if principal == NO_GROUP else [principal], sub=f"user-{principal}")

    def mint(self, claims):
        return jwt.encode(dict(claims), ISSUER_KEY, algorithm="RS256", headers={"kid": "k1"}) if self.can_mint \
            else None


class InMemoryApi:
    """Answers as API Gateway's authorizer plus the service would: 401 for a token that does not verify, 403
    for a group without the route's permission; ``forget`` lists routes whose permission check is missing."""

    def __init__(self, table: RouteTable, forget: frozenset[str] = frozenset()) -> None:
        self.table, self.forget, self.requests = table, forget, 0

    def __call__(self, method, path, *, headers=None, json_body=None):
        self.requests += 1
        route = next(r for r in self.table.routes if r.method == method and
                     (r.path == path or ("{" in r.path and path.startswith(r.path.split("{")[0]))))
        if route.permission is None:
            return SimpleNamespace(status=200)
        token = (headers or {}).get("Authorization", "").removeprefix("Bearer ")
        try:
            claims = jwt.decode(token, ISSUER_KEY.public_key(), algorithms=["RS256"], audience=AUDIENCE)
        except jwt.PyJWTError:
            return SimpleNamespace(status=401)
        if route.key in self.forget:
            return SimpleNamespace(status=404)
        allowed = any(route.permission in self.table.groups.get(g, ()) for g in claims["cognito:groups"])
        return SimpleNamespace(status=(422 if json_body is not None else 404) if allowed else 403)


def test_an_api_that_enforces_every_declared_permission_passes_every_cell():
    api = InMemoryApi(TABLE)
    results = run_matrix(TABLE, api, Issuer())
    assert {r.status for r in results} == {"passed"}
    assert api.requests == len(matrix_cells(TABLE))
    figures = enforcement(results)
    assert figures["enforced_pct"] == 100.0 and figures["failed_by_route"] == {}


def test_a_route_whose_check_is_missing_fails_exactly_its_cells_that_should_be_refused():
    results = run_matrix(TABLE, InMemoryApi(TABLE, forget=frozenset({DELETE.key})), Issuer())
    failed = {r.name for r in results if r.status == "failed"}
    assert failed == {f"{DELETE.key} [{p}, valid]" for p in ("editor", "viewer", NO_GROUP)}
    sample = next(r for r in results if r.name == f"{DELETE.key} [viewer, valid]")
    assert sample.message == "expected 403, got 404" and sample.severity == "high"
    figures = enforcement(results)
    assert figures["enforced_pct"] < 100.0 and list(figures["failed_by_route"]) == [DELETE.key]


def test_cells_that_need_the_issuers_key_are_skipped_with_the_reason_where_it_is_not_at_hand():
    results = run_matrix(TABLE, InMemoryApi(TABLE), Issuer(can_mint=False))
    skipped = [r for r in results if r.status == "skipped"]
    assert {r.details.get("token") or r.name.rsplit(", ", 1)[1].rstrip("]") for r in skipped} == {
        "expired", "other-audience"}
    assert all("issuer" in r.message for r in skipped)
    assert len(skipped) == len(TABLE.routes) * len(TABLE.principals()) * 2
    assert not [r for r in results if r.status == "failed"]


def test_the_route_table_is_read_from_the_service_in_the_checkout():
    from pathlib import Path

    from promoter.engine.security.routes import load_route_table

    table = load_route_table(Path(__file__).resolve().parents[2], "campaigns_lambda.handler.lambda_handler")
    declared = {r.key: r.permission for r in table.routes}
    assert declared["DELETE /v1.0/campaigns/{campaign_id}"] == "delete"
    assert declared["POST /v1.0/campaigns"] == "create"
    assert declared["GET /v1.0/campaigns/health"] is None
    assert table.groups["campaigns-editor"] == frozenset({"read", "create", "update"})
    assert isinstance(table.routes[0], Route)


def test_the_plan_has_a_test_user_for_every_group_of_the_service_and_one_in_no_group():
    from pathlib import Path

    from promoter.engine.security.routes import load_route_table
    from promoter.plan import load_plan

    table = load_route_table(Path(__file__).resolve().parents[2], "campaigns_lambda.handler.lambda_handler")
    assert set(load_plan().security.test_users) == set(table.principals())


def test_the_security_step_probes_without_sending_anything():
    from types import SimpleNamespace

    from promoter.engine.security import SecurityStep

    wiring = SimpleNamespace(api_urls={"sit": "http://127.0.0.1:1"}, aws_for=lambda _env: None)
    ctx = SimpleNamespace(env="sit", settings=SimpleNamespace(env="sit"))
    probe = SecurityStep(wiring).probe(ctx)
    assert probe.would == "run" and "http://127.0.0.1:1" in probe.detail and "authorization matrix" in probe.detail
