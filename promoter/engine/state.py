"""Where the ledger and the lock are kept: the ``StateStore`` port, the local directory adapter, record hashing.

The ledger (``promoter.engine.ledger``) holds all the logic (records, hash chain, runs, lock with a lease); a
store only keeps bytes, with two guarantees every adapter gives:

- ``append(env, make)``: ``make`` is given the environment's last record (raw bytes, or ``None``) and returns the
  next one; the store keeps it immediately after that record, or calls ``make`` again with the newer last record
  when another writer got there first. Two writers never lose or reorder a record, and each record can carry
  the hash of the one before it.
- The lock is one small document per environment with a version tag: ``create_lock`` only if absent,
  ``replace_lock`` and ``delete_lock`` only if the tag still matches (compare-and-swap).

Adapters: :class:`LocalStateStore` (a directory: ``flock``-ed JSON lines, an ``O_EXCL`` lock file) here, and
``promoter.adapters.state_s3.S3StateStore`` (one object a record under an ordered key, written with
``If-None-Match: *``; the lock object replaced and deleted with ``If-Match`` on its ETag).

Hash chain: each record carries ``seq`` (1, 2, ... per environment), ``prev`` (the previous record's hash) and
``hash`` (sha256 of the record's canonical JSON without ``hash``). :func:`verify_chain` names the first record
that was edited, deleted or reordered.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from promoter.errors import PromoterError, StateUnavailable

__all__ = ["ChainReport", "LocalStateStore", "StateStore", "StateUnavailable", "chain", "record_hash",
           "verify_chain"]

STATE_ENV_VAR = "PROMOTER_STATE"


class StateStore(Protocol):
    """Keeps the ledger's records and the lock of each environment (see the module docstring)."""

    def describe(self, env: str) -> str:
        """Where ``env``'s records live, for messages (a path, an ``s3://`` URL)."""
        ...

    def read_records(self, env: str) -> list[tuple[str, bytes]]:
        """Every record of ``env`` in order, as (where it is, raw bytes)."""
        ...

    def append(self, env: str, make: Callable[[bytes | None], bytes]) -> str:
        """Store ``make(last)`` right after ``last``; returns where it went."""
        ...

    def read_lock(self, env: str) -> tuple[bytes, str] | None: ...

    def create_lock(self, env: str, body: bytes) -> str | None:
        """The new tag, or ``None`` when a lock already exists."""
        ...

    def replace_lock(self, env: str, body: bytes, tag: str) -> str | None:
        """The new tag, or ``None`` when the lock is gone or is no longer the one tagged ``tag``."""
        ...

    def delete_lock(self, env: str, tag: str) -> bool: ...

    def caller(self) -> str | None:
        """Who this store writes as (an IAM ARN), when the store knows."""
        ...

    def audit(self, env: str) -> list[str]:
        """What the store's own history shows happened to records beyond appends (an object overwritten or
        deleted, where the store keeps versions); empty where it keeps none."""
        ...


# -- records and their chain ---------------------------------------------------------------------------------
def canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, default=str, separators=(",", ":")).encode()


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def chain(record: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """``record`` with ``seq``, ``prev`` and ``hash`` set to follow ``previous``."""
    record = {k: v for k, v in record.items() if k not in {"seq", "prev", "hash"}}
    if previous is None:
        record.update(seq=1, prev=None)
    else:
        record.update(seq=int(previous.get("seq") or 0) + 1, prev=previous.get("hash") or record_hash(previous))
    record["hash"] = record_hash(record)
    return record


@dataclass
class ChainReport:
    env: str
    records: int = 0
    unchained: int = 0  # records written before the ledger carried hashes, all at its start
    problems: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"env": self.env, "ok": self.ok, "records": self.records, "unchained": self.unchained,
                "problems": self.problems, "unreadable": self.unreadable}


def verify_chain(env: str, raw_records: list[tuple[str, bytes]]) -> ChainReport:
    """Check every record's hash, that each links to the one before it, and that ``seq`` has no gap."""
    report = ChainReport(env)
    previous: dict[str, Any] | None = None
    previous_where = ""
    for where, raw in raw_records:
        try:
            record = json.loads(raw)
        except ValueError:
            report.unreadable.append(where)
            continue
        report.records += 1
        if "hash" not in record:
            if previous is not None and "hash" in previous:
                report.problems.append(f"{where}: carries no hash after chained records (inserted or edited)")
            else:
                report.unchained += 1
            previous, previous_where = record, where
            continue
        if record_hash(record) != record["hash"]:
            report.problems.append(f"{where} (seq {record.get('seq')}, {record.get('kind')} at {record.get('ts')}): "
                                   "its content does not match its hash (edited)")
        if previous is None:
            expected_seq, expected_prev = 1, None
        else:
            expected_seq = int(previous.get("seq") or 0) + 1
            expected_prev = previous.get("hash") or record_hash(previous)
        if record.get("seq") != expected_seq:
            report.problems.append(f"{where}: seq {record.get('seq')} follows "
                                   f"{previous_where or 'the start'} where seq {expected_seq} was expected "
                                   f"(records {expected_seq}..{int(record.get('seq') or 0) - 1} deleted or moved)")
        elif record.get("prev") != expected_prev:
            report.problems.append(f"{where} (seq {record.get('seq')}): does not link to "
                                   f"{previous_where or 'the start'} (the record before it was edited or replaced)")
        previous, previous_where = record, where
    return report


