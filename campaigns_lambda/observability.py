"""Structured logging shared by the whole service."""

from __future__ import annotations

import sys

from aws_lambda_powertools import Logger

SERVICE_NAME = "campaigns-api"


class _CurrentStdout:
    """Stream that always writes to the *current* ``sys.stdout``.

    The Lambda runtime forwards stdout to CloudWatch; resolving the stream at write
    time keeps logs flowing even when ``sys.stdout`` is swapped after import.
    """

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


logger = Logger(service=SERVICE_NAME, stream=_CurrentStdout())
