"""Build the service's Lambda artifact, reproducibly.

Stages:

1. resolve the release tag (``--release``, else the tag on HEAD, else ``dev-<sha>``);
2. from the repository root (the checkout, never the installed package), vendor the runtime dependencies of
   ``campaigns_lambda/requirements.txt`` (a missing file is an error, never an artifact without them) for the
   target: ``lambda`` (the default, the bytes AWS gets) means the runtime's CPython manylinux wheels
   (``pip install --platform ... --only-binary=:all:``), ``local`` the host interpreter's wheels, a fallback
   for machines without the runtime's Python; boto3 and botocore are never vendored, the runtime has them;
   vendored trees are cached by (target, requirements) so repeated builds do not reinstall;
3. write the zip: the package (without ``terraform/``, ``__pycache__``) and the dependencies, with sorted
   entries, fixed timestamps and modes: same inputs, same bytes. The release tag is not in the zip (it names
   the file only): a release is one artifact whatever its tags (``v1.0.0-sit`` and ``v1.0.0-prod`` on one
   commit give the same sha256), and the function's configuration carries the tag (``RELEASE_VERSION``).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from promoter.adapters.git import GitRepo
from promoter.errors import ConfigurationError, UsageError

FIXED_TIME = (1980, 1, 1, 0, 0, 0)
NEVER_VENDOR = {"boto3", "botocore", "s3transfer"}
SKIP_DIRS = {"__pycache__", "terraform", "tests", "bin"}
SKIP_SUFFIXES = {".pyc", ".pyo"}
TARGETS = ("lambda", "local")
RELEASE_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


@dataclass(frozen=True)
class Artifact:
    path: str
    release: str
    target: str
    size: int
    sha256: str
    code_sha256: str  # base64 of the sha256 digest: the form Lambda reports as CodeSha256
    files: int

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_release(release: str | None, repo: Path, pattern: str | None = None) -> str:
    """The release to build: ``release``, else the one tag on HEAD (matching ``pattern`` when given), else
    ``dev-<sha>``. Several candidate tags on HEAD are ambiguous: the caller must choose one."""
    if release:
        return release
    git = GitRepo(repo)
    tags = git.tags_at_head()
    candidates = [t for t in tags if pattern is None or re.match(pattern, t)]
    if len(candidates) > 1:
        raise UsageError(f"HEAD carries several release tags ({', '.join(candidates)}); choose one with --release")
    if candidates:
        return candidates[0]
    sha = git.head_sha(short=True)
    return f"dev-{sha}" if sha else "dev"


def service_sources(repo: Path) -> tuple[Path, Path]:
    """``(package_dir, requirements)`` of the service in the repository; refuses a tree that lacks either, so an
    artifact without its dependencies (which would fail to import on Lambda) is never built."""
    package_dir = repo / "campaigns_lambda"
    requirements = package_dir / "requirements.txt"
    if not (package_dir / "__init__.py").is_file():
        raise ConfigurationError(f"no campaigns_lambda package in {repo}: this is not the service's repository",
                                 hint="run inside the service's checkout, or pass --repo DIR")
    if not requirements.is_file():
        raise ConfigurationError(
            f"{requirements} is missing: an artifact without the service's dependencies would fail to import on "
            "Lambda",
            hint="restore it (git checkout -- campaigns_lambda/requirements.txt); an empty file means no dependencies",
        )
    return package_dir, requirements


def build(
    *,
    repo: Path,
    release: str | None = None,
    target: str = "lambda",
    out_dir: Path = Path("dist"),
    python_version: str = "3.12",
    platform: str = "manylinux2014_x86_64",
    cache_dir: Path | None = None,
    progress: Callable[[str], None] = lambda _msg: None,
) -> Artifact:
    if target not in TARGETS:
        raise UsageError(f"unknown build target {target!r}; choose one of: {', '.join(TARGETS)}")
    release = resolve_release(release, repo)
    if RELEASE_TAG.fullmatch(release) is None:
        # the tag names the file and is one word of the version description (release=<tag> git=... sha256=...)
        raise UsageError(f"invalid release tag {release!r}: letters, digits and . _ + - only (e.g. v1.1.0), "
                         "at most 128 characters, starting with a letter or digit")
    package_dir, requirements = service_sources(repo)
    progress(f"vendoring dependencies for target {target}")
    vendor = vendor_dependencies(requirements, target, python_version, platform, cache_dir, progress)

    entries: dict[str, bytes] = {}
    for path in _walk(package_dir):
        entries["campaigns_lambda/" + path.relative_to(package_dir).as_posix()] = path.read_bytes()
    for path in _walk(vendor):
        rel = path.relative_to(vendor).as_posix()
        if rel.split("/", 1)[0].lower().split("-", 1)[0] in NEVER_VENDOR:
            continue
        entries.setdefault(rel, path.read_bytes())

    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"campaigns_lambda-{release}-{target}.zip"
    tmp = final.with_suffix(".zip.tmp")
    progress(f"writing {final} ({len(entries)} files)")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            for name in sorted(entries):
                info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
                info.external_attr = (0o100644 & 0xFFFF) << 16
                info.create_system = 3
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, entries[name], compresslevel=9)
        os.replace(tmp, final)  # never leave a half-written artifact under the final name
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    digest = hashlib.sha256(final.read_bytes()).digest()
    return Artifact(
        path=str(final),
        release=release,
        target=target,
        size=final.stat().st_size,
        sha256=digest.hex(),
        code_sha256=base64.b64encode(digest).decode(),
        files=len(entries),
    )


def vendor_dependencies(
    requirements: Path,
    target: str,
    python_version: str,
    platform: str,
    cache_dir: Path | None,
    progress: Callable[[str], None],
) -> Path:
    reqs = requirements.read_bytes()
    host = f"{sys.version_info.major}.{sys.version_info.minor}"
    key_src = reqs + f"|{target}|{python_version}|{platform}|{host}".encode()
    key = hashlib.sha256(key_src).hexdigest()[:16]
    cache = (cache_dir or _default_cache()) / f"vendor-{target}-{key}"
    if (cache / ".complete").exists():
        progress(f"using cached dependencies {cache}")
        return cache
    if not reqs.strip():
        cache.mkdir(parents=True, exist_ok=True)
        (cache / ".complete").write_text("")
        return cache
    staging = cache.with_name(cache.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
           "--target", str(staging), "-r", str(requirements)]
    if target == "lambda":
        cmd += ["--platform", platform, "--implementation", "cp", "--python-version", python_version,
                "--only-binary=:all:"]
    progress("pip " + " ".join(cmd[3:]))
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise ConfigurationError(
            f"could not vendor dependencies for target {target}: {result.stderr.strip()[-800:]}",
            hint="check network access to the package index, or build with --target local",
        )
    for name in list(staging.iterdir()):
        if name.name.lower().split("-", 1)[0] in NEVER_VENDOR or name.name == "bin":
            shutil.rmtree(name, ignore_errors=True) if name.is_dir() else name.unlink()
    (staging / ".complete").write_text("")
    if cache.exists():
        shutil.rmtree(staging, ignore_errors=True)
    else:
        cache.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, cache)
    return cache


def _walk(base: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            if path.suffix in SKIP_SUFFIXES or filename == ".complete" or filename == "RELEASE":
                continue
            yield path


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "promoter"
