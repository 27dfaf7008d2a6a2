"""Find, read and validate a plan file.

Errors name the file, the line, the field path and the problem, one line per problem, so a broken plan is
fixed in one pass (a key given twice in one mapping is an error naming both lines, never "the last one wins")::

    plans/PROM-CAMP-001.yaml: line 99: canary.steps.0.weight: Input should be less than or equal to 100
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from promoter.errors import ConfigurationError, PlanError
from promoter.plan.models import Plan

DEFAULT_PLAN = Path("plans") / "PROM-CAMP-001.yaml"
PLAN_ENV_VAR = "PROMOTER_PLAN"


def default_plan_path(repo: str | os.PathLike[str] | None = None) -> Path:
    """``$PROMOTER_PLAN``, else ``plans/PROM-CAMP-001.yaml`` in the repository root (``repo``, else the checkout
    the working directory is in). Never the installed package's directory: the plan travels with the code."""
    if os.environ.get(PLAN_ENV_VAR):
        return Path(os.environ[PLAN_ENV_VAR])
    from promoter.adapters.git import find_repository

    try:
        root = find_repository(repo)
    except ConfigurationError as exc:
        raise ConfigurationError(f"no plan: {exc.message}",
                                 hint="run inside the service's checkout, or pass --plan FILE (PROMOTER_PLAN) "
                                 "or --repo DIR (PROMOTER_REPO)") from None
    return root / DEFAULT_PLAN


def load_plan(path: str | os.PathLike[str] | None = None) -> Plan:
    plan_path = Path(path) if path else default_plan_path()
    shown = str(plan_path)
    try:
        text = plan_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError(shown, ["file not found (pass --plan FILE or set PROMOTER_PLAN)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(shown, [f"cannot read: {exc}"]) from None
    return parse_plan(text, shown)


def parse_plan(text: str, source: str = "<plan>") -> Plan:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PlanError(source, [f"{where}not valid YAML: {problem}"]) from None
    if not isinstance(data, dict):
        raise PlanError(source, ["the plan must be a YAML mapping at the top level"])
    duplicates = _duplicate_keys(node, [])
    if duplicates:
        raise PlanError(source, duplicates)
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        raise PlanError(source, _describe(exc, node)) from None


def _describe(exc: ValidationError, root: yaml.Node | None) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        path = ".".join(str(p) for p in loc) or "(top level)"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; unknown keys are not allowed)"
        elif err["type"] == "missing":
            message = "required field is missing"
        message = message.removeprefix("Value error, ")
        if not loc and _REFERENCE.match(message):
            # Cross-reference problems found on the whole plan carry their own paths ("gates.0.before_env: ...").
            for part in message.split("; "):
                ref_path, _, ref_message = part.partition(": ")
                ref_loc = [int(p) if p.isdigit() else p for p in ref_path.split(".")]
                line = _line_of(root, ref_loc)
                problems.append(f"{f'line {line}: ' if line else ''}{ref_path}: {ref_message}")
            continue
        line = _line_of(root, loc)
        prefix = f"line {line}: " if line else ""
        problems.append(f"{prefix}{path}: {message}")
    return problems


def _duplicate_keys(node: yaml.Node | None, path: list[str]) -> list[str]:
    """Every key that appears twice in one mapping, anywhere in the plan. YAML lets the last one win silently, so a
    second ``error_rate_pct: 100`` would switch a rollback trigger off; each duplicate is named with both lines."""
    problems: list[str] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            name = str(key.value)
            line = key.start_mark.line + 1
            where = ".".join([*path, name])
            if name in first:
                problems.append(f"line {line}: {where}: duplicate key (first at line {first[name]}); "
                                "each key may appear once")
            else:
                first[name] = line
            problems.extend(_duplicate_keys(value, [*path, name]))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            problems.extend(_duplicate_keys(item, [*path, str(index)]))
    return problems


_REFERENCE = re.compile(r"^[a-z_]+(\.[A-Za-z0-9_-]+)*: ")


def _line_of(node: yaml.Node | None, loc: list[Any]) -> int | None:
    """1-based line of the deepest node on ``loc`` that exists in the YAML: the key's line for a mapping entry (so an
    error about a whole section points at its key, not its first child), the item's line for a list entry, and the
    enclosing key's line for a missing field."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    child, line = value, key.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line
