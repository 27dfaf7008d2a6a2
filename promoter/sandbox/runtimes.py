"""The interpreters the sandbox runs Lambda versions under, and the runtime layer Lambda adds to them.

A version's ``Runtime`` (``python3.12``) names the interpreter: the sandbox looks for it, in order, in
``$PROMOTER_SANDBOX_PYTHON3_12`` (an explicit override), on ``PATH`` (``python3.12``), under pyenv's
``$PYENV_ROOT/versions/3.12.*``, and through ``uv python find 3.12`` when uv is installed. Every candidate is run
once to check what it is (pyenv's shims exist on PATH even when they cannot run). An override that is another
version is used, but reported as not the runtime's (the ``local`` build target's fallback).

The Lambda runtime puts boto3 and its dependencies behind the function's code; the sandbox does the same with a
layer copied once from the pure-Python packages promoter itself runs with, cached per runtime and version.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

VERIFY_TIMEOUT_SECONDS = 15
# What the Lambda Python runtime provides beside the standard library (pure Python, any 3.x).
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")
RUNTIME_DISTRIBUTIONS = ("boto3", "botocore")
LAYER_FORMAT = 2  # 2: byte-compiled by the runtime's interpreter, as the Lambda runtime ships its boto3


class RuntimeUnavailable(Exception):
    """No interpreter on this machine can run the runtime."""

    def __init__(self, runtime: str, looked: list[str], problem: str | None = None) -> None:
        self.runtime = runtime
        self.looked = looked
        where = "; ".join(looked) if looked else "nowhere"
        detail = problem or f"no interpreter for {runtime} found"
        super().__init__(
            f"the sandbox cannot run runtime {runtime}: {detail} (looked at: {where}). Install CPython "
            f"{runtime.removeprefix('python')} (e.g. pyenv install {runtime.removeprefix('python')}) or point "
            f"{override_variable(runtime)} at one; where none can be had, build with --target local and set "
            f"{override_variable(runtime)} to this machine's python (not the runtime AWS runs)"
        )


@dataclass(frozen=True)
class Interpreter:
    runtime: str
    path: str
    version: str  # major.minor of the interpreter itself
    found_by: str  # override, PATH, pyenv, uv

    @property
    def matches_runtime(self) -> bool:
        return self.runtime == f"python{self.version}"

    def to_dict(self) -> dict:
        return {**asdict(self), "matches_runtime": self.matches_runtime}


def override_variable(runtime: str) -> str:
    return "PROMOTER_SANDBOX_" + re.sub(r"[^A-Z0-9]", "_", runtime.upper())


_VERSIONS: dict[tuple[str, int, int], str] = {}


def _version_of(path: str) -> tuple[str | None, str]:
    """(major.minor, problem) of the interpreter at ``path``, by running it once per file (a replaced
    interpreter, with a new inode or modification time, is run again; a failure is never remembered)."""
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError as exc:
        return None, f"cannot run: {exc}"
    key = (real, st.st_ino, st.st_mtime_ns)
    if key in _VERSIONS:
        return _VERSIONS[key], ""
    try:
        done = subprocess.run([path, "-I", "-S", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=VERIFY_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"cannot run: {exc}"
    if done.returncode != 0:
        return None, f"exits {done.returncode}"
    _VERSIONS[key] = done.stdout.strip()
    return _VERSIONS[key], ""


def _candidates(runtime: str, wanted: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    on_path = shutil.which(runtime)
    if on_path:
        found.append(("PATH", on_path))
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    versions = pyenv_root / "versions"
    if versions.is_dir():
        def key(p: Path) -> tuple[int, ...]:
            return tuple(int(x) if x.isdigit() else -1 for x in p.name.split("."))

        for directory in sorted(versions.glob(f"{wanted}.*"), key=key, reverse=True):
            found.append(("pyenv", str(directory / "bin" / runtime)))
    uv = shutil.which("uv")
    if uv:
        try:
            done = subprocess.run([uv, "python", "find", wanted], capture_output=True, text=True,
                                  timeout=VERIFY_TIMEOUT_SECONDS, check=False)
            if done.returncode == 0 and done.stdout.strip():
                found.append(("uv", done.stdout.strip()))
        except (OSError, subprocess.TimeoutExpired):
            pass
    return found


@functools.cache
def resolve_interpreter(runtime: str) -> Interpreter:
    """The interpreter for ``runtime``; raises :class:`RuntimeUnavailable` naming every place it looked."""
    match = re.fullmatch(r"python(\d+)\.(\d+)", runtime or "")
    variable = override_variable(runtime or "python")
    if not match:
        raise RuntimeUnavailable(runtime, [], f"{runtime!r} is not a Python runtime")
    wanted = f"{match.group(1)}.{match.group(2)}"
    looked: list[str] = []
    override = os.environ.get(variable)
    if override:
        version, problem = _version_of(override)
        if version:
            return Interpreter(runtime, override, version, f"${variable}")
        looked.append(f"${variable}={override} ({problem})")
    else:
        looked.append(f"${variable} (not set)")
    for found_by, path in _candidates(runtime, wanted):
        version, problem = _version_of(path)
        if version == wanted:
            return Interpreter(runtime, path, version, found_by)
        looked.append(f"{found_by} {path} ({problem or f'is Python {version}'})")
    if not any(item.startswith("PATH") for item in looked):
        looked.append(f"PATH ({runtime} not found)")
    if not shutil.which("uv"):
        looked.append("uv (not installed)")
    raise RuntimeUnavailable(runtime, looked)


@functools.cache
def _runtime_packages_key() -> str:  # the installed versions do not change while a process runs
    versions = []
    for name in RUNTIME_DISTRIBUTIONS:
        try:
            versions.append(f"{name}-{importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name}-missing")
    return "-".join(versions)


def runtime_layer(interpreter: Interpreter, cache_dir: Path) -> Path:
    """A directory with boto3 and its dependencies for ``interpreter``, as the Lambda runtime provides them.

    Built once per (runtime, interpreter, boto3/botocore versions) by copying promoter's own pure-Python copies and
    byte-compiling them with that interpreter, atomically (a half-built layer is never used)."""
    key = hashlib.sha256(f"{LAYER_FORMAT}|{interpreter.runtime}|{interpreter.path}|{interpreter.version}|"
                         f"{_runtime_packages_key()}".encode())
    layer = cache_dir / f"runtime-{interpreter.runtime}-{key.hexdigest()[:12]}"
    if (layer / ".complete").exists():
        return layer
    staging = layer.with_name(f"{layer.name}.tmp{os.getpid()}.{uuid.uuid4().hex[:6]}")
    staging.mkdir(parents=True)
    try:
        for name in RUNTIME_PACKAGES:
            spec = importlib.util.find_spec(name)
            if spec is None or spec.origin is None:
                raise RuntimeUnavailable(interpreter.runtime, [], f"the runtime package {name} is not installed "
                                         "beside promoter (pip install boto3)")
            origin = Path(spec.origin)
            if spec.submodule_search_locations:  # a package: copy its directory
                shutil.copytree(origin.parent, staging / name,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(origin, staging / origin.name)
        # byte-compiled once, by the interpreter that will import it: a cold start then loads botocore as the
        # runtime's precompiled copy loads, instead of compiling it in every new execution environment
        done = subprocess.run([interpreter.path, "-I", "-S", "-m", "compileall", "-q", "-j", "0", str(staging)],
                              capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise RuntimeUnavailable(interpreter.runtime, [], "byte-compiling the runtime layer failed: "
                                     + (done.stderr or done.stdout).strip()[-300:])
        (staging / ".complete").write_text("")
        if layer.exists():  # left incomplete by a copy that died
            shutil.rmtree(layer, ignore_errors=True)
        try:
            os.replace(staging, layer)
        except OSError:  # another front finished the same layer first
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return layer


def native_mismatch(code_dir: Path, interpreter: Interpreter) -> list[str]:
    """Compiled extensions in the package that ``interpreter`` cannot load (built for another CPython)."""
    tag = interpreter.version.replace(".", "")
    wrong: set[str] = set()
    for path in code_dir.rglob("*.so"):
        found = re.search(r"\.cpython-(\d+)", path.name)
        if found and found.group(1) != tag:
            wrong.add(f"cpython-{found.group(1)}")
    return sorted(wrong)
