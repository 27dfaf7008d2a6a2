"""Two checkouts sharing one S3 state store, on a moto server on loopback: each command runs as its own
``promoter`` process in its own directory, as two engineers' machines would.

moto checks ``If-None-Match``/``If-Match`` on PutObject and ``If-Match`` on DeleteObject; the ordering of truly
concurrent writers is tested on ``InMemoryS3`` in ``tests/unit/test_state_s3.py``, which serialises requests to a
key the way S3 does.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

BUCKET = "team-promoter-state"
URL = f"s3://{BUCKET}/campaigns"
ROOT = Path(__file__).resolve().parents[2]

HOLDER = """
import sys, time
from promoter.cli.common import App
ledger = App(state_url=sys.argv[1]).ledger()
ledger.lease_seconds = float(sys.argv[2])
with ledger.lock("sit", purpose="deploy", run_id="run-a") as holder:
    print(json.dumps(holder), flush=True)
    sys.stdin.readline()
    print("holds" if ledger.holds("sit", holder["token"]) else "lost", flush=True)
"""


@pytest.fixture(scope="module")
def moto_url():
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(moto_url, monkeypatch):
    client = boto3.client("s3", endpoint_url=moto_url, region_name="eu-west-1")
    for obj in client.list_object_versions(Bucket=BUCKET).get("Versions", []) if _exists(client) else []:
        client.delete_object(Bucket=BUCKET, Key=obj["Key"], VersionId=obj["VersionId"])
    if not _exists(client):
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    for marker in client.list_object_versions(Bucket=BUCKET).get("DeleteMarkers", []):
        client.delete_object(Bucket=BUCKET, Key=marker["Key"], VersionId=marker["VersionId"])
    return client


def _exists(client) -> bool:
    return any(b["Name"] == BUCKET for b in client.list_buckets().get("Buckets", []))


@pytest.fixture
def machines(tmp_path, moto_url):
    """Two checkouts: their own directory, the same bucket; no PROMOTER_HOME, so local state would land in it."""
    env = {k: v for k, v in os.environ.items() if k != "PROMOTER_HOME"}
    env.update(AWS_ENDPOINT_URL=moto_url, PROMOTER_STATE=URL, PYTHONPATH=str(ROOT))
    dirs = {}
    for name in ("a", "b"):
        d = tmp_path / name
        d.mkdir()
        dirs[name] = d

    def run(name: str, *args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "promoter", *args,
                                 "--plan", str(ROOT / "plans" / "PROM-CAMP-001.yaml")],
                                cwd=dirs[name], env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode in ok, (result.returncode, result.stdout, result.stderr)
        return result

    def hold(name: str, lease: float = 30.0) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", "import json\n" + HOLDER, URL, str(lease)], cwd=dirs[name],
                                env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        line = proc.stdout.readline()
        if not line:  # it could not take the lock
            proc.wait(30)
            raise AssertionError(proc.stderr.read())
        proc.holder = json.loads(line)
        return proc

    run.hold, run.dirs, run.env = hold, dirs, env
    return run


def test_approval_recorded_on_one_machine_is_seen_on_the_other(s3, machines):
    machines("a", "approve", "--env", "prod", "--gate", "sit-signoff", "--approver", "ana", "--release", "v1.1.0")
    seen = json.loads(machines("b", "ledger", "show", "--env", "prod", "--kind", "approval", "--json").stdout)
    (approval,) = seen["records"]
    assert approval["approver"] == "ana" and approval["gate"] == "sit-signoff" and approval["seq"] == 1
    assert seen["store"].startswith(URL)
    assert not (machines.dirs["a"] / ".promoter" / "ledger").exists()  # nothing went to a local directory
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == ["campaigns/ledger/prod/000000000001.json"]


def test_lock_held_on_one_machine_is_shown_and_refused_on_the_other(s3, machines):
    a = machines.hold("a")
    try:
        status = json.loads(machines("b", "status", "--env", "sit", "--json", ok=(0, 1)).stdout)
        assert status["lock"]["pid"] == a.pid and status["lock"]["run_id"] == "run-a"
        assert status["lock"]["stale"] is False
        refused = machines("b", "lock", "break", "--env", "sit", ok=(1,))
        assert "still running" in refused.stderr
        with pytest.raises(AssertionError, match="locked by"):
            machines.hold("b")
    finally:
        a.stdin.write("\n")
        a.stdin.flush()
        assert a.stdout.readline().strip() == "holds"
        a.wait(30)
    status = json.loads(machines("b", "status", "--env", "sit", "--json", ok=(0, 1)).stdout)
    assert status["lock"] is None


def test_an_expired_lease_is_shown_stale_and_broken_explicitly_recorded(s3, machines):
    a = machines.hold("a", lease=1.0)
    os.kill(a.pid, signal.SIGSTOP)  # the run hangs: its pid exists but it renews nothing
    try:
        time.sleep(1.5)
        status = json.loads(machines("b", "status", "--env", "sit", "--json", ok=(0, 1)).stdout)
        assert status["lock"]["lease_expired"] is True and status["lock"]["stale"] is True
        human = machines("b", "status", "--env", "sit", ok=(0, 1)).stdout
        assert "its lease ran out: promoter lock break --env sit" in human
        broke = json.loads(machines("b", "lock", "break", "--env", "sit", "--json").stdout)
        assert broke["broken"]["run_id"] == "run-a"
    finally:
        os.kill(a.pid, signal.SIGCONT)
    a.stdin.write("\n")
    a.stdin.flush()
    assert a.stdout.readline().strip() == "lost"  # the hung run learns it lost the lock before its next change
    a.wait(30)
    (record,) = json.loads(machines("a", "ledger", "show", "--env", "sit", "--kind", "lock-broken",
                                    "--json").stdout)["records"]
    assert record["holder"]["pid"] == a.pid and record["forced"] is False


def test_migrate_copies_a_local_ledger_once(s3, machines):
    from promoter.engine.ledger import Ledger

    local = Ledger(machines.dirs["a"] / ".promoter")
    local.append("sit", "run-start", run_id="r0", kind_of_run="deploy", release="v1.0.0")
    local.append("sit", "approval", gate="sit-signoff", approver="ana", release="v1.0.0")
    local.append("sit", "run-end", run_id="r0", outcome="succeeded")
    args = ("ledger", "migrate", "--to", URL, "--env", "sit", "--state", str(machines.dirs["a"] / ".promoter"),
            "--json")
    first = json.loads(machines("a", *args).stdout)["environments"][0]
    again = json.loads(machines("a", *args).stdout)["environments"][0]
    assert (first["copied"], first["skipped"]) == (3, 0) and (again["copied"], again["skipped"]) == (0, 3)
    shared = json.loads(machines("b", "ledger", "show", "--env", "sit", "--json").stdout)["records"]
    assert [r["kind"] for r in shared] == ["run-start", "approval", "run-end"]
    assert json.loads(machines("b", "ledger", "verify", "--env", "sit", "--json").stdout)["ok"] is True


def test_verify_names_an_edited_record_and_versioning_keeps_the_original(s3, machines):
    for approver in ("ana", "bo", "cy"):
        machines("a", "approve", "--env", "prod", "--gate", "sit-signoff", "--approver", approver,
                 "--release", "v1.1.0")
    key = "campaigns/ledger/prod/000000000002.json"
    record = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps({**record, "approver": "mallory"}).encode())

    result = machines("b", "ledger", "verify", "--env", "prod", ok=(1,))
    assert key in result.stderr and "edited" in result.stderr
    assert f"{key}: written 2 times" in result.stderr  # the bucket's versions witness it too
    versions = [v for v in s3.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"]]
    assert len(versions) == 2  # the original is still there to restore
