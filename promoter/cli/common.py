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
# Options the release commands share (deploy, promote, rollback, abort): one declaration each.
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
LockWaitOpt = Annotated[float, typer.Option("--lock-wait", help="Seconds to wait for another run's lock.")]
ReleaseOpt = Annotated[str | None, typer.Option("--release", help="Release tag. Default: HEAD's tag.")]
AllowUntaggedOpt = Annotated[
    bool, typer.Option("--allow-untagged", help="Allow a release that is not HEAD's tag (recorded).")
]
AnalysisIntervalOpt = Annotated[
    float | None, typer.Option("--analysis-interval", help="Override the analysis interval (seconds).")
]
EnvVarOpt = Annotated[
    list[str] | None, typer.Option("--env-var", help="K=V set in the function environment (repeatable).")
]
OnInterruptOpt = Annotated[
    str, typer.Option("--on-interrupt", help="rollback (default) or hold the alias where it is.")
]
TargetOpt = Annotated[str | None, typer.Option("--target", help="Build target: lambda or local.")]
OutOpt = Annotated[Path, typer.Option("--out", help="Build output directory.")]
StateOpt = Annotated[
    str | None,
    typer.Option("--state", envvar="PROMOTER_STATE",
                 help="State store for this command: s3://bucket/prefix or a directory. Default: the plan's "
                 "`state:` section, else the ledger directory."),
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
    state_url: str | None = None
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
        """The ledger on the configured store: ``--state``/``PROMOTER_STATE``, else ``--ledger-dir``, else the
        plan's ``state:`` section (per environment), else the local directory."""
        from promoter.engine.ledger import Ledger, default_home

        url = self.state_url or os.environ.get("PROMOTER_STATE")
        if url:
            return self.ledger_at(url)
        home = self.ledger_dir or default_home()
        if self.ledger_dir is not None:
            return Ledger(home)
        spec = self._plan_state()
        if spec is None:
            return Ledger(home)
        default = self._store(spec.default, home)
        env_stores = {env: self._store(backend, home) for env, backend in spec.environments.items()}
        return Ledger(home, store=default, env_stores={e: s for e, s in env_stores.items() if s is not None})

    def ledger_at(self, url: str) -> Ledger:
        """The ledger on the store at ``url`` (``s3://bucket/prefix`` or a directory)."""
        from promoter.engine.ledger import Ledger, default_home

        if url.startswith("s3://"):
            from promoter.adapters.state_s3 import s3_store_from_url

            return Ledger(self.ledger_dir or default_home(), store=s3_store_from_url(url, self._state_session()))
        return Ledger(Path(url))

    def _plan_state(self) -> Any:
        try:
            return self.plan.state
        except Exception:  # a plan that does not load is reported by the command itself; state falls back
            return None

    def _state_session(self, region: str | None = None, profile: str | None = None, role_arn: str | None = None):
        from promoter.adapters.aws import AwsSessionFactory

        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region is None and self.env_name:
            with_env = self._plan_env_region()
            region = with_env
        session = AwsSessionFactory(region=region or "us-east-1", profile=self.profile or profile).session()
        if role_arn:
            session = _assumed(session, role_arn)
        return session

    def _plan_env_region(self) -> str | None:
        try:
            return self.plan.environment(self.env_name).region
        except Exception:
            return None

    def _store(self, backend: Any, home: Path) -> Any:
        if backend is None or backend.backend == "local":
            from promoter.engine.state import LocalStateStore

            return LocalStateStore(Path(backend.path) if backend and backend.path else home)
        from promoter.adapters.state_s3 import s3_store_from_url

        session = self._state_session(backend.region, backend.profile, backend.role_arn)
        return s3_store_from_url(f"s3://{backend.bucket}/{backend.prefix}", session)


def _assumed(session: Any, role_arn: str) -> Any:
    """A session with the credentials of ``role_arn``, assumed once with ``session``'s."""
    import boto3

    creds = session.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="promoter-state")["Credentials"]
    return boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                         aws_session_token=creds["SessionToken"], region_name=session.region_name)


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    width = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else None
    out = Console(stderr=stderr, width=width, highlight=False, soft_wrap=False)
    if width is None and not out.is_terminal:
        out.width = UNWRAPPED_WIDTH  # a log or a pipe: keep URLs, ids and log lines whole, never fold at 80
    return out


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
