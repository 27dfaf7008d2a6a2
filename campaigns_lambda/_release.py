"""Release tag of the running code: the ``RELEASE_VERSION`` variable of the function's configuration (set by
``promoter deploy`` on every published version), else ``"unreleased"``.

The tag is configuration, not code: the artifact's bytes are the same for every tag of a commit, so the one
artifact SIT proved is the one PROD runs.
"""

from __future__ import annotations

import os

UNRELEASED = "unreleased"
RELEASE_ENV_VAR = "RELEASE_VERSION"

_MAX_TAG_LENGTH = 128


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    lines = value.strip().splitlines()
    if not lines:
        return None
    tag = lines[0].strip()
    if not tag or len(tag) > _MAX_TAG_LENGTH:
        return None
    return tag


def resolve_release(environ: dict[str, str] | None = None) -> str:
    """Return the release tag from the environment, or ``unreleased``."""
    env = os.environ if environ is None else environ
    return _clean(env.get(RELEASE_ENV_VAR)) or UNRELEASED
