"""The ledger: an append-only record of every run, step, approval, verdict and alias change.

Layout (``.promoter/`` by default, ``$PROMOTER_HOME`` or ``--ledger-dir`` to move it)::

    .promoter/
        ledger/<env>.jsonl     one JSON object a line, never rewritten
        locks/<env>.lock       present while a run holds the environment
        reports/               rehearsal reports

Safety:

- Appends take an exclusive ``flock`` on the file and write the whole line with one ``write`` call, then
  ``fsync``; two processes never interleave, and a crash leaves at most one torn last line, which readers
  skip and report in ``Ledger.torn_lines``.
- The lock is a file created with ``O_CREAT | O_EXCL`` holding who, pid, host and since when. A lock whose
  pid is dead on this host is stale (refusals say so, naming the holder's unfinished run); stale locks are never
  broken silently, only by ``break_lock``, which refuses a holder whose pid still runs here unless forced. A run
  checks with ``holds`` before each alias change that nobody broke its lock meanwhile.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from promoter.errors import LockHeld, PromoterError, RefusedError

HOME_ENV_VAR = "PROMOTER_HOME"


def default_home() -> Path:
    """``$PROMOTER_HOME``, else ``.promoter`` at the top of the checkout you stand in (so every directory of one
    checkout shares one ledger), else ``.promoter`` here."""
    if os.environ.get(HOME_ENV_VAR):
        return Path(os.environ[HOME_ENV_VAR])
    from promoter.adapters.git import find_repository
    from promoter.errors import ConfigurationError

    try:
        return find_repository() / ".promoter"
    except ConfigurationError:
        return Path(".promoter")


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


@dataclass
class Ledger:
    root: Path = field(default_factory=default_home)
    torn_lines: list[tuple[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    # -- records -------------------------------------------------------------------------------------------
    def path(self, env: str) -> Path:
        return self.root / "ledger" / f"{env}.jsonl"

    def append(self, env: str, kind: str, **data: Any) -> dict[str, Any]:
        record = {"ts": utcnow(), "env": env, "kind": kind, **data}
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        path = self.path(env)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _repair_tail(fd)
            written = os.write(fd, line)
            if written != len(line):
                raise PromoterError(f"ledger {path}: short write ({written} of {len(line)} bytes)")
            os.fsync(fd)
        finally:
            os.close(fd)  # closing releases the flock
        return record

    def records(self, env: str, *, kind: str | None = None, run_id: str | None = None) -> list[dict[str, Any]]:
        path = self.path(env)
        if not path.exists():
            return []
        out = []
        with path.open("rb") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
            for number, raw in enumerate(fh, start=1):
                try:
                    record = json.loads(raw)
                except ValueError:
                    if (str(path), number) not in self.torn_lines:
                        self.torn_lines.append((str(path), number))
                    continue
                if kind and record.get("kind") != kind:
                    continue
                if run_id and record.get("run_id") != run_id:
                    continue
                out.append(record)
        return out

    def runs(self, env: str) -> list[dict[str, Any]]:
        """One summary per run id, oldest first: start record merged with its end record, if any."""
        runs: dict[str, dict[str, Any]] = {}
        for record in self.records(env):
            run_id = record.get("run_id")
            if not run_id:
                continue
            run = runs.setdefault(run_id, {"run_id": run_id, "env": env, "events": 0})
            run["events"] += 1
            if record["kind"] == "run-start":
                run.update({k: v for k, v in record.items() if k not in {"kind", "ts"}}, started=record["ts"])
            elif record["kind"] == "run-end":
                run.update(outcome=record.get("outcome"), ended=record["ts"], reason=record.get("reason"))
            elif record["kind"] == "alias-change":
                run["last_alias"] = record.get("after")
            elif record["kind"] == "refusal":  # a command refused before it changed anything: a run of one record
                run.update(kind_of_run=record.get("command"), outcome=record.get("outcome", "refused"),
                           reason=record.get("reason"), release=record.get("release"), who=record.get("who"),
                           started=record["ts"], ended=record["ts"], refusal=True)
        return list(runs.values())

    def warnings(self, env: str) -> list[str]:
        """What readers of ``env``'s ledger had to skip, one line each (empty when every line was whole)."""
        path = str(self.path(env))
        return [f"{p}: line {n} is not a whole record (a write was cut short, for example by a crash) and was skipped"
                for p, n in self.torn_lines if p == path]

    # -- locks ---------------------------------------------------------------------------------------------
    def lock_path(self, env: str) -> Path:
        return self.root / "locks" / f"{env}.lock"

    def lock_holder(self, env: str) -> dict[str, Any] | None:
        try:
            holder = json.loads(self.lock_path(env).read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            holder = {"who": "unknown (unreadable lock file)"}
        holder["stale"] = _is_stale(holder)
        return holder

    @contextlib.contextmanager
    def lock(
        self,
        env: str,
        *,
        purpose: str,
        run_id: str | None = None,
        wait_seconds: float = 0,
        clock: Clock | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Hold the environment's lock for the duration of the block, or raise :class:`LockHeld`."""
        clock = clock or SystemClock()
        path = self.lock_path(env)
        path.parent.mkdir(parents=True, exist_ok=True)
        holder = {
            "who": whoami(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": utcnow(),
            "purpose": purpose,
            "run_id": run_id,
            "token": uuid.uuid4().hex,
        }
        deadline = clock.now() + wait_seconds
        while True:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                current = self.lock_holder(env) or {}
                if clock.now() >= deadline or current.get("stale"):  # a dead holder never releases it
                    raise LockHeld(env, current, unfinished=self._unfinished(env, current)) from None
                clock.sleep(min(1.0, max(0.05, deadline - clock.now())))
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(holder, fh)
                fh.flush()
                os.fsync(fh.fileno())
            break
        try:
            yield holder
        finally:
            with contextlib.suppress(FileNotFoundError, ValueError):
                if json.loads(path.read_text()).get("token") == holder["token"]:
                    path.unlink()

    def holds(self, env: str, token: str) -> bool:
        """Whether the lock of ``env`` is still the one taken with ``token`` (nobody broke it meanwhile)."""
        try:
            return json.loads(self.lock_path(env).read_text()).get("token") == token
        except (FileNotFoundError, ValueError):
            return False

    def break_lock(self, env: str, *, force: bool = False) -> dict[str, Any] | None:
        """Remove the lock of ``env``, recorded. A holder provably alive (its pid runs on this host) is refused
        unless ``force``, because its run would go on moving the alias beside whoever takes the lock next."""
        holder = self.lock_holder(env)
        if holder is None:
            return None
        alive = _is_alive(holder)
        if alive and not force:
            raise RefusedError(
                f"the lock of {env} is held by {holder.get('who')} (pid {holder.get('pid')} on {holder.get('host')}, "
                f"{holder.get('purpose') or 'unknown purpose'}), which is still running",
                hint="wait for it to end or stop it (Ctrl-C rolls it back); to break the lock anyway, and have that "
                f"run stop at its next alias change: promoter lock break --env {env} --force",
            )
        with contextlib.suppress(FileNotFoundError):
            self.lock_path(env).unlink()
        self.append(env, "lock-broken", holder=holder, by=whoami(), forced=force, holder_alive=alive)
        return holder

    def _unfinished(self, env: str, holder: dict[str, Any]) -> dict[str, Any] | None:
        """The holder's run, when the holder is dead and its run has no end record."""
        if not holder.get("stale") or not holder.get("run_id"):
            return None
        for run in self.runs(env):
            if run["run_id"] == holder["run_id"] and run.get("outcome") is None:
                return run
        return None


def whoami() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _is_alive(holder: dict[str, Any]) -> bool:
    """True only when the holder's pid provably runs on this host."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_stale(holder: dict[str, Any]) -> bool:
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False  # cannot tell for another host; never guess
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _repair_tail(fd: int) -> None:
    """If a crash left a torn last line (no newline), end it so the next record starts on its own line."""
    size = os.lseek(fd, 0, os.SEEK_END)
    if size == 0:
        return
    last = os.pread(fd, 1, size - 1)
    if last != b"\n":
        os.write(fd, b"\n")
