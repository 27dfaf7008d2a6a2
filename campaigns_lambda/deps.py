"""Per-execution-environment singletons (settings, repository, template store).

They are built lazily and reused across warm invocations; ``reset`` drops them so a
changed environment is picked up, and ``use_clients`` injects pre-built boto3 clients.
"""

from __future__ import annotations

from typing import Any

from campaigns_lambda.config import Settings, get_settings, reset_settings
from campaigns_lambda.errors import ServiceUnavailable
from campaigns_lambda.observability import logger
from campaigns_lambda.repository import CampaignRepository, TemplateStore

_cache: dict[str, Any] = {}


def settings() -> Settings:
    return get_settings()


def repository() -> CampaignRepository:
    repo = _cache.get("repository")
    if repo is None:
        table = settings().table_name
        if not table:
            logger.error("campaigns table is not configured")
            raise ServiceUnavailable("the campaigns table is not configured")
        repo = CampaignRepository(table, client=_cache.get("dynamodb_client"))
        _cache["repository"] = repo
    return repo


def templates() -> TemplateStore:
    store = _cache.get("templates")
    if store is None:
        bucket = settings().templates_bucket
        if not bucket:
            logger.error("templates bucket is not configured")
            raise ServiceUnavailable("the templates bucket is not configured")
        store = TemplateStore(bucket, client=_cache.get("s3_client"))
        _cache["templates"] = store
    return store


def use_clients(dynamodb: Any = None, s3: Any = None) -> None:
    """Inject boto3 clients used by the stores built from now on."""
    reset()
    if dynamodb is not None:
        _cache["dynamodb_client"] = dynamodb
    if s3 is not None:
        _cache["s3_client"] = s3


def reset() -> None:
    """Forget cached settings and AWS clients (e.g. after the environment changed)."""
    _cache.clear()
    reset_settings()
