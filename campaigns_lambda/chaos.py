"""Fault injection controlled by ``CHAOS_ERROR_RATE`` and ``CHAOS_LATENCY_MS``.

Both are inert unless set. ``CHAOS_LATENCY_MS`` delays every request by that many
milliseconds; ``CHAOS_ERROR_RATE`` makes that share of requests fail with a 500 whose
error code is ``chaos_injected``. ``CHAOS_START_AFTER`` (default 0) lets each execution environment
serve that many requests normally before faults begin: a release that passes its smoke checks and then
fails under sustained traffic, the failure only canary analysis can catch.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from campaigns_lambda.config import get_settings
from campaigns_lambda.errors import ChaosInjected

# Indirections so the behaviour can be driven deterministically.
random_fraction: Callable[[], float] = random.random
sleep: Callable[[float], None] = time.sleep


_served = 0  # requests this execution environment has served; chaos may wait for a number of them


def apply_chaos(error_rate: float, latency_ms: int, start_after: int = 0) -> None:
    global _served
    _served += 1
    if _served <= start_after:
        return
    if latency_ms > 0:
        sleep(latency_ms / 1000.0)
    if error_rate > 0.0 and random_fraction() < error_rate:
        raise ChaosInjected()


def chaos_middleware(app, next_middleware):
    settings = get_settings()
    apply_chaos(settings.chaos_error_rate, settings.chaos_latency_ms, settings.chaos_start_after)
    return next_middleware(app)
