"""Release tag of the running code.

Resolution order:
1. the ``RELEASE_VERSION`` environment variable (when set and non-blank);
2. the first line of the ``RELEASE`` file next to this module, written into the
   deployment artifact by the build;
3. ``"unreleased"``.
"""

from __future__ import annotations

import os
from pathlib import Path

UNRELEASED = "unreleased"
RELEASE_ENV_VAR = "RELEASE_VERSION"
RELEASE_FILE = Path(__file__).with_name("RELEASE")

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


def resolve_release(environ: dict[str, str] | None = None, release_file: Path | None = None) -> str:
    """Return the release tag following the documented resolution order."""
    env = os.environ if environ is None else environ
    from_env = _clean(env.get(RELEASE_ENV_VAR))
    if from_env:
        return from_env
    path = RELEASE_FILE if release_file is None else release_file
    try:
        from_file = _clean(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        from_file = None
    return from_file or UNRELEASED
