"""What the command line promises on every outcome: one JSON document with --json (failures included), exit
codes, a root --help that loads no command, lines that are never folded, and credentials reported once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("args", "code", "error"), [
    (["deploy", "--env", "nope"], 2, "UnknownEnvironment"),
    (["deploy", "--env", "sit", "--bogus"], 2, "NoSuchOption"),
    (["rollback", "--env", "sit"], 2, "MissingParameter"),
    (["deploy", "--env", "sit", "--bake", "-1"], 2, "UsageError"),
    (["status", "--env", "sit", "--plan", "/nonexistent/plan.yaml"], 1, "PlanError"),
])
def test_failures_print_one_json_document(runner, cli, args, code, error):
    result = runner.invoke(cli, [*args, "--json"])
    assert result.exit_code == code, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["exit_code"] == code and doc["error"] == error
    assert doc["message"]


def test_a_refusal_from_aws_is_json_with_message_and_hint(runner, cli):
    # no credentials at all: the account guard refuses before anything is built or changed
    result = runner.invoke(cli, ["deploy", "--env", "sit", "--yes", "--json"],
                           env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["error"] == "AwsError" and "no AWS credentials found" in doc["message"]
    assert "aws sso login --profile Tebogo-sit" in doc["hint"]


def test_without_json_stdout_stays_clean_of_error_documents(runner, cli):
    result = runner.invoke(cli, ["deploy", "--env", "nope"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "unknown environment 'nope'" in result.stderr


def test_the_root_help_lists_every_command_without_importing_one():
    code = ("import sys; from promoter.cli.app import app; "
            "sys.argv=['promoter','--help']\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            "loaded = sorted(m for m in sys.modules if m.startswith('promoter.cli.') and m not in "
            "('promoter.cli.app',))\n"
            "heavy = sorted(m for m in ('rich', 'boto3', 'botocore', 'pydantic', 'yaml', 'click') "
            "if m in sys.modules)\n"
            "print('LOADED', loaded, heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "LOADED [] []" in done.stdout, done.stdout
    for name in ("preflight", "deploy", "rollback", "rehearse", "sandbox", "infra", "approve", "lock", "plan"):
        assert f"  {name} " in done.stdout


def test_the_command_table_matches_what_the_modules_register():
    import importlib

    import typer
    import typer.main

    from promoter.cli.app import COMMANDS

    registered: dict[str, str] = {}
    for module in sorted({entry.module for entry in COMMANDS.values()}):
        scratch = typer.Typer()
        importlib.import_module(module).register(scratch)
        for name, command in typer.main.get_group(scratch).commands.items():
            registered[name] = module
            help_text = " ".join((command.help or "").split())
            assert help_text.startswith(COMMANDS[name].summary), (name, help_text)
    assert registered == {name: entry.module for name, entry in COMMANDS.items()}


def test_shell_completion_is_offered(runner, cli):
    result = runner.invoke(cli, ["--help"])
    assert "--install-completion" in result.stdout


def test_plain_output_is_not_folded_at_80_columns(monkeypatch):
    from promoter.cli.common import UNWRAPPED_WIDTH, console

    monkeypatch.delenv("COLUMNS", raising=False)
    out = console()
    assert not out.is_terminal and out.width == UNWRAPPED_WIDTH
    with out.capture() as captured:
        out.print("x" * 300)
    assert captured.get().strip() == "x" * 300


def test_routing_and_missing_figures_read_as_people_write_them():
    from promoter.cli.text import figure, routing

    assert routing({"version": "1", "weights": {"4": 0.1}}) == "v4 10 % / v1 90 %"
    assert routing({"version": "4", "weights": {}}) == "v4 100 %"
    assert figure(None, "ms") == "n/a" and figure(12.5, "ms") == "12.5ms" and figure(5, "%") == "5 %"


def test_preflight_without_credentials_reports_the_cause_once(runner, cli, tmp_path):
    result = runner.invoke(cli, ["preflight", "--env", "sit", "--json", "--skip", "code,manual",
                                 "--ledger-dir", str(tmp_path)],
                           env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    failed = [r for r in report["results"] if r["status"] == "FAIL"]
    assert [r["id"] for r in failed] == ["aws.account"]
    assert "aws sso login --profile Tebogo-sit" in failed[0]["remedy"]
    skipped = [r for r in report["results"] if r["status"] == "SKIP"]
    assert len(skipped) >= 12
    assert all(r["evidence"].startswith("not run: ") and "(see aws.account)" in r["evidence"]
               for r in skipped if not r["id"].startswith("dr."))
