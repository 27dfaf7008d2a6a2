"""The authorization matrix over HTTP: every cell of :func:`~promoter.engine.security.routes.matrix_cells` sent to
the API, its status judged against the route's declared permission. Writes nothing: a path parameter names a
campaign that does not exist and a body is ``{}``, so a request that gets past authorization is answered 404 or
422, never stored."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from promoter.engine.security.report import TestResult
from promoter.engine.security.routes import NO_TOKEN, Cell, RouteTable, judge, matrix_cells
from promoter.engine.security.tokens import (
    TokenSource,
    expired_claims,
    foreign_audience_claims,
    parts,
    signed_by_another_key,
    unsigned,
)

CHECK = "authz"


def probe_path(cell: Cell, probe_id: str) -> str:
    path = cell.route.path
    for name in cell.route.parameters:
        path = path.replace("{" + name + "}", probe_id)
    return path


class TokenBook:
    """Each principal's token and its forgeries, made once per run; None with a reason when one cannot be made."""

    def __init__(self, source: TokenSource) -> None:
        self.source = source
        self._tokens: dict[tuple[str, str], tuple[str | None, str]] = {}

    def get(self, principal: str, variant: str) -> tuple[str | None, str]:
        key = (principal, variant)
        if key not in self._tokens:
            self._tokens[key] = self._make(principal, variant)
        return self._tokens[key]

    def _make(self, principal: str, variant: str) -> tuple[str | None, str]:
        if variant == NO_TOKEN:
            return None, ""
        real = self.source.token(principal)
        if variant == "valid":
            return real, ""
        if variant == "other-key":
            return signed_by_another_key(real), ""
        if variant == "alg-none":
            return unsigned(real), ""
        claims = parts(real)[1]
        changed = expired_claims(claims) if variant == "expired" else foreign_audience_claims(claims)
        minted = self.source.mint(changed)
        if minted is None:
            return None, (f"no {variant} token: only the issuer can sign one, and this environment's issuer "
                          "key is not available here")
        return minted, ""


def run_matrix(table: RouteTable, send: Callable[..., Any], tokens: TokenSource,
               progress: Callable[[str], None] = lambda _m: None) -> list[TestResult]:
    """``send(method, path, headers=..., json_body=...)`` returns an object with ``.status``."""
    book = TokenBook(tokens)
    probe_id = f"sec-probe-{uuid.uuid4().hex[:12]}"
    cells = matrix_cells(table)
    progress(f"authorization matrix: {len(cells)} cells ({len(table.routes)} routes x "
             f"{len(table.principals())} principals x token variants)")
    results = []
    for cell in cells:
        token, why_not = (None, "") if cell.variant == NO_TOKEN else book.get(cell.principal, cell.variant)
        if why_not:
            results.append(TestResult(CHECK, cell.name, "skipped", message=why_not, location=cell.route.key))
            continue
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        body = {} if cell.route.method in ("POST", "PUT", "PATCH") else None
        started = time.perf_counter()
        response = send(cell.route.method, probe_path(cell, probe_id), headers=headers, json_body=body)
        status = getattr(response, "status", None)
        ok = judge(cell.expectation, status)
        shown = "any status but 401/403" if cell.expectation == "served" else str(cell.expectation)
        message = "" if ok else f"expected {shown}, got {status}"
        results.append(TestResult(
            CHECK, cell.name, "passed" if ok else "failed", severity="high", message=message,
            location=cell.route.key, duration_s=time.perf_counter() - started,
            details={"expected": cell.expectation, "actual": status, "permission": cell.route.permission,
                     "principal": cell.principal, "token": cell.variant}))
    failed = [r for r in results if r.status == "failed"]
    progress(f"authorization matrix: {len(results) - len(failed)} of {len(results)} cells as declared"
             + (f"; NOT ENFORCED: {', '.join(r.name for r in failed[:6])}" if failed else ""))
    return results


def enforcement(results: list[TestResult]) -> dict[str, Any]:
    """The matrix as figures: cells judged, enforced (as declared), the percentage, and the failed cells by route."""
    judged = [r for r in results if r.check == CHECK and r.status != "skipped"]
    enforced = sum(r.status == "passed" for r in judged)
    by_route: dict[str, list[str]] = {}
    for r in judged:
        if r.status == "failed":
            by_route.setdefault(r.location or "?", []).append(r.name)
    return {"cells": len(judged), "enforced": enforced,
            "enforced_pct": round(100.0 * enforced / len(judged), 2) if judged else 0.0,
            "skipped": sum(r.check == CHECK and r.status == "skipped" for r in results),
            "failed_by_route": by_route}
