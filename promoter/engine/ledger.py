"""The ledger: an append-only, hash-chained record of every run, step, approval, verdict and alias change.

Where it lives is a :class:`~promoter.engine.state.StateStore`: a local directory (the default, ``.promoter/``,
``$PROMOTER_HOME`` or ``--ledger-dir`` to move it) or an S3 bucket shared by a team and its CI
(``promoter.adapters.state_s3``). Local layout::

    .promoter/
        ledger/<env>.jsonl     one JSON object a line, never rewritten
        locks/<env>.lock       present while a run holds the environment
        reports/               rehearsal reports

Safety:

- Every record carries ``seq``, ``prev`` (the hash of the record before it) and ``hash``; the store keeps each
  record right after the one it was chained to, whoever else appends at the same time. ``verify`` names a record
  that was edited, deleted or reordered. A crash leaves at most one torn last record, which readers skip and
  report in ``warnings``.
- The lock holds who (user, host, pid, IAM caller), the run, since when and a lease renewed while the run lives.
  A lock whose pid is dead on this host, or whose lease ran out, is stale (refusals say so, naming the holder's
  unfinished run); stale locks are never broken silently, only by ``break_lock``, which refuses a holder that may
  be alive unless forced. A run checks with ``holds`` before each alias change that nobody broke its lock.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from promoter.engine.state import (
    ChainReport,
    LocalStateStore,
    StateStore,
    StateUnavailable,
    chain,
    record_hash,
    verify_chain,
)
from promoter.errors import LockHeld, RefusedError

HOME_ENV_VAR = "PROMOTER_HOME"
DEFAULT_LEASE_SECONDS = 60.0


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
    """The ledger and the lock of every environment, kept in a :class:`~promoter.engine.state.StateStore`.

    ``Ledger(root)`` keeps them in a local directory; ``Ledger(store=S3StateStore(...))`` in a shared bucket;
    ``env_stores`` gives an environment its own store. Callers never know which.
    """

    root: Path = field(default_factory=default_home)
    torn_lines: list[tuple[str, int]] = field(default_factory=list)
    store: StateStore | None = None
    env_stores: dict[str, StateStore] = field(default_factory=dict)
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    wall: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if self.store is None:
            self.store = LocalStateStore(self.root)
        self._unreadable: dict[str, list[str]] = {}

    def store_for(self, env: str) -> StateStore:
        return self.env_stores.get(env) or self.store  # type: ignore[return-value]

    def describe(self, env: str) -> str:
        return self.store_for(env).describe(env)

    # -- records -------------------------------------------------------------------------------------------
    def path(self, env: str) -> Path:
        """The local file of ``env``'s ledger (local store only)."""
        return self.root / "ledger" / f"{env}.jsonl"

    def append(self, env: str, kind: str, **data: Any) -> dict[str, Any]:
        """Append one record, chained to the environment's last one. Raises :class:`StateUnavailable` when the
        store cannot be written: a caller about to change something must not go on."""
        return self.append_record(env, {"ts": utcnow(), "env": env, "kind": kind, **data})

    def append_record(self, env: str, record: dict[str, Any]) -> dict[str, Any]:
        written: dict[str, Any] = {}
        record = {**record, "uid": record.get("uid") or uuid.uuid4().hex}  # tells a retried write from another

        def make(last: bytes | None) -> bytes:
            previous = json.loads(last) if last else None
            written.clear()
            written.update(chain(record, previous))
            return json.dumps(written, sort_keys=True, default=str).encode()

        self.store_for(env).append(env, make)
        return dict(written)

    def raw_records(self, env: str) -> list[tuple[str, bytes]]:
        return self.store_for(env).read_records(env)

    def records(self, env: str, *, kind: str | None = None, run_id: str | None = None) -> list[dict[str, Any]]:
        out = []
        unreadable = self._unreadable.setdefault(env, [])
        for where, raw in self.raw_records(env):
            try:
                record = json.loads(raw)
            except ValueError:
                if where not in unreadable:
                    unreadable.append(where)
                    path, _, line = where.rpartition(": line ")
                    if line.isdigit():
                        self.torn_lines.append((path, int(line)))
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
                run.update({k: v for k, v in record.items() if k not in {"kind", "ts", "seq", "prev", "hash"}},
                           started=record["ts"])
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
        """What readers of ``env``'s ledger had to skip, one line each (empty when every record was whole)."""
        return [f"{where} is not a whole record (a write was cut short, for example by a crash) and was skipped"
                for where in self._unreadable.get(env, [])]

    def verify(self, env: str) -> ChainReport:
        """Check ``env``'s hash chain: names each record that was edited, deleted or reordered."""
        report = verify_chain(env, self.raw_records(env))
        report.problems.extend(self.store_for(env).audit(env))
        return report

    # -- locks ---------------------------------------------------------------------------------------------
    def lock_path(self, env: str) -> Path:
        return self.root / "locks" / f"{env}.lock"

    def _read_lock(self, env: str) -> tuple[dict[str, Any], str] | None:
        current = self.store_for(env).read_lock(env)
        if current is None:
            return None
        body, tag = current
        try:
            holder = json.loads(body)
        except ValueError:
            holder = {"who": "unknown (unreadable lock)"}
        return holder, tag

    def lock_holder(self, env: str) -> dict[str, Any] | None:
        current = self._read_lock(env)
        if current is None:
            return None
        holder = current[0]
        holder["lease_expired"] = _lease_expired(holder, self.wall())
        holder["stale"] = _is_stale(holder) or holder["lease_expired"]
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
        """Hold the environment's lock for the duration of the block, or raise :class:`LockHeld`.

        The lock carries a lease (``lease_until``, wall-clock seconds) renewed in the background every third of
        ``lease_seconds`` while the block runs; a lease past its time makes the lock stale, which refusals say
        and ``break_lock`` acts on, never anything silent."""
        clock = clock or SystemClock()
        store = self.store_for(env)
        holder = {
            "who": whoami(),
            "caller": store.caller(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": utcnow(),
            "purpose": purpose,
            "run_id": run_id,
            "token": uuid.uuid4().hex,
            "lease_seconds": self.lease_seconds,
            "lease_until": self.wall() + self.lease_seconds,
        }
        deadline = clock.now() + wait_seconds
        while True:
            tag = store.create_lock(env, json.dumps(holder).encode())
            if tag is not None:
                break
            current = self.lock_holder(env) or {}
            if clock.now() >= deadline or current.get("stale"):  # a dead holder never releases it
                raise LockHeld(env, current, unfinished=self._unfinished(env, current)) from None
            clock.sleep(min(1.0, max(0.05, deadline - clock.now())))
        renewer = _LeaseRenewer(self, env, holder, tag)
        renewer.start()
        try:
            yield holder
        finally:
            tag = renewer.stop()
            with contextlib.suppress(StateUnavailable):
                store.delete_lock(env, tag)

    def renew(self, env: str, holder: dict[str, Any], tag: str) -> str | None:
        """Extend the lease of the lock taken as ``holder``; ``None`` when it is no longer ours."""
        holder["lease_until"] = self.wall() + self.lease_seconds
        return self.store_for(env).replace_lock(env, json.dumps(holder).encode(), tag)

    def holds(self, env: str, token: str) -> bool:
        """Whether the lock of ``env`` is still the one taken with ``token`` (nobody broke it meanwhile)."""
        current = self._read_lock(env)
        return current is not None and current[0].get("token") == token

    def break_lock(self, env: str, *, force: bool = False) -> dict[str, Any] | None:
        """Remove the lock of ``env``, recorded. A holder that may be alive (its pid runs on this host, or its
        lease is current) is refused unless ``force``, because its run would go on moving the alias beside
        whoever takes the lock next."""
        current = self._read_lock(env)
        if current is None:
            return None
        holder, tag = current
        holder["lease_expired"] = _lease_expired(holder, self.wall())
        holder["stale"] = _is_stale(holder) or holder["lease_expired"]
        # a lease past its time outweighs a pid that still exists (a stopped or hung run); a current lease on
        # another host is taken as alive, since nobody can look at its pid from here
        alive = not holder["stale"] and (_is_alive(holder) or "lease_until" in holder)
        if alive and not force:
            raise RefusedError(
                f"the lock of {env} is held by {holder.get('who')} (pid {holder.get('pid')} on {holder.get('host')}, "
                f"{holder.get('purpose') or 'unknown purpose'}), which is still running"
                + (f" (lease renewed until {_iso(holder['lease_until'])})" if "lease_until" in holder else ""),
                hint="wait for it to end or stop it (Ctrl-C rolls it back); to break the lock anyway, and have that "
                f"run stop at its next alias change: promoter lock break --env {env} --force",
            )
        if not self.store_for(env).delete_lock(env, tag):
            raise RefusedError(f"the lock of {env} changed while it was being broken (renewed or taken again)",
                               hint=f"look again: promoter status --env {env}")
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


class _LeaseRenewer:
    """Renews a held lock's lease every third of the lease, on a daemon thread, until stopped."""

    def __init__(self, ledger: Ledger, env: str, holder: dict[str, Any], tag: str) -> None:
        self.ledger, self.env, self.holder, self.tag = ledger, env, holder, tag
        self._stop = threading.Event()
        self._guard = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"lease-{env}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        interval = max(0.05, float(self.ledger.lease_seconds) / 3)
        while not self._stop.wait(interval):
            with self._guard:
                if self._stop.is_set():
                    return
                try:
                    tag = self.ledger.renew(self.env, dict(self.holder), self.tag)
                except StateUnavailable:
                    continue  # the store is unreachable for now; the lease runs on, the next turn tries again
                if tag is None:
                    return  # broken or taken over: ``holds`` tells the run before its next alias change
                self.tag = tag

    def stop(self) -> str:
        with self._guard:
            self._stop.set()
        return self.tag


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


def _lease_expired(holder: dict[str, Any], now: float) -> bool:
    until = holder.get("lease_until")
    return isinstance(until, int | float) and now > until


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def migrate_ledger(source: Ledger, destination: Ledger, env: str) -> dict[str, Any]:
    """Copy ``env``'s records from ``source`` to ``destination``, in order, each re-chained in the destination
    and carrying ``migrated_from`` (its hash in the source). Records copied before are skipped, so a second run
    copies only what was appended since. Refused when the source's chain is broken: a copy must not launder it."""
    report = source.verify(env)
    if not report.ok:
        raise RefusedError(f"the ledger of {env} at {source.describe(env)} fails verification: "
                           + "; ".join(report.problems[:3]),
                           hint=f"promoter ledger verify --env {env} lists every problem")
    done = {r.get("migrated_from") for r in destination.records(env) if r.get("migrated_from")}
    copied = skipped = 0
    for record in source.records(env):
        origin = record.get("hash") or record_hash(record)
        if origin in done:
            skipped += 1
            continue
        body = {k: v for k, v in record.items() if k not in {"seq", "prev", "hash"}}
        destination.append_record(env, {**body, "migrated_from": origin})
        done.add(origin)
        copied += 1
    return {"env": env, "copied": copied, "skipped": skipped, "from": source.describe(env),
            "to": destination.describe(env)}
