"""GitHub's REST API, for what a workflow run knows about itself: who approved its environment deployments.

A job gated by a GitHub environment with required reviewers starts only after a reviewer approved it; the run's
``/approvals`` endpoint names them. ``promoter ci approvals`` records those reviewers' approvals in the ledger
under their GitHub identities, so the four-eyes rule compares people, not the CI role every job assumes.

Reads ``GITHUB_API_URL``, ``GITHUB_REPOSITORY``, ``GITHUB_RUN_ID`` and ``GITHUB_SERVER_URL`` (set by the Actions
runner) and a token from ``GH_TOKEN`` or ``GITHUB_TOKEN`` (the job's ``github.token`` with ``actions: read``).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from promoter.errors import ConfigurationError, PromoterError


@dataclass(frozen=True)
class RunContext:
    """The workflow run this job belongs to."""

    api_url: str
    server_url: str
    repository: str
    run_id: str
    token: str

    @property
    def run_url(self) -> str:
        return f"{self.server_url}/{self.repository}/actions/runs/{self.run_id}"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> RunContext:
        env = os.environ if environ is None else environ
        missing = [n for n in ("GITHUB_REPOSITORY", "GITHUB_RUN_ID") if not env.get(n)]
        token = env.get("GH_TOKEN") or env.get("GITHUB_TOKEN")
        if not token:
            missing.append("GH_TOKEN (or GITHUB_TOKEN)")
        if missing:
            raise ConfigurationError(
                "not in a GitHub Actions run, or the job passes no token: " + ", ".join(missing) + " unset",
                hint="run it as a step of a workflow job with `env: GH_TOKEN: ${{ github.token }}` and "
                     "`permissions: actions: read`",
            )
        return cls(api_url=(env.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/"),
                   server_url=(env.get("GITHUB_SERVER_URL") or "https://github.com").rstrip("/"),
                   repository=env["GITHUB_REPOSITORY"], run_id=env["GITHUB_RUN_ID"], token=str(token))


@dataclass(frozen=True)
class EnvironmentApproval:
    """One reviewer's answer to a run's environment deployment request."""

    login: str
    state: str  # approved | rejected
    environments: tuple[str, ...]
    comment: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"login": self.login, "state": self.state, "environments": list(self.environments),
                "comment": self.comment}


class GitHubApi:
    """A minimal client: JSON over HTTPS with the job's token, bounded in time and retried on 5xx."""

    def __init__(self, run: RunContext, *, timeout: float = 10, attempts: int = 3) -> None:
        self.run = run
        self.timeout = timeout
        self.attempts = attempts

    def get(self, path: str) -> Any:
        request = urllib.request.Request(
            f"{self.run.api_url}{path}",
            headers={"Accept": "application/vnd.github+json", "Authorization": f"Bearer {self.run.token}",
                     "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "promoter"},
        )
        last: Exception | None = None
        for attempt in range(self.attempts):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                    return json.loads(reply.read() or b"null")
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    raise PromoterError(
                        f"GitHub answered {exc.code} to GET {path}: {exc.read()[:300].decode(errors='replace')}",
                        hint="the job needs `permissions: actions: read` and GH_TOKEN: ${{ github.token }}",
                    ) from None
                last = exc
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                last = exc
            time.sleep(min(2.0 ** attempt, 5.0))
        raise PromoterError(f"GitHub's API at {self.run.api_url} did not answer GET {path}: {last}",
                            hint="retry the job; GitHub's status page says whether the API is degraded")

    def run_approvals(self) -> list[EnvironmentApproval]:
        data = self.get(f"/repos/{self.run.repository}/actions/runs/{self.run.run_id}/approvals")
        if not isinstance(data, list):
            raise PromoterError(f"unexpected answer from GitHub's run approvals endpoint: {str(data)[:200]}")
        approvals = []
        for item in data:
            user = (item.get("user") or {}).get("login")
            if not user:
                continue
            envs = tuple(str(e.get("name")) for e in item.get("environments") or [] if e.get("name"))
            approvals.append(EnvironmentApproval(login=str(user), state=str(item.get("state")), environments=envs,
                                                 comment=str(item.get("comment") or "")))
        return approvals
