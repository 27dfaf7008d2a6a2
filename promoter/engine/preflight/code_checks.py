"""Preflight checks on the source tree: branch, clean work tree, release tag on HEAD (git via subprocess)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from promoter.engine.preflight import decisions
from promoter.engine.preflight.core import Finding, PreflightContext, failed, passed
from promoter.errors import ConfigurationError

GIT_TIMEOUT_SECONDS = 30


def git(repo: Path, *args: str) -> str:
    """Run ``git -C repo args`` and return its stdout; a missing git or a non-repository is a ConfigurationError."""
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError:
        raise ConfigurationError("git is not installed or not on PATH", hint="install git") from None
    except subprocess.TimeoutExpired:
        raise ConfigurationError(f"git {' '.join(args)} took more than {GIT_TIMEOUT_SECONDS}s in {repo}") from None
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        raise ConfigurationError(
            f"git {' '.join(args)} failed in {repo}: {reason[0] if reason else f'exit {done.returncode}'}",
            hint="run preflight inside the service's git checkout, or pass --repo DIR",
        )
    return done.stdout


def check_branch(ctx: PreflightContext) -> Finding:
    wanted = ctx.plan.code.branch
    branch = git(ctx.repo, "rev-parse", "--abbrev-ref", "HEAD").strip()
    sha = git(ctx.repo, "rev-parse", "--short", "HEAD").strip()
    if branch == "HEAD":
        return failed(f"detached HEAD at {sha}, the plan promotes from {wanted}", f"git checkout {wanted}")
    if branch != wanted:
        return failed(f"on branch {branch} at {sha}, the plan promotes from {wanted}", f"git checkout {wanted}")
    return passed(f"on {branch} at {sha}")


def check_clean(ctx: PreflightContext) -> Finding:
    lines = [line for line in git(ctx.repo, "status", "--porcelain").splitlines() if line.strip()]
    if lines:
        shown = ", ".join(line[3:] for line in lines[:5]) + (f" and {len(lines) - 5} more" if len(lines) > 5 else "")
        return failed(f"{len(lines)} uncommitted or untracked paths: {shown}",
                      "commit, stash or remove them: a release is built from the committed tree only")
    return passed("work tree clean")


def check_tag(ctx: PreflightContext) -> Finding:
    tags = git(ctx.repo, "tag", "--points-at", "HEAD").split()
    release, problem = decisions.choose_release(tags, ctx.plan.code.tag_pattern, ctx.release)
    if problem:
        return failed(problem, "tag the release on HEAD (git tag vX.Y.Z && git push --tags), or pass --release")
    return passed(f"HEAD is tagged {release}")
