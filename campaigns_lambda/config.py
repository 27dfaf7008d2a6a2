"""Configuration read from environment variables."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from functools import lru_cache

from campaigns_lambda._release import resolve_release
from campaigns_lambda.observability import logger

TABLE_ENV_VAR = "CAMPAIGNS_TABLE"
BUCKET_ENV_VAR = "TEMPLATES_BUCKET"
CHAOS_ERROR_RATE_ENV_VAR = "CHAOS_ERROR_RATE"
CHAOS_LATENCY_ENV_VAR = "CHAOS_LATENCY_MS"
CHAOS_START_AFTER_ENV_VAR = "CHAOS_START_AFTER"
CHAOS_VIA_ENV_VAR = "CHAOS_VIA"

MAX_CHAOS_LATENCY_MS = 60_000
_ALIAS_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")  # Lambda's alias name pattern


@dataclass(frozen=True)
class Settings:
    table_name: str | None
    templates_bucket: str | None
    release: str
    chaos_error_rate: float = 0.0
    chaos_latency_ms: int = 0
    chaos_start_after: int = 0
    chaos_via: str | None = None


def _blank_to_none(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def parse_error_rate(raw: str | None) -> float:
    """Parse ``CHAOS_ERROR_RATE``: a number in [0, 1]. Unset or invalid means 0 (inert)."""
    raw = _blank_to_none(raw)
    if raw is None:
        return 0.0
    try:
        rate = float(raw)
    except ValueError:
        rate = math.nan
    if not (0.0 <= rate <= 1.0):  # also rejects NaN
        logger.warning("ignoring invalid chaos setting", extra={"setting": CHAOS_ERROR_RATE_ENV_VAR})
        return 0.0
    return rate


def parse_latency_ms(raw: str | None) -> int:
    """Parse ``CHAOS_LATENCY_MS``: whole milliseconds in [0, 60000]. Unset or invalid means 0."""
    raw = _blank_to_none(raw)
    if raw is None:
        return 0
    try:
        latency = int(raw)
    except ValueError:
        latency = -1
    if not (0 <= latency <= MAX_CHAOS_LATENCY_MS):
        logger.warning("ignoring invalid chaos setting", extra={"setting": CHAOS_LATENCY_ENV_VAR})
        return 0
    return latency


def parse_start_after(raw: str | None) -> int:
    """Parse ``CHAOS_START_AFTER``: how many requests an execution environment serves before faults begin."""
    raw = _blank_to_none(raw)
    if raw is None:
        return 0
    try:
        count = int(raw)
    except ValueError:
        count = -1
    if count < 0:
        logger.warning("ignoring invalid chaos setting", extra={"setting": CHAOS_START_AFTER_ENV_VAR})
        return 0
    return count


def parse_via(raw: str | None) -> str | None:
    """Parse ``CHAOS_VIA``: an alias name; faults then apply only to invocations through that alias."""
    raw = _blank_to_none(raw)
    if raw is None:
        return None
    if not _ALIAS_NAME.fullmatch(raw) or raw.isdigit():
        logger.warning("ignoring invalid chaos setting", extra={"setting": CHAOS_VIA_ENV_VAR})
        return None
    return raw


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    return Settings(
        table_name=_blank_to_none(env.get(TABLE_ENV_VAR)),
        templates_bucket=_blank_to_none(env.get(BUCKET_ENV_VAR)),
        release=resolve_release(dict(env)),
        chaos_error_rate=parse_error_rate(env.get(CHAOS_ERROR_RATE_ENV_VAR)),
        chaos_latency_ms=parse_latency_ms(env.get(CHAOS_LATENCY_ENV_VAR)),
        chaos_start_after=parse_start_after(env.get(CHAOS_START_AFTER_ENV_VAR)),
        chaos_via=parse_via(env.get(CHAOS_VIA_ENV_VAR)),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings for this execution environment, read once per cold start."""
    return load_settings()


def reset_settings() -> None:
    get_settings.cache_clear()
