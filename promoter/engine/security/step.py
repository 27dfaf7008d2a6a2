"""The security checks as a pipeline step: :class:`SecurityStep` (the Operation protocol of the pipeline)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from promoter.engine.pipeline import Probe, StepContext, StepOutcome


class SecurityStep:
    """Runs :func:`~promoter.engine.security.core.run_security` against the environment's API.

    The URL comes from the wiring's ``api_urls`` (else the plan's domain), the tokens from ``tokens_for(env)``
    when given (a sandbox's :class:`~promoter.sandbox.tokens.SandboxTokens`), else from the plan's
    ``security.test_users`` in the environment's Cognito pool. ``ctx.settings.security_max_examples`` bounds the
    fuzzing. The reports are the outcome's files; a high or critical finding fails the step.
    """

    def __init__(self, wiring: Any, tokens_for: Callable[[str], Any] | None = None) -> None:
        self.w = wiring
        self.tokens_for = tokens_for or getattr(wiring, "security_tokens", None)

    def _url(self, ctx: StepContext) -> str:
        from promoter.engine.smoke import api_url_for

        if ctx.env in self.w.api_urls:
            return self.w.api_urls[ctx.env]
        override = None if ctx.env == ctx.settings.env else f"https://{ctx.plan.environment(ctx.env).domain}"
        return api_url_for(ctx.plan, ctx.env, override)

    def probe(self, ctx: StepContext) -> Probe:
        return Probe("run", f"security checks against {self._url(ctx)}: authorization matrix, injection, "
                            "fuzzing, transport and storage")

    def _tokens(self, ctx: StepContext) -> Any:
        if self.tokens_for is not None:
            return self.tokens_for(ctx.env)
        from promoter.engine.security.tokens import CognitoTokens

        return CognitoTokens(self.w.aws_for(ctx.env), ctx.plan, ctx.env, ctx.plan.security.test_users)

    def run(self, ctx: StepContext) -> StepOutcome:
        from promoter.engine.security.core import REPORT_FILES, SecuritySettings, run_security

        url = self._url(ctx)
        with tempfile.TemporaryDirectory(prefix="promoter-security-") as scratch:
            settings = SecuritySettings(plan=ctx.plan, env=ctx.env, repo=ctx.settings.repo or Path.cwd(),
                                        api_url=url, report_dir=Path(scratch),
                                        max_examples=getattr(ctx.settings, "security_max_examples", None))
            report = run_security(settings, self._tokens(ctx), self.w.aws_for(ctx.env),
                                  progress=ctx.note)
            files: dict[str, Any] = {name: (Path(scratch) / name).read_text(encoding="utf-8")
                                     for name in REPORT_FILES}
        data = report.to_dict()
        ctx.ledger.append(ctx.env, "security", ok=report.ok, verdict=data["verdict"], api_url=url,
                          counts=data["counts"], findings=data["findings"], pipeline_id=ctx.pipeline_id,
                          artifact_sha256=ctx.artifact.sha256, release=ctx.artifact.release)
        outputs = {"ok": report.ok, "counts": data["counts"], "findings": data["findings"], "api_url": url,
                   "authorization": data.get("authorization")}
        if not report.ok:
            named = ", ".join(r.name for r in report.blocking[:12])
            more = len(report.blocking) - 12
            return StepOutcome("failed", f"{len(report.blocking)} high findings: {named}"
                               + (f" and {more} more" if more > 0 else ""), outputs, files=files)
        return StepOutcome("passed", report.summary(), outputs, files=files)
