"""Preflight checks on the source tree: branch, clean work tree, release tag on HEAD (git via subprocess)."""

from __future__ import annotations

from promoter.adapters.git import GitRepo
from promoter.engine.preflight import decisions
from promoter.engine.preflight.core import Finding, PreflightContext, failed, passed


def check_branch(ctx: PreflightContext) -> Finding:
    wanted = ctx.plan.code.branch
    git = GitRepo(ctx.repo)
    branch = git.branch()
    sha = git.run("rev-parse", "--short", "HEAD").strip()
    if branch == "HEAD":
        return failed(f"detached HEAD at {sha}, the plan promotes from {wanted}", f"git checkout {wanted}")
    if branch != wanted:
        return failed(f"on branch {branch} at {sha}, the plan promotes from {wanted}", f"git checkout {wanted}")
    return passed(f"on {branch} at {sha}")


def check_clean(ctx: PreflightContext) -> Finding:
    lines = GitRepo(ctx.repo).dirty_paths()
    if lines:
        shown = ", ".join(lines[:5]) + (f" and {len(lines) - 5} more" if len(lines) > 5 else "")
        return failed(f"{len(lines)} uncommitted or untracked paths: {shown}",
                      "commit, stash or remove them: a release is built from the committed tree only")
    return passed("work tree clean")


def check_tag(ctx: PreflightContext) -> Finding:
    GitRepo(ctx.repo).run("rev-parse", "HEAD")  # a checkout without commits is reported as such
    tags = GitRepo(ctx.repo).tags_at_head()
    release, problem = decisions.choose_release(tags, ctx.plan.code.tag_pattern, ctx.release)
    if problem:
        example = decisions.example_tag(ctx.plan.code.tag_pattern, ctx.env) or "a tag matching the plan's pattern"
        return failed(problem, f"tag the release on HEAD (git tag {example} && git push --tags), or pass --release")
    return passed(f"HEAD is tagged {release}")
