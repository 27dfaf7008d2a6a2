"""The GitHub Actions workflows (.github/workflows) are checked as strictly as the code: actionlint and zizmor
find nothing; every `promoter ...` command line in them is a real command with real options and a valid
environment; and the conventions hold (pinned actions, OIDC only, one concurrency group per environment that never
cancels a running deploy, minimal permissions, a timeout on every job, no account id of their own)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from promoter.plan import load_plan

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
NAMES = ["deploy-dev", "promote-sit", "promote-prod", "terraform-validate", "rollback-prod", "promote-env"]
PLAN = load_plan(ROOT / "plans" / "PROM-CAMP-001.yaml")


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    assert found, f"{name} is not installed: pip install -e '.[dev]' installs it"
    return found


def _load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / f"{name}.yml").read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


WORKFLOW_DATA = {name: _load(name) for name in NAMES}


def test_the_runbooks_workflows_are_all_there():
    assert sorted(p.stem for p in WORKFLOWS.glob("*.yml")) == sorted(NAMES)


def test_actionlint_finds_nothing():
    result = subprocess.run([_tool("actionlint"), "-no-color"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_finds_nothing():
    result = subprocess.run([_tool("zizmor"), "--offline", "--no-progress", str(WORKFLOWS)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout + result.stderr


# -- every promoter command line is a real one -------------------------------------------------------------------
def _runs(data: dict[str, Any]):
    """(job id, job, step) for every `run:` step."""
    for job_id, job in data["jobs"].items():
        for step in job.get("steps") or []:
            if "run" in step:
                yield job_id, job, step


def _promoter_lines(script: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", script)
    return [line.strip() for line in joined.splitlines() if re.match(r"\s*promoter\s", line)]


def _variables(data: dict[str, Any], job: dict[str, Any], step: dict[str, Any]) -> dict[str, str]:
    return {**(data.get("env") or {}), **(job.get("env") or {}), **(step.get("env") or {})}


def _env_values(expression: str, data: dict[str, Any], job: dict[str, Any]) -> list[str]:
    """The environments an `--env "$VAR"` can take: a literal, a matrix, or the callers' `env:` input."""
    if "${{" not in expression:
        return [expression]
    if "matrix.env" in expression:
        return list(job["strategy"]["matrix"]["env"])
    if "inputs.env" in expression:
        return [j["with"]["env"] for d in WORKFLOW_DATA.values() for j in d["jobs"].values()
                if str(j.get("uses", "")).endswith("/promote-env.yml")]
    raise AssertionError(f"cannot tell which environment {expression!r} names")


def _words(line: str, variables: dict[str, str]) -> list[str]:
    """The command line's words as the shell would pass them, with each variable standing for what it holds."""
    # ${VAR:+words}: the words, as when VAR is set
    line = re.sub(r"\$\{(\w+):\+([^}]*)\}", lambda m: m.group(2), line)
    line = line.split(">")[0].split("|")[0]
    lexer = shlex.shlex(line, posix=False)
    lexer.whitespace_split = True
    words = []
    for word in lexer:
        bare = re.fullmatch(r"\$(\w+)", word)
        if bare and bare.group(1) in variables:  # an unquoted variable that holds a flag or nothing
            words += re.findall(r"'(--[a-z-]+)'", str(variables[bare.group(1)]))
        else:
            words.append(word.strip("\"'"))
    return words


def _command_lines():
    for name, data in WORKFLOW_DATA.items():
        for job_id, job, step in _runs(data):
            for line in _promoter_lines(step["run"]):
                yield pytest.param(name, job_id, job, step, line, id=f"{name}:{job_id}:{line[:60]}")


COMMAND_LINES = list(_command_lines())


def test_the_workflows_call_promoter_for_every_step():
    assert len(COMMAND_LINES) >= 12
    called = {line.split()[1] for *_rest, line in (p.values for p in COMMAND_LINES)}
    assert {"promote", "rollback", "infra", "ci", "status"} <= called


@pytest.mark.parametrize(("name", "job_id", "job", "step", "line"), COMMAND_LINES)
def test_each_promoter_command_line_is_valid(name, job_id, job, step, line):
    import typer.main

    from promoter.cli.app import app

    data = WORKFLOW_DATA[name]
    variables = _variables(data, job, step)
    words = _words(line, variables)
    root = typer.main.get_command(app)
    ctx = root.context_class(root, info_name="promoter")
    command: Any = root
    args = words[1:]
    while hasattr(command, "list_commands"):  # a group: the next word names its command
        sub = command.get_command(ctx, args[0])
        assert sub is not None, f"{line}: no command {args[0]!r}"
        command, args = sub, args[1:]
    known = {opt for p in command.params for opt in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}
    for arg in args:
        if arg.startswith("--"):
            assert arg.split("=")[0] in known, f"{line}: {command.name} has no option {arg}"
    # the parser itself accepts the line (missing values, wrong types, unknown options all fail here)
    command.make_context(command.name, [a if not a.startswith("$") else "v1.0.0" for a in args], parent=ctx)
    if "--env" in args:
        value = args[args.index("--env") + 1]
        var = re.fullmatch(r"\$(\w+)", value)
        envs = _env_values(str(variables[var.group(1)]), data, job) if var else [value]
        for env in envs:
            assert env in PLAN.environments, f"{line}: environment {env!r} is not in the plan"


# -- conventions ---------------------------------------------------------------------------------------------------
def _steps(data):
    for job in data["jobs"].values():
        yield from job.get("steps") or []


