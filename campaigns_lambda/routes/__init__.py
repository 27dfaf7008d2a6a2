"""HTTP routes: one Router per resource, all mounted under ``/v1.0/campaigns``."""

from __future__ import annotations

import re

PREFIX = "/v1.0/campaigns"

# Known resource paths (relative to PREFIX) and the methods each one serves; used to
# answer 405 with an Allow header for a known path requested with another method.
_KNOWN_PATHS: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    (re.compile(r"/health"), ("GET",)),
    (re.compile(r""), ("GET", "POST")),
    (re.compile(r"/[^/]+"), ("GET", "PUT", "DELETE")),
)


def allowed_methods(path: str) -> list[str] | None:
    """Methods served on ``path``, or None when the path is not a known resource."""
    if not isinstance(path, str) or not path.startswith(PREFIX):
        return None
    rest = path[len(PREFIX) :].rstrip("/")
    for pattern, methods in _KNOWN_PATHS:
        if pattern.fullmatch(rest):
            return list(methods)
    return None
