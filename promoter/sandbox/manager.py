"""Start, seed, inspect and stop the embedded sandbox of one environment.

``Sandbox.up`` runs these stages, and stops whatever it started if any of them fails (nothing is left
half-up):

1. refuse if a sandbox already runs in the state directory (one sandbox per state directory);
2. start moto's server (:mod:`promoter.sandbox.moto_server`, under the environment's account id) and the Lambda
   front, each a detached process in its own session (so its process group holds its workers too), on free
   loopback ports, output to ``<state-dir>/logs/<name>.log``, pid in ``<state-dir>/state.json``;
3. wait for moto (``GET /moto-api/``), then seed the baseline (:func:`promoter.sandbox.seed.seed_baseline`);
4. start the API front with the user pool the baseline created;
5. wait for the Lambda front (``GET /__sandbox/health``), create the function through it
   (:func:`promoter.sandbox.seed.seed_function`);
6. wait for the API front (``GET /__sandbox/health``), write ``<state-dir>/env.sh``.

``Sandbox.down`` stops each process group (SIGTERM, a deadline, then SIGKILL) and removes ``state.json``.
Every wait takes a clock and a deadline.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promoter.engine.ledger import Clock, SystemClock, default_home, utcnow
from promoter.errors import ConfigurationError, PromoterError, RefusedError, UsageError

if TYPE_CHECKING:
    from promoter.plan.models import Plan

STATE_FILE = "state.json"
ENV_FILE = "env.sh"
LOCK_FILE = ".up.lock"
HEALTH_PATH = "/__sandbox/health"
MOTO_HEALTH_PATH = "/moto-api/"
PROCESS_ORDER = ("moto", "lambda_front", "api_front")
DUMMY_KEY = "testing"

Progress = Callable[[str], None]


def default_state_dir() -> Path:
    """``<ledger home>/sandbox``: ``.promoter/sandbox`` or ``$PROMOTER_HOME/sandbox``."""
    return default_home() / "sandbox"


class Sandbox:
    """A handle to a running sandbox, described by ``<state-dir>/state.json``."""

    def __init__(self, state_dir: Path, state: dict[str, Any], handles: dict[str, subprocess.Popen] | None = None):
        self.state_dir = Path(state_dir)
        self.state = state
        self._handles = handles or {}
        self._workers: list[dict[str, Any]] | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------
    @classmethod
    def up(
        cls,
        plan: Plan,
        env: str,
        state_dir: str | os.PathLike[str] | None = None,
        plan_path: str | os.PathLike[str] | None = None,
        *,
        ready_timeout: float = 30.0,
        clock: Clock | None = None,
        progress: Progress = lambda _m: None,
        fronts: bool = True,
        repo: str | os.PathLike[str] | None = None,
    ) -> Sandbox:
        """Start and seed a sandbox for ``env``; refuse when one already runs in ``state_dir``.

        ``fronts=False`` starts moto alone and creates the function in moto directly: no ``Invoke``, no API;
        for checking the baseline on its own.
        """
        from promoter.adapters.git import find_repository
        from promoter.plan.loader import default_plan_path

        spec = plan.environment(env)
        state_dir = Path(state_dir or default_state_dir()).resolve()
        root = find_repository(repo)  # v1.0.0 is built from this checkout's code
        plan_file = Path(plan_path or default_plan_path(root)).resolve()
        clock = clock or SystemClock()
        for module in ("promoter.sandbox.lambda_front", "promoter.sandbox.api_front") if fronts else ():
            if importlib.util.find_spec(module) is None:
                raise ConfigurationError(f"the sandbox cannot start: module {module} is not installed")
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(f"cannot create the sandbox state directory {state_dir}: {exc.strerror}",
                                     hint="choose a writable one with --state-dir or PROMOTER_HOME") from None
        with _exclusive(state_dir / LOCK_FILE):
            existing = _read_state(state_dir)
            if existing is not None:
                running = cls(state_dir, existing)
                if running.alive_processes():
                    raise RefusedError(
                        f"a sandbox for {existing.get('env')} is already running in {state_dir}: "
                        + ", ".join(f"{k.rstrip('_')} {v}" for k, v in running.endpoints.items() if v),
                        hint=f'use it: eval "$(promoter sandbox env --state-dir {state_dir})"; '
                        f"or stop it: promoter sandbox down --state-dir {state_dir}",
                    )
                running.down()  # a stale record: stop any straggler of its groups, then forget it
            sandbox = cls(state_dir, {
                "env": env,
                "account_id": spec.account_id,
                "region": spec.region,
                "plan_path": str(plan_file),
                "repo": str(root),
                "state_dir": str(state_dir),
                "status": "starting",
                "started_at": utcnow(),
                "processes": {},
                "seed": {},
            })
            try:
                sandbox._start(plan, env, clock, ready_timeout, progress, fronts)
            except BaseException as exc:
                progress("start failed; stopping what was started")
                sandbox.down()
                if isinstance(exc, PromoterError) or not isinstance(exc, Exception):
                    raise
                raise ConfigurationError(
                    f"the sandbox could not be seeded: {type(exc).__name__}: {exc}",
                    hint=f"see the logs in {state_dir / 'logs'}",
                ) from exc
        return sandbox

    @classmethod
    def recorded(cls, state_dir: str | os.PathLike[str] | None = None) -> Sandbox | None:
        """The sandbox recorded in ``state_dir``, running or not; None when there is no record."""
        state_dir = Path(state_dir or default_state_dir()).resolve()
        state = _read_state(state_dir)
        return None if state is None else cls(state_dir, state)

    @classmethod
    def attach(cls, state_dir: str | os.PathLike[str] | None = None) -> Sandbox:
        """A handle to the sandbox running in ``state_dir``; raises when none runs there."""
        state_dir = Path(state_dir or default_state_dir()).resolve()
        state = _read_state(state_dir)
        if state is None:
            raise ConfigurationError(
                f"no sandbox is running in {state_dir}", hint="start one: promoter sandbox up --env ENV"
            )
        sandbox = cls(state_dir, state)
        if not sandbox.alive_processes():
            raise ConfigurationError(
                f"the sandbox in {state_dir} is not running any more (its processes are gone)",
                hint=f"clean up and restart: promoter sandbox down --state-dir {state_dir} && promoter sandbox up",
            )
        return sandbox

    def down(self, grace_seconds: float = 5.0, clock: Clock | None = None) -> None:
        """Stop every process group this sandbox started and forget it. Leaves no process behind."""
        clock = clock or SystemClock()
        for name in reversed(PROCESS_ORDER):
            record = self.state.get("processes", {}).get(name)
            if record:
                _stop_group(record, self._handles.get(name), grace_seconds, clock)
        self._forget()

    # -- views ---------------------------------------------------------------------------------------------
    @property
    def endpoints(self) -> dict[str, str]:
        processes = self.state.get("processes", {})
        moto = processes.get("moto", {}).get("url", "")
        return {
            "moto": moto,
            "lambda_": processes.get("lambda_front", {}).get("url", moto),
            "api": processes.get("api_front", {}).get("url", ""),
        }

    @property
    def env(self) -> str:
        return self.state["env"]

    @property
    def region(self) -> str:
        return self.state["region"]

    def env_vars(self) -> dict[str, str]:
        """The variables of ``env.sh``: they point any AWS SDK, the AWS CLI and promoter at this sandbox."""
        endpoints = self.endpoints
        return {
            "AWS_ENDPOINT_URL": endpoints["moto"],
            "AWS_ENDPOINT_URL_LAMBDA": endpoints["lambda_"],
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": DUMMY_KEY,
            "AWS_SECRET_ACCESS_KEY": DUMMY_KEY,
            "PROMOTER_API_URL": endpoints["api"],
            "PROMOTER_ENV": self.env,
            "PROMOTER_SANDBOX": str(self.state_dir),
        }

    def env_script(self) -> str:
        lines = [
            f"# promoter sandbox for environment {self.env} (state in {self.state_dir})",
            '# load with: eval "$(promoter sandbox env)"',
            "unset AWS_PROFILE",
        ]
        lines += [f"export {key}={shlex.quote(value)}" for key, value in self.env_vars().items()]
        return "\n".join(lines) + "\n"

    def alive_processes(self) -> list[str]:
        processes = self.state.get("processes", {})
        return [name for name in PROCESS_ORDER if name in processes and _alive(processes[name])]

    def token(self, group: str) -> str:
        """A Cognito IdToken for the test user of ``group`` (``none``: the user in no group)."""
        from promoter.sandbox.seed import TEST_PASSWORD

        seeded = self.state.get("seed", {})
        users = seeded.get("users", {})
        if group not in users:
            raise UsageError(f"no test user for group {group!r}; known: {', '.join(sorted(users))}")
        cognito = self._client("cognito-idp")
        answer = cognito.admin_initiate_auth(
            UserPoolId=seeded["user_pool_id"],
            ClientId=seeded["user_pool_client_id"],
            AuthFlow="ADMIN_USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": users[group], "PASSWORD": TEST_PASSWORD},
        )
        return answer["AuthenticationResult"]["IdToken"]

    def status(self) -> dict[str, Any]:
        """Processes (pid, alive, port), endpoints, the function's versions and the alias weights."""
        from promoter.plan.loader import load_plan

        processes = {
            name: {"pid": rec["pid"], "alive": _alive(rec), "port": rec["port"], "url": rec["url"],
                   "log": rec["log"]}
            for name, rec in sorted(self.state.get("processes", {}).items(),
                                    key=lambda item: PROCESS_ORDER.index(item[0]))
        }
        report: dict[str, Any] = {
            "env": self.env,
            "region": self.region,
            "account_id": self.state.get("account_id"),
            "state_dir": str(self.state_dir),
            "status": self.state.get("status"),
            "started_at": self.state.get("started_at"),
            "endpoints": self.endpoints,
            "processes": processes,
            "healthy": bool(processes) and all(p["alive"] for p in processes.values()),
        }
        try:
            names = load_plan(self.state["plan_path"]).names(self.env)
            lam = self._client("lambda", endpoint=self.endpoints["lambda_"])
            versions = lam.list_versions_by_function(FunctionName=names.function)["Versions"]
            alias = lam.get_alias(FunctionName=names.function, Name=names.alias)
            extra = alias.get("RoutingConfig", {}).get("AdditionalVersionWeights", {})
            weights = {alias["FunctionVersion"]: round(1.0 - sum(extra.values()), 6), **extra}
            report["function"] = {
                "name": names.function,
                "versions": [{"version": v["Version"], "description": v.get("Description", ""),
                              "runtime": v.get("Runtime"), "python": self._python_for(v)}
                             for v in versions if v["Version"] != "$LATEST"],
                "alias": {"name": names.alias, "version": alias["FunctionVersion"], "weights": weights,
                          "revision_id": alias.get("RevisionId")},
            }
        except Exception as exc:  # a status report must still show the processes when the function cannot be read
            report["function"] = {"error": f"{type(exc).__name__}: {exc}"}
        return report

    def _python_for(self, version: dict[str, Any]) -> dict[str, Any]:
        """Which interpreter runs a version: its live environments' if it has any, else the one it would get."""
        from promoter.sandbox.runtimes import RuntimeUnavailable, resolve_interpreter

        if self._workers is None:
            self._workers = self._live_workers()
        for worker in self._workers:
            if worker.get("version") == version["Version"] and worker.get("python"):
                return {**worker["python"], "running": True}
        try:
            return {**resolve_interpreter(version.get("Runtime") or "").to_dict(), "running": False}
        except RuntimeUnavailable as exc:
            return {"error": str(exc), "running": False}

    def _live_workers(self) -> list[dict[str, Any]]:
        url = self.endpoints.get("lambda_")
        if not url:
            return []
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
        try:
            with opener.open(url + "/__sandbox/workers", timeout=5) as reply:
                return list(json.loads(reply.read()))
        except (OSError, ValueError):
            return []

    # -- faults ----------------------------------------------------------------------------------------------
    def _faults_urls(self, service: str | None = None) -> list[str]:
        """Where the rules for ``service`` live: Lambda's on the Lambda front, every other service's on moto."""
        from promoter.sandbox.faults import PATH

        endpoints = self.endpoints
        lambda_front = endpoints["lambda_"] if endpoints["lambda_"] != endpoints["moto"] else None
        if service == "lambda" and lambda_front:
            return [lambda_front + PATH]
        if service is not None:
            return [endpoints["moto"] + PATH]
        return [endpoints["moto"] + PATH] + ([lambda_front + PATH] if lambda_front else [])

    def _faults_call(self, method: str, url: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with opener.open(request, timeout=10) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = json.loads(exc.read() or b"{}").get("message", exc.reason)
            raise UsageError(f"fault refused by the sandbox: {detail}") from None
        except (OSError, urllib.error.URLError) as exc:
            raise ConfigurationError(f"the sandbox did not answer at {url}: {exc}",
                                     hint="check it with promoter sandbox status") from None

    def add_fault(self, rule: dict[str, Any]) -> dict[str, Any]:
        """Add a fault rule (see :mod:`promoter.sandbox.faults`) where the calls of its service are served."""
        (url,) = self._faults_urls(str(rule.get("service") or ""))
        return self._faults_call("POST", url, rule)

    def faults(self) -> list[dict[str, Any]]:
        return [rule for url in self._faults_urls() for rule in self._faults_call("GET", url).get("faults", [])]

    def clear_faults(self) -> int:
        return sum(int(self._faults_call("DELETE", url).get("cleared", 0)) for url in self._faults_urls())

    # -- internals -----------------------------------------------------------------------------------------
    def _client(self, service: str, endpoint: str | None = None) -> Any:
        import boto3

        return boto3.client(service, endpoint_url=endpoint or self.endpoints["moto"], region_name=self.region,
                            aws_access_key_id=DUMMY_KEY, aws_secret_access_key=DUMMY_KEY)

    def _start(
        self, plan: Plan, env: str, clock: Clock, ready_timeout: float, progress: Progress, fronts: bool
    ) -> None:
        from promoter.sandbox.seed import Target, seed_baseline, seed_function

        started = clock.now()
        deadline = started + ready_timeout
        moto_port, lambda_port, api_port = _free_ports(3)
        moto_url, lambda_url, api_url = (f"http://127.0.0.1:{p}" for p in (moto_port, lambda_port, api_port))
        state_dir = str(self.state_dir)

        progress(f"starting moto on {moto_url} (account {self.state['account_id']})")
        self._spawn("moto", "promoter.sandbox.moto_server", moto_port,
                    ["--port", str(moto_port), "--account-id", self.state["account_id"], "--region", self.region])
        if fronts:
            progress(f"starting the Lambda front on {lambda_url}")
            self._spawn("lambda_front", "promoter.sandbox.lambda_front", lambda_port,
                        ["--port", str(lambda_port), "--moto-url", moto_url, "--state-dir", state_dir,
                         "--region", self.region])
        self._wait_ready("moto", moto_url + MOTO_HEALTH_PATH, clock, deadline)
        progress(f"moto ready after {clock.now() - started:.1f}s; seeding the baseline")
        target = Target(moto_url=moto_url, region=self.region, lambda_url=lambda_url if fronts else None)
        seeded = seed_baseline(plan, env, target, progress=progress)
        self.state["seed"] = seeded.to_dict()
        self._save()

        if fronts:
            progress(f"starting the API front on {api_url}")
            self._spawn("api_front", "promoter.sandbox.api_front", api_port,
                        ["--port", str(api_port), "--moto-url", moto_url, "--lambda-url", lambda_url, "--env", env,
                         "--plan", self.state["plan_path"], "--state-dir", state_dir, "--region", self.region,
                         "--user-pool-id", seeded.user_pool_id])
            self._wait_ready("lambda_front", lambda_url + HEALTH_PATH, clock, clock.now() + ready_timeout)
        seeded = seed_function(plan, env, target, seeded, repo=Path(self.state["repo"]),
                               artifacts_dir=self.state_dir / "artifacts",
                               progress=progress)
        self.state["seed"] = seeded.to_dict()
        if fronts:
            self._wait_ready("api_front", api_url + HEALTH_PATH, clock, clock.now() + ready_timeout)
        self.state["status"] = "up"
        self.state["ready_seconds"] = round(clock.now() - started, 2)
        self._save()
        _write_atomic(self.state_dir / ENV_FILE, self.env_script())
        progress(f"sandbox up after {self.state['ready_seconds']}s")

    def _spawn(self, name: str, module: str, port: int, args: list[str]) -> None:
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{name}.log"
        child_env = {k: v for k, v in os.environ.items()
                     if not k.startswith("AWS_ENDPOINT_URL") and k not in {"AWS_PROFILE", "AWS_DEFAULT_PROFILE"}}
        child_env.update(AWS_ACCESS_KEY_ID=DUMMY_KEY, AWS_SECRET_ACCESS_KEY=DUMMY_KEY,
                         AWS_DEFAULT_REGION=self.region, AWS_REGION=self.region, PYTHONUNBUFFERED="1")
        command = [sys.executable, "-m", module, *args]
        with open(log_path, "ab") as log:
            log.write(f"--- {utcnow()} {shlex.join(command)}\n".encode())
            log.flush()
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True, env=child_env, close_fds=True)
        self._handles[name] = process
        self.state["processes"][name] = {
            "pid": process.pid,
            "pgid": process.pid,  # a new session: the child leads its own process group
            "start_time": _start_time(process.pid),
            "port": port,
            "url": f"http://127.0.0.1:{port}",
            "log": str(log_path),
            "command": command,
        }
        self._save()

    def _wait_ready(self, name: str, url: str, clock: Clock, deadline: float) -> None:
        record = self.state["processes"][name]
        handle = self._handles.get(name)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        last = "no answer"
        while True:
            code = handle.poll() if handle else (None if _alive(record) else "?")
            if code is not None:
                raise ConfigurationError(
                    f"the sandbox's {name} exited while starting (exit code {code}); see {record['log']}",
                    hint=_tail(record["log"]),
                )
            try:
                with opener.open(url, timeout=2) as answer:
                    if answer.status == 200:
                        return
                    last = f"HTTP {answer.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except (OSError, urllib.error.URLError) as exc:
                last = str(getattr(exc, "reason", exc))
            if clock.now() >= deadline:
                raise ConfigurationError(
                    f"the sandbox's {name} did not answer {url} in time (last: {last}); see {record['log']}",
                    hint=_tail(record["log"]),
                )
            clock.sleep(0.1)

    def _save(self) -> None:
        _write_atomic(self.state_dir / STATE_FILE, json.dumps(self.state, indent=2, sort_keys=True) + "\n")

    def _forget(self) -> None:
        for name in (STATE_FILE, ENV_FILE):
            with contextlib.suppress(FileNotFoundError):
                (self.state_dir / name).unlink()