# -- the local directory -------------------------------------------------------------------------------------
@dataclass
class LocalStateStore:
    """A directory: ``ledger/<env>.jsonl`` (one record a line, never rewritten) and ``locks/<env>.lock``.

    Appends take an exclusive ``flock`` on the file, read its last whole record, and write the new line with one
    ``write`` call, then ``fsync``; a crash leaves at most one torn last line, which the next append ends with a
    newline and readers report. The lock file is created with ``O_CREAT | O_EXCL``; replacing or deleting it
    happens under a ``flock`` on ``locks/<env>.guard``, comparing the content's sha256 (its tag) first.
    """

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    def describe(self, env: str) -> str:
        return str(self.path(env))

    def path(self, env: str) -> Path:
        return self.root / "ledger" / f"{env}.jsonl"

    def lock_path(self, env: str) -> Path:
        return self.root / "locks" / f"{env}.lock"

    def caller(self) -> str | None:
        return None

    def audit(self, env: str) -> list[str]:
        return []  # a file keeps no history: the hash chain is the only witness

    def read_records(self, env: str) -> list[tuple[str, bytes]]:
        path = self.path(env)
        if not path.exists():
            return []
        with path.open("rb") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
            return [(f"{path}: line {n}", raw.rstrip(b"\n")) for n, raw in enumerate(fh, start=1)]

    def append(self, env: str, make: Callable[[bytes | None], bytes]) -> str:
        path = self.path(env)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _repair_tail(fd)
            line = make(_last_whole_line(fd)).rstrip(b"\n") + b"\n"
            written = os.write(fd, line)
            if written != len(line):
                raise PromoterError(f"ledger {path}: short write ({written} of {len(line)} bytes)")
            os.fsync(fd)
        finally:
            os.close(fd)  # closing releases the flock
        return str(path)

    def read_lock(self, env: str) -> tuple[bytes, str] | None:
        try:
            body = self.lock_path(env).read_bytes()
        except FileNotFoundError:
            return None
        return body, hashlib.sha256(body).hexdigest()

    def create_lock(self, env: str, body: bytes) -> str | None:
        path = self.lock_path(env)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return None
        with os.fdopen(fd, "wb") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        return hashlib.sha256(body).hexdigest()

    def replace_lock(self, env: str, body: bytes, tag: str) -> str | None:
        with self._guard(env):
            current = self.read_lock(env)
            if current is None or current[1] != tag:
                return None
            tmp = self.lock_path(env).with_suffix(".tmp")
            tmp.write_bytes(body)
            os.replace(tmp, self.lock_path(env))
            return hashlib.sha256(body).hexdigest()

    def delete_lock(self, env: str, tag: str) -> bool:
        with self._guard(env):
            current = self.read_lock(env)
            if current is None or current[1] != tag:
                return False
            with contextlib.suppress(FileNotFoundError):
                self.lock_path(env).unlink()
            return True

    @contextlib.contextmanager
    def _guard(self, env: str):
        guard = self.root / "locks" / f"{env}.guard"
        guard.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(guard, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _repair_tail(fd: int) -> None:
    """If a crash left a torn last line (no newline), end it so the next record starts on its own line."""
    size = os.lseek(fd, 0, os.SEEK_END)
    if size == 0:
        return
    last = os.pread(fd, 1, size - 1)
    if last != b"\n":
        os.write(fd, b"\n")


def _last_whole_line(fd: int) -> bytes | None:
    """The last line of the file that parses as a record (a torn line is skipped), reading backwards."""
    size = os.lseek(fd, 0, os.SEEK_END)
    chunk = 65536
    start = size
    tail = b""
    while start > 0:
        start = max(0, start - chunk)
        tail = os.pread(fd, size - start, start)
        lines = tail.split(b"\n")
        complete = lines if start == 0 else lines[1:]  # the first piece may be cut
        for line in reversed(complete):
            if not line.strip():
                continue
            try:
                json.loads(line)
            except ValueError:
                continue
            return line
        chunk *= 4
    return None
