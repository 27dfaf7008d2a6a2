"""Every `promoter ...` line in the README's shell blocks is a command the real CLI accepts: known command,
known options, valid values. A renamed option breaks this test, not a reader's release."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    lines: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.strip()
            for part in re.split(r"&&|\|", line):
                part = part.strip()
                if part.startswith("promoter "):
                    lines.append(part)
    return lines


def test_the_readme_shows_the_mission_commands():
    shown = " ".join(readme_commands())
    for command in ("promoter preflight", "promoter deploy", "promoter rollback", "promoter rehearse",
                    "promoter smoke", "promoter approve", "promoter status"):
        assert command in shown


@pytest.mark.parametrize("line", readme_commands())
def test_each_readme_command_parses(line):
    import typer.main

    from promoter.cli.app import app

    args = shlex.split(line, comments=True)[1:]
    group = typer.main.get_command(app)
    ctx = group.make_context("promoter", [], resilient_parsing=True)
    command = group
    while args and hasattr(command, "get_command") and not args[0].startswith("-"):
        sub = command.get_command(ctx, args[0])
        assert sub is not None, f"{line}: unknown command {args[0]!r}"
        command, args = sub, args[1:]
        if hasattr(command, "get_command") and args and not args[0].startswith("-"):
            ctx = command.make_context(command.name, [], parent=ctx, resilient_parsing=True)
    # parsing checks option names, values and types; it runs nothing
    command.make_context(command.name, list(args), parent=ctx)
