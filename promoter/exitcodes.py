"""Exit codes a CI job can act on. The only place they are defined."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    REFUSED = 1  # refused, check failed or nothing changed
    USAGE = 2  # bad command line
    ROLLED_BACK = 3  # the release failed and was rolled back cleanly
    ROLLBACK_FAILED = 4  # the rollback itself failed: manual action needed
    WAITING = 5  # a pipeline stopped at a manual step: waiting for an approval to be recorded
    INTERRUPTED = 130  # interrupted (Ctrl-C) and the alias was held where it was
