"""The integration suite runs against a deployed environment, never by default:

    pytest tests/integration/test_campaigns_api.py --env=sit [--api-url URL]

The API's URL is --api-url, else PROMOTER_API_URL, else https://<the plan's domain>. Bearer tokens per group come
from PROMOTER_TOKEN_ADMIN / _EDITOR / _VIEWER / _NONE, else, when a sandbox is running (PROMOTER_SANDBOX), from its
Cognito test users, else (admin only) PROMOTER_TOKEN or a Cognito test user (PROMOTER_SMOKE_USERNAME/_PASSWORD).
The table is read with the environment's AWS credentials (the plan's profile, or the environment's).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GROUPS = {"admin": "campaigns-admin", "editor": "campaigns-editor", "viewer": "campaigns-viewer", "none": "none"}


def pytest_addoption(parser):
    group = parser.getgroup("integration", "the integration suite against a deployed environment")
    group.addoption("--env", dest="integration_env", default=None, help="Environment of the plan to test (sit).")
    group.addoption("--api-url", dest="integration_api_url", default=None, help="API base URL.")


def pytest_collection_modifyitems(config, items):
    if _env(config):
        return
    skip = pytest.mark.skip(reason="the integration suite runs against an environment: "
                                   "pytest tests/integration/test_campaigns_api.py --env=sit")
    for item in items:
        if Path(str(item.path)).parent == Path(__file__).parent:
            item.add_marker(skip)


def _env(config) -> str | None:
    try:
        return config.getoption("integration_env")
    except ValueError:  # options of a conftest outside the initial ones are not registered
        return None


@pytest.fixture(scope="session")
def target(pytestconfig):
    from promoter.engine.smoke import api_url_for
    from promoter.plan import load_plan

    env = _env(pytestconfig)
    plan = load_plan(Path(os.environ.get("PROMOTER_PLAN") or ROOT / "plans" / "PROM-CAMP-001.yaml"))
    plan.environment(env)
    url = api_url_for(plan, env, pytestconfig.getoption("integration_api_url"))
    return {"env": env, "plan": plan, "url": url}


@pytest.fixture(scope="session")
def tokens(target):
    """group -> bearer token, or None where this environment gives none."""
    found: dict[str, str | None] = {}
    sandbox = None
    if os.environ.get("PROMOTER_SANDBOX"):
        from promoter.sandbox.manager import Sandbox

        sandbox = Sandbox.attach(os.environ["PROMOTER_SANDBOX"])
    for short, group in GROUPS.items():
        value = os.environ.get(f"PROMOTER_TOKEN_{short.upper()}")
        if not value and sandbox is not None:
            value = sandbox.token(group)
        found[short] = value
    if not found["admin"]:
        from promoter.adapters.aws import AwsSessionFactory
        from promoter.engine.smoke import resolve_token

        spec = target["plan"].environment(target["env"])
        factory = AwsSessionFactory(region=spec.region, plan_profile=spec.profile)
        found["admin"] = resolve_token(None, lambda: factory, target["plan"], target["env"])
    return found


@pytest.fixture(scope="session")
def table(target):
    """The environment's campaigns table (boto3 Table), or None without credentials for it."""
    from promoter.adapters.aws import AwsSessionFactory

    spec = target["plan"].environment(target["env"])
    try:
        session = AwsSessionFactory(region=spec.region, plan_profile=spec.profile).session()
        resource = session.resource("dynamodb")
        tbl = resource.Table(target["plan"].names(target["env"]).table)
        tbl.load()
        return tbl
    except Exception as exc:  # no credentials for the account: the check says so and is skipped
        pytest.skip(f"the table of {target['env']} cannot be read here: {exc}")
