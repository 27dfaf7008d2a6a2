"""The one git helper, and the one repository root every command works from.

The repository root is the checkout the operator stands in (``git rev-parse --show-toplevel`` of the working
directory), or ``--repo DIR`` / ``$PROMOTER_REPO``; never the directory promoter happens to be installed in. The
build packages that root's ``campaigns_lambda``, the plan defaults to that root's ``plans/``, terraform runs in
that root's ``campaigns_lambda/terraform``, and the release tag is read from that root's HEAD.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from promoter.errors import ConfigurationError

REPO_ENV_VAR = "PROMOTER_REPO"
GIT_TIMEOUT_SECONDS = 30


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_SECONDS, check=False)
    except FileNotFoundError:
        raise ConfigurationError("git is not installed or not on PATH", hint="install git") from None
    except subprocess.TimeoutExpired:
        raise ConfigurationError(f"git {' '.join(args)} took more than {GIT_TIMEOUT_SECONDS}s in {cwd}") from None


@dataclass(frozen=True)
class GitRepo:
    """A git checkout: ``run`` raises on failure, ``output`` answers None instead."""

    root: Path

    def run(self, *args: str) -> str:
        done = _git(self.root, *args)
        if done.returncode != 0:
            reason = (done.stderr or done.stdout).strip().splitlines()
            raise ConfigurationError(
                f"git {' '.join(args)} failed in {self.root}: {reason[0] if reason else f'exit {done.returncode}'}",
                hint="run inside the service's git checkout, or pass --repo DIR",
            )
        return done.stdout

    def output(self, *args: str) -> str | None:
        """Stripped stdout, or None when git fails or prints nothing."""
        try:
            done = _git(self.root, *args)
        except ConfigurationError:
            return None
        text = done.stdout.strip()
        return text if done.returncode == 0 and text else None

    def head_sha(self, *, short: bool = False) -> str | None:
        return self.output("rev-parse", *(["--short"] if short else []), "HEAD")

    def tags_at_head(self) -> list[str]:
        """Every tag that points at HEAD (a commit may carry ``v1.0.0-sit`` and ``v1.0.0-prod``), sorted."""
        return sorted((self.output("tag", "--points-at", "HEAD") or "").split())

    def branch(self) -> str:
        return self.run("rev-parse", "--abbrev-ref", "HEAD").strip()

    def dirty_paths(self) -> list[str]:
        return [line[3:] for line in self.run("status", "--porcelain").splitlines() if line.strip()]


def find_repository(explicit: str | os.PathLike[str] | None = None, *, cwd: Path | None = None) -> Path:
    """The repository root: ``explicit`` (``--repo``), else ``$PROMOTER_REPO``, else the working directory's
    git top level. Whichever is given, the answer is the top level of the git checkout that contains it."""
    given = explicit if explicit is not None else os.environ.get(REPO_ENV_VAR) or None
    start = Path(given).expanduser() if given is not None else (cwd or Path.cwd())
    if given is not None and not start.is_dir():
        raise ConfigurationError(f"--repo {start}: no such directory")
    done = _git(start.resolve(), "rev-parse", "--show-toplevel")
    top = done.stdout.strip()
    if done.returncode != 0 or not top:
        where = f"{start} is not inside a git checkout" if given is not None else \
            f"the working directory {start} is not inside a git checkout"
        raise ConfigurationError(
            f"no repository: {where}; promoter builds, plans and deploys the service from its checkout",
            hint="cd into the service's clone (git clone ...; cd ...), or pass --repo DIR or set PROMOTER_REPO",
        )
    return Path(top).resolve()
