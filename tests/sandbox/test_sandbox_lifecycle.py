"""Starting and stopping: nothing half-up after a failed start, no process left after down."""

from __future__ import annotations

import json
import os

import boto3
import pytest

from promoter.errors import ConfigurationError
from promoter.plan.loader import load_plan
from promoter.sandbox.manager import Sandbox, process_tree

pytestmark = pytest.mark.sandbox


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "Z"


def test_a_start_that_misses_its_deadline_leaves_nothing_running(tmp_path, plan_path):
    # GIVEN a deadline no process can meet
    with pytest.raises(ConfigurationError, match=r"did not answer .* in time.*moto\.log"):
        Sandbox.up(plan=load_plan(plan_path), env="sit", state_dir=tmp_path, plan_path=plan_path,
                   ready_timeout=0.0)
    # THEN no record is left, and the moto process it started is gone
    assert not (tmp_path / "state.json").exists()
    log = (tmp_path / "logs" / "moto.log").read_text()
    assert "promoter.sandbox.moto_server" in log
    with pytest.raises(ConfigurationError, match="no sandbox is running"):
        Sandbox.attach(tmp_path)


def test_down_stops_every_process_including_workers(tmp_path, plan_path):
    plan = load_plan(plan_path)
    names = plan.names("sit")
    sandbox = Sandbox.up(plan=plan, env="sit", state_dir=tmp_path, plan_path=plan_path)
    try:
        # GIVEN a warm worker behind the Lambda front
        lam = boto3.client("lambda", endpoint_url=sandbox.endpoints["lambda_"], region_name=sandbox.region)
        event = {"httpMethod": "GET", "path": plan.service.health_path, "resource": plan.service.health_path,
                 "headers": {}, "requestContext": {}}
        assert lam.invoke(FunctionName=names.function, Qualifier=names.alias,
                          Payload=json.dumps(event).encode())["StatusCode"] == 200
        pids = {pid for record in sandbox.state["processes"].values() for pid in process_tree(record)}
        assert len(pids) > len(sandbox.state["processes"])  # the worker is among them
    finally:
        # WHEN the sandbox goes down
        Sandbox.attach(tmp_path).down()
    # THEN every process is gone and the record is removed
    assert [pid for pid in pids if not _gone(pid)] == []
    assert not (tmp_path / "state.json").exists() and not (tmp_path / "env.sh").exists()
    assert Sandbox.recorded(tmp_path) is None


def test_a_stale_record_is_reported_and_cleared_by_down(tmp_path):
    # GIVEN a state file whose process has exited
    import subprocess
    import sys

    from typer.testing import CliRunner

    from promoter.cli.app import app

    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    record = {"pid": finished.pid, "pgid": finished.pid, "start_time": "1", "port": 1, "url": "http://127.0.0.1:1",
              "log": str(tmp_path / "moto.log"), "command": [sys.executable, "-m", "promoter.sandbox.moto_server"]}
    (tmp_path / "state.json").write_text(json.dumps({"env": "sit", "region": "eu-west-1", "processes":
                                                     {"moto": record}}))
    # WHEN it is attached to, THEN it says the sandbox is gone
    with pytest.raises(ConfigurationError, match="not running any more"):
        Sandbox.attach(tmp_path)
    # AND `down` clears the record
    result = CliRunner().invoke(app, ["sandbox", "down", "--state-dir", str(tmp_path), "--json"],
                                env={"COLUMNS": "120", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"state_dir": str(tmp_path.resolve()), "stopped": ["moto"]}
    assert not (tmp_path / "state.json").exists()


def test_status_of_a_sandbox_with_a_process_gone_exits_1_and_down_stops_the_rest(tmp_path):
    # GIVEN a recorded sandbox whose moto has exited while its Lambda front still runs
    import subprocess
    import sys

    from typer.testing import CliRunner

    from promoter.cli.app import app
    from promoter.sandbox.manager import _start_time

    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        def record(proc, name):
            return {"pid": proc.pid, "pgid": proc.pid, "start_time": _start_time(proc.pid) or "1", "port": 1,
                    "url": "http://127.0.0.1:1", "log": str(tmp_path / f"{name}.log"),
                    "command": [sys.executable, "-m", f"promoter.sandbox.{name}"]}

        (tmp_path / "state.json").write_text(json.dumps({"env": "sit", "region": "eu-west-1", "processes": {
            "moto": record(finished, "moto_server"), "lambda_front": record(running, "lambda_front")}}))
        runner, env = CliRunner(), {"COLUMNS": "120", "NO_COLOR": "1"}

        # WHEN its status is asked for, THEN it says which process is gone and exits 1
        status = runner.invoke(app, ["sandbox", "status", "--state-dir", str(tmp_path), "--json"], env=env)
        assert status.exit_code == 1, status.output
        report = json.loads(status.stdout)
        assert report["healthy"] is False
        assert {name: p["alive"] for name, p in report["processes"].items()} == {"moto": False,
                                                                                 "lambda_front": True}
        human = runner.invoke(app, ["sandbox", "status", "--state-dir", str(tmp_path)], env=env)
        assert human.exit_code == 1 and "DEGRADED" in human.stdout

        # AND down stops what still runs
        down = runner.invoke(app, ["sandbox", "down", "--state-dir", str(tmp_path)], env=env)
        assert down.exit_code == 0, down.output
        assert running.wait(timeout=10) is not None
    finally:
        if running.poll() is None:
            running.kill()
            running.wait()


def test_an_unusable_state_dir_is_an_error_not_a_traceback(tmp_path):
    from typer.testing import CliRunner

    from promoter.cli.app import app

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = CliRunner().invoke(app, ["sandbox", "up", "--state-dir", str(blocker / "sandbox")],
                                env={"COLUMNS": "120", "NO_COLOR": "1"})
    assert result.exit_code == 1
    assert "cannot create the sandbox state directory" in result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, OSError)