@pytest.mark.parametrize("name", NAMES)
def test_actions_are_pinned_to_full_commit_shas(name):
    for step in _steps(WORKFLOW_DATA[name]):
        uses = step.get("uses")
        if uses:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", uses), f"{name}: {uses} is not pinned to a SHA"


@pytest.mark.parametrize("name", NAMES)
def test_every_job_has_a_timeout_and_its_own_minimal_permissions(name):
    data = WORKFLOW_DATA[name]
    assert data.get("permissions") == {}, f"{name}: the workflow grants nothing by default"
    for job_id, job in data["jobs"].items():
        if "uses" in job:  # a call of the reusable workflow: its jobs carry the timeouts
            assert set(job["permissions"]) <= {"contents", "id-token", "actions"}
            continue
        assert isinstance(job.get("timeout-minutes"), int), f"{name}.{job_id} has no timeout"
        perms = job.get("permissions")
        assert isinstance(perms, dict) and perms.get("contents") == "read", f"{name}.{job_id}: {perms}"
        assert all(v in {"read", "write"} for v in perms.values())
        assert not {k for k, v in perms.items() if v == "write"} - {"id-token"}, f"{name}.{job_id} writes {perms}"


@pytest.mark.parametrize("name", NAMES)
def test_aws_credentials_come_only_from_oidc_roles_the_plan_names(name):
    text = (WORKFLOWS / f"{name}.yml").read_text()
    assert not re.search(r"\b\d{12}\b", text), f"{name} holds an account id"
    assert "aws-access-key-id" not in text and "AWS_SECRET_ACCESS_KEY" not in text
    for job_id, job in WORKFLOW_DATA[name]["jobs"].items():
        creds = [s for s in job.get("steps") or [] if "configure-aws-credentials" in str(s.get("uses"))]
        if creds:
            assert job["permissions"].get("id-token") == "write", f"{name}.{job_id}: OIDC needs id-token: write"
        for step in creds:
            w = step["with"]
            assert w["role-to-assume"].startswith("${{ needs.plan.outputs."), w
            assert w["allowed-account-ids"].startswith("${{ needs.plan.outputs."), w
            assert w["aws-profile"].startswith("${{ needs.plan.outputs."), w  # the plan's profile per account


@pytest.mark.parametrize("name", NAMES)
def test_jobs_that_touch_an_account_share_its_concurrency_group_and_never_cancel(name):
    for job_id, job in WORKFLOW_DATA[name]["jobs"].items():
        if job.get("permissions", {}).get("id-token") != "write" or "uses" in job:
            continue
        group = job.get("concurrency") or {}
        assert group.get("group") == "${{ needs.plan.outputs.concurrency_group }}", f"{name}.{job_id}"
        assert group.get("cancel-in-progress") is False, f"{name}.{job_id} could cancel a deploy mid-shift"


def test_user_input_reaches_scripts_only_through_environment_variables():
    for name, data in WORKFLOW_DATA.items():
        for _job_id, _job, step in _runs(data):
            assert "${{" not in step["run"], f"{name}: an expression inside a script: {step['run'][:80]}"


def test_prod_runs_in_the_plans_environment_with_its_reviewers_approvals_recorded():
    env_job = WORKFLOW_DATA["promote-env"]["jobs"]["promote"]
    assert env_job["environment"] == "${{ needs.plan.outputs.github_environment }}"
    assert env_job["permissions"]["actions"] == "read"
    scripts = " ".join(s.get("run", "") for s in env_job["steps"])
    assert scripts.index("promoter ci approvals") < scripts.index("promoter promote --env \"$PROMOTER_ENV\" --release "
                                                                   "\"$RELEASE\" $ALLOW_UNTAGGED $RESUME")
    assert '"$code" -eq 5' in scripts  # a pause for an approval is not a red job
    assert "GITHUB_STEP_SUMMARY" in scripts
    uploads = [s for s in env_job["steps"] if "upload-artifact" in str(s.get("uses"))]
    assert uploads and ".promoter/evidence/" in uploads[0]["with"]["path"] and uploads[0]["if"] == "always()"
    prod = WORKFLOW_DATA["promote-prod"]
    assert set(prod["on"]) == {"workflow_dispatch"}
    assert prod["jobs"]["promote"]["with"]["env"] == "prod"
    assert PLAN.ci.github_environment.format(env="prod") == "prod"


def test_the_sit_tag_filter_matches_the_plans_tag_pattern():
    """GitHub's tag filter and the plan's pattern agree on what a SIT release tag is."""
    (glob,) = WORKFLOW_DATA["promote-sit"]["on"]["push"]["tags"]
    as_regex = "^" + glob.replace(".", r"\.").replace("[0-9]+", r"[0-9]+") + "$"
    for tag in ("v1.0.0-sit", "v12.3.45-sit"):
        assert re.match(as_regex, tag) and re.match(PLAN.code.tag_pattern, tag)
    for tag in ("v1.0.0", "v1.0.0-prod", "v1.0-sit", "1.0.0-sit"):
        assert not re.match(as_regex, tag)


def test_terraform_changes_are_checked_for_every_environment_of_the_plan():
    data = WORKFLOW_DATA["terraform-validate"]
    assert "campaigns_lambda/terraform/**" in data["on"]["pull_request"]["paths"]
    assert sorted(data["jobs"]["validate"]["strategy"]["matrix"]["env"]) == sorted(PLAN.environments)
