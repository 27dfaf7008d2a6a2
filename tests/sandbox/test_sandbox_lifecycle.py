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
    result = CliRunner().invoke(app, ["sandbox", "down", "--state-dir", str(tmp_path)],
                                env={"COLUMNS": "120", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "state.json").exists()
