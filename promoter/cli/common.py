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
    _plan: Any = field(default=None, repr=False)

    @property
    def plan(self) -> Plan:
        if self._plan is None:
            from promoter.plan import load_plan

            self._plan = load_plan(self.plan_path)
        return self._plan

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
    return Console(stderr=stderr, width=width, highlight=False, soft_wrap=False)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
