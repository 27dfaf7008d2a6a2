"""What every command shares: option types, the application object, output helpers.

Conventions: human output (tables) goes to stdout, progress and messages to stderr; ``--json`` prints one
JSON document on stdout and nothing else there. Heavy modules (boto3, moto, terraform) are imported inside
commands, never here, so ``promoter --help`` starts fast.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from promoter.adapters.aws import AwsSessionFactory
    from promoter.engine.ledger import Ledger
    from promoter.plan.models import Plan

# Without a terminal (CI logs, pipes) lines are as long as their content; rich would otherwise assume 80.
UNWRAPPED_WIDTH = 1000

PlanOpt = Annotated[
    Path | None,
    typer.Option(
        "--plan",
        envvar="PROMOTER_PLAN",
        help="Plan file. Default: plans/PROM-CAMP-001.yaml.",
        show_default=False,
    ),
]
EnvOpt = Annotated[
    str | None,
    typer.Option(
        "--env", "-e", envvar="PROMOTER_ENV", help="Environment from the plan (dev, sit, prod).", show_default=False
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON document on stdout.")]
ProfileOpt = Annotated[
    str | None,
    typer.Option("--profile", help="AWS profile. Default: AWS_PROFILE, env credentials, then the plan's profile."),
]
RepoOpt = Annotated[
    Path | None,
    typer.Option(
        "--repo",
        envvar="PROMOTER_REPO",
        file_okay=False,
        help="The service's git checkout: what is built, planned and tagged. Default: the checkout you are in.",
        show_default=False,
    ),
]
LedgerOpt = Annotated[
    Path | None,
    typer.Option("--ledger-dir", envvar="PROMOTER_HOME", help="Ledger directory. Default: .promoter/"),
]


@dataclass
class App:
    """The application object: resolves the plan, the environment and the adapters once per command."""

    plan_path: Path | None = None
    env_name: str | None = None
    profile: str | None = None
    ledger_dir: Path | None = None
    json_output: bool = False
    repo_path: Path | None = None
    _plan: Any = field(default=None, repr=False)

    @property
    def plan(self) -> Plan:
        if self._plan is None:
            from promoter.plan import default_plan_path, load_plan

            self._plan = load_plan(self.plan_path or default_plan_path(self.repo_path))
        return self._plan

    @property
    def repo(self) -> Path:
        """The repository root, resolved once: ``--repo``, ``$PROMOTER_REPO`` or the checkout you are in."""
        from promoter.adapters.git import find_repository

        return find_repository(self.repo_path)

    @property
    def env(self) -> str:
        """The environment, required: refuses and lists the plan's environments when missing or unknown."""
        from promoter.errors import UnknownEnvironment

        known = sorted(self.plan.environments)
        if not self.env_name or self.env_name not in self.plan.environments:
            raise UnknownEnvironment(self.env_name, known)
        return self.env_name

    def aws(self, env: str | None = None) -> AwsSessionFactory:
        from promoter.adapters.aws import AwsSessionFactory

        env = env or self.env
        spec = self.plan.environment(env)
        return AwsSessionFactory(region=spec.region, profile=self.profile, plan_profile=spec.profile)

    def ledger(self) -> Ledger:
        from promoter.engine.ledger import Ledger, default_home

        return Ledger(self.ledger_dir or default_home())


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    width = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else None
    out = Console(stderr=stderr, width=width, highlight=False, soft_wrap=False)
    if width is None and not out.is_terminal:
        out.width = UNWRAPPED_WIDTH  # a log or a pipe: keep URLs, ids and log lines whole, never fold at 80
    return out


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
