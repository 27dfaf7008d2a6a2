"""Fault injection controlled by ``CHAOS_ERROR_RATE`` and ``CHAOS_LATENCY_MS``.

Both are inert unless set. ``CHAOS_LATENCY_MS`` delays every request by that many
milliseconds; ``CHAOS_ERROR_RATE`` makes that share of requests fail with a 500 whose
error code is ``chaos_injected``. ``CHAOS_START_AFTER`` (default 0) lets each execution environment
serve that many requests normally before faults begin: a release that passes its smoke checks and then
fails under sustained traffic, the failure only canary analysis can catch. ``CHAOS_VIA`` (an alias name)
limits faults to invocations made through that alias (the qualifier of ``context.invoked_function_arn``): the
pre-traffic gate, which invokes the version directly, sees a healthy release, and the alias's users the fault
from their first request.
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


def invoked_alias(invoked_function_arn: str | None) -> str | None:
    """The qualifier of an invoked function ARN when it is an alias (not a version number, not $LATEST)."""
    parts = (invoked_function_arn or "").split(":")
    qualifier = parts[7] if len(parts) == 8 else None
    return None if not qualifier or qualifier.isdigit() or qualifier == "$LATEST" else qualifier


def apply_chaos(error_rate: float, latency_ms: int, start_after: int = 0, *, via: str | None = None,
                invoked_through: str | None = None) -> None:
    global _served
    if via is not None and invoked_through != via:
        return
    _served += 1
    if _served <= start_after:
        return
    if latency_ms > 0:
        sleep(latency_ms / 1000.0)
    if error_rate > 0.0 and random_fraction() < error_rate:
        raise ChaosInjected()


def chaos_middleware(app, next_middleware):
    settings = get_settings()
    through = None
    if settings.chaos_via is not None:
        context = getattr(app, "lambda_context", None)
        through = invoked_alias(getattr(context, "invoked_function_arn", None))
    apply_chaos(settings.chaos_error_rate, settings.chaos_latency_ms, settings.chaos_start_after,
                via=settings.chaos_via, invoked_through=through)
    return next_middleware(app)
