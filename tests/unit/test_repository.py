"""The repository root, the git helper and the release tags, on real git checkouts in temporary directories."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from promoter.adapters.git import GitRepo, find_repository
from promoter.engine.build import build, resolve_release
from promoter.engine.preflight.decisions import example_tag
from promoter.engine.release import refuse_untagged
from promoter.errors import ConfigurationError, RefusedError, UsageError
from promoter.plan import default_plan_path

ROOT = Path(__file__).resolve().parents[2]
PATTERN = r"^v\d+\.\d+\.\d+(-[a-z0-9.]+)?$"


def _git(path: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A clone of this repository's service and plan, committed, the way a user's checkout looks."""
    path = tmp_path_factory.mktemp("clone") / "service"
    path.mkdir()
    shutil.copytree(ROOT / "campaigns_lambda", path / "campaigns_lambda",
                    ignore=shutil.ignore_patterns("__pycache__", ".terraform", "*.tfplan"))
    shutil.copytree(ROOT / "plans", path / "plans")
    _git(path, "init", "-q", "-b", "main")
    _git(path, "config", "user.email", "ci@example.com")
    _git(path, "config", "user.name", "CI")
    _git(path, "add", ".")
    _git(path, "commit", "-q", "-m", "service")
    return path


def test_the_root_is_the_top_level_of_the_checkout_you_stand_in(clone, monkeypatch):
    monkeypatch.chdir(clone / "campaigns_lambda" / "routes")
    assert find_repository() == clone.resolve()
    assert find_repository(clone / "plans") == clone.resolve()
    assert default_plan_path() == clone.resolve() / "plans" / "PROM-CAMP-001.yaml"


def test_promoter_repo_variable_names_the_root(clone, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROMOTER_REPO", str(clone))
    assert find_repository() == clone.resolve()


def test_outside_a_checkout_the_error_says_where_and_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError) as caught:
        find_repository()
    assert f"the working directory {tmp_path} is not inside a git checkout" in caught.value.message
    assert "--repo DIR" in caught.value.hint
    with pytest.raises(ConfigurationError, match="no plan: no repository") as plan_error:
        default_plan_path()
    assert "--plan FILE" in plan_error.value.hint
    with pytest.raises(ConfigurationError, match="no such directory"):
        find_repository(tmp_path / "missing")


def test_every_tag_on_head_is_seen(clone):
    _git(clone, "tag", "v1.0.0-sit")
    _git(clone, "tag", "v1.0.0-prod")
    try:
        assert GitRepo(clone).tags_at_head() == ["v1.0.0-prod", "v1.0.0-sit"]
        # the runbook tags one commit twice: either tag is HEAD's
        refuse_untagged("v1.0.0-sit", GitRepo(clone).tags_at_head(), PATTERN, "sit", "abc1234")
        refuse_untagged("v1.0.0-prod", GitRepo(clone).tags_at_head(), PATTERN, "prod", "abc1234")
        # without --release two candidates are ambiguous, never a silent pick
        with pytest.raises(UsageError, match=r"several release tags \(v1.0.0-prod, v1.0.0-sit\)"):
            resolve_release(None, clone, PATTERN)
        assert resolve_release("v1.0.0-sit", clone, PATTERN) == "v1.0.0-sit"
    finally:
        _git(clone, "tag", "-d", "v1.0.0-sit", "v1.0.0-prod")


def test_an_untagged_head_gets_a_hint_the_plan_accepts(clone):
    sha = GitRepo(clone).head_sha(short=True)
    assert resolve_release(None, clone, PATTERN) == f"dev-{sha}"
    with pytest.raises(RefusedError) as caught:
        refuse_untagged(f"dev-{sha}", [], PATTERN, "sit", sha)
    hint = caught.value.hint
    suggested = hint.split("git tag ", 1)[1].split(")", 1)[0]
    import re

    assert re.match(PATTERN, suggested), hint  # the suggested tag is one the plan then accepts
    assert "--allow-untagged" in hint
    with pytest.raises(RefusedError, match=r"'v1.1.0' is not a tag on HEAD .*HEAD has no tag"):
        refuse_untagged("v1.1.0", [], PATTERN, "sit", sha)


@pytest.mark.parametrize(("pattern", "expected"), [
    (PATTERN, "v1.1.0"),
    (r"^v\d+\.\d+\.\d+-(sit|prod)$", "v1.1.0-sit"),
    (r"^\d+\.\d+\.\d+$", "1.1.0"),
    (r"^never$", None),
])
def test_example_tags_match_their_pattern(pattern, expected):
    assert example_tag(pattern, "sit") == expected


def test_the_build_packages_the_checkout_not_the_installed_copy(clone, tmp_path):
    # GIVEN a change in the clone that the tool's own copy does not have
    marker = "# built from the clone\n"
    handler = clone / "campaigns_lambda" / "handler.py"
    original = handler.read_text()
    handler.write_text(original + marker)
    try:
        artifact = build(repo=clone, release="v9.0.0", target="local", out_dir=tmp_path, cache_dir=tmp_path / "c")
    finally:
        handler.write_text(original)
    import zipfile

    with zipfile.ZipFile(artifact.path) as zf:
        assert zf.read("campaigns_lambda/handler.py").decode().endswith(marker)
        assert any(n.startswith("pydantic/") for n in zf.namelist())  # with its dependencies


def test_a_tree_without_requirements_is_refused_loudly(clone, tmp_path):
    requirements = clone / "campaigns_lambda" / "requirements.txt"
    saved = requirements.read_text()
    requirements.unlink()
    try:
        with pytest.raises(ConfigurationError, match=r"requirements\.txt is missing: an artifact without the service's "
                           r"dependencies would fail to import on Lambda"):
            build(repo=clone, release="v9.0.0", target="local", out_dir=tmp_path / "out")
    finally:
        requirements.write_text(saved)
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_a_directory_that_is_not_the_service_is_refused(tmp_path):
    _git(tmp_path, "init", "-q")
    with pytest.raises(ConfigurationError, match="no campaigns_lambda package"):
        build(repo=tmp_path, release="v9.0.0", target="local", out_dir=tmp_path / "out")



def test_every_directory_of_a_checkout_shares_one_ledger(clone, monkeypatch, tmp_path):
    from promoter.engine.ledger import default_home

    monkeypatch.delenv("PROMOTER_HOME")
    monkeypatch.chdir(clone / "campaigns_lambda")
    assert default_home() == clone.resolve() / ".promoter"
    monkeypatch.chdir(tmp_path)  # outside any checkout: here
    assert default_home() == Path(".promoter")
    monkeypatch.setenv("PROMOTER_HOME", str(tmp_path / "elsewhere"))
    assert default_home() == tmp_path / "elsewhere"