@contextlib.contextmanager
def sandbox_session(
    plan: Plan | None = None,
    env: str = "sit",
    state_dir: str | os.PathLike[str] | None = None,
    plan_path: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Iterator[Sandbox]:
    """Up a sandbox, yield it, and always take it down."""
    if plan is None:
        from promoter.plan.loader import load_plan

        plan = load_plan(plan_path)
    sandbox = Sandbox.up(plan=plan, env=env, state_dir=state_dir, plan_path=plan_path, **options)
    try:
        yield sandbox
    finally:
        sandbox.down()


# -- processes -------------------------------------------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (index 0 = state), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return text.rsplit(")", 1)[1].split()


def _start_time(pid: int) -> str | None:
    fields = _proc_stat(pid)
    return fields[19] if fields else None


def _alive(record: dict[str, Any]) -> bool:
    """Whether the recorded process still runs: not gone, not a zombie, and not a later process with its pid."""
    fields = _proc_stat(int(record["pid"]))
    if not fields or fields[0] in {"Z", "X"}:
        return False
    return record.get("start_time") is None or fields[19] == record["start_time"]


def _process_table() -> dict[int, tuple[int, int, str]]:
    """Live (non-zombie) processes: pid -> (ppid, pgid, start time)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _proc_stat(int(entry.name))
            if fields and fields[0] not in {"Z", "X"}:
                table[int(entry.name)] = (int(fields[1]), int(fields[2]), fields[19])
    return table


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    return [pid for pid, (_ppid, group, _start) in _process_table().items() if group == pgid]


def process_tree(record: dict[str, Any]) -> dict[int, str]:
    """The live processes a recorded sandbox process stands for: its process group and all its descendants
    (workers that started sessions of their own included), as pid -> start time."""
    table = _process_table()
    pgid = int(record.get("pgid", record["pid"]))
    if not _owns_group(record, table):
        return {}
    found = {pid: start for pid, (_ppid, group, start) in table.items() if group == pgid}
    frontier = list(found)
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _group, start) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = start
                frontier.append(pid)
    return found


def _owns_group(record: dict[str, Any], table: dict[int, tuple[int, int, str]] | None = None) -> bool:
    """False when the group's leader pid now belongs to a different process (pid reuse): hands off."""
    table = _process_table() if table is None else table
    pgid = int(record.get("pgid", record["pid"]))
    return _alive(record) or pgid not in table


def _still_running(known: dict[int, str]) -> dict[int, str]:
    alive = {}
    for pid, start in known.items():
        fields = _proc_stat(pid)
        if fields and fields[0] not in {"Z", "X"} and fields[19] == start:
            alive[pid] = start
    return alive


def _reap(pid: int, handle: subprocess.Popen | None) -> None:
    if handle is not None:
        handle.poll()
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child: its parent (or init) reaps it


def _stop_group(record: dict[str, Any], handle: subprocess.Popen | None, grace: float, clock: Clock) -> None:
    """SIGTERM the process group and every descendant, wait up to ``grace``; then SIGKILL what is left."""
    pid, pgid = int(record["pid"]), int(record.get("pgid", record["pid"]))
    known = process_tree(record)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if _owns_group(record):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)
        for child, _start in _still_running(known).items():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(child, sig)
        deadline = clock.now() + grace
        while True:
            _reap(pid, handle)
            known.update(process_tree(record))  # children started while stopping are stopped too
            known = _still_running(known)
            if not known:
                return
            if clock.now() >= deadline:
                break
            clock.sleep(0.05)
    raise ConfigurationError(f"processes {sorted(known)} of {record['command'][2]} survived SIGKILL")


def _tail(path: str, lines: int = 12) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"no log at {path}"
    return "last lines of the log:\n" + "\n".join(text)


def _read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((state_dir / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"unreadable sandbox state {state_dir / STATE_FILE}: {exc}",
                                 hint="stop its processes by hand, then remove the file") from None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    try:
        lock_file = open(path, "a")  # noqa: SIM115 - closed by the with block below
    except OSError as exc:
        raise ConfigurationError(f"cannot write in the sandbox state directory {path.parent}: {exc.strerror}",
                                 hint="choose a writable one with --state-dir or PROMOTER_HOME") from None
    with lock_file as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RefusedError(f"another `promoter sandbox up` is starting in {path.parent}",
                               hint="wait for it, then use `promoter sandbox status`") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


__all__ = ["Sandbox", "default_state_dir", "group_members", "process_tree", "sandbox_session"]
