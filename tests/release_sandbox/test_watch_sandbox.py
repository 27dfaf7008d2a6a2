"""``promoter watch``, notifications and ``promoter replay`` against the embedded sandbox, under steady traffic.

The watch's schedule is compressed with ``--time-scale 60`` (a minute of the plan per second): checks every
2 s, with the rollback window and the soak as the test's plan sets them. Notifications go to the sandbox's SNS
topic (read through an SQS queue subscribed to it) and to a real HTTP receiver on 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
import yaml
from typer.testing import CliRunner

from promoter.cli.app import app as cli
from promoter.engine.ledger import Ledger
from promoter.engine.replay import highest_canary_error_pct, threshold_above
from promoter.engine.traffic import SteadyTraffic

pytestmark = pytest.mark.sandbox

ENV = "sit"
CLI_ENV = {"COLUMNS": "120", "NO_COLOR": "1"}
SCALE = "60"


def _alias(s) -> dict:
    data = boto3.client("lambda").get_alias(FunctionName=s.names.function, Name=s.names.alias)
    return {"version": data["FunctionVersion"],
            "weights": (data.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}}


def _traffic(s, rate: float = 30) -> SteadyTraffic:
    return SteadyTraffic(s.api, s.sb.token("campaigns-viewer"), rate=rate, threads=4)


def _run(*args: str):
    return CliRunner().invoke(cli, list(args), env=CLI_ENV)


def _set_watch(s, *, window_minutes: float, soak_minutes: float, until_minutes: float = 12) -> None:
    """The test plan's watch: a check every 2 minutes (2 s at --time-scale 60) to ``until_minutes``, each
    reading up to a minute (1 s) before it is due: the sandbox flushes its metrics every second."""
    data = yaml.safe_load(s.plan_file.read_text())
    data["watch"] = {"periods": [{"until_minutes": until_minutes, "every_minutes": 2}],
                     "rollback_window_minutes": window_minutes, "soak_minutes": soak_minutes,
                     "dynamodb_throttles": 0, "data_lag_seconds": 60}  # 1 s at --time-scale 60
    s.plan_file.write_text(yaml.safe_dump(data, sort_keys=False))


class Receiver:
    """A Slack-compatible incoming webhook on loopback: records every JSON body it is sent."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                bodies.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0))))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T0/B0/x"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[str]:
        return [b["event"] for b in self.bodies]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hooks(sandbox, monkeypatch):
    """The loopback webhook (its URL in PROMOTER_WEBHOOK_URL, as the plan names) and an SQS queue on the topic."""
    receiver = Receiver()
    monkeypatch.setenv("PROMOTER_WEBHOOK_URL", receiver.url)
    sqs, sns = boto3.client("sqs"), boto3.client("sns")
    queue = sqs.create_queue(QueueName="watch-notifications")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = next(t["TopicArn"] for t in sns.list_topics()["Topics"]
                 if t["TopicArn"].endswith(":" + sandbox.names.sns_topic))
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

    def sns_events() -> list[str]:
        out = []
        while True:
            got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
            if not got:
                return out
            for m in got:
                out.append(json.loads(json.loads(m["Body"])["Message"])["event"])
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])

    yield type("Hooks", (), {"webhook": receiver, "sns_events": staticmethod(sns_events)})
    receiver.close()


def _deploy(*args: str):
    return _run("deploy", "--env", ENV, "--allow-untagged", "--yes", "--release", "v1.1.0", *args)


def test_a_healthy_release_soaks_and_the_notifications_reach_sns_and_the_webhook(sandbox, built, hooks):
    _set_watch(sandbox, window_minutes=4, soak_minutes=6, until_minutes=8)
    with _traffic(sandbox):
        deployed = _deploy("--artifact", str(built.good), "--all-at-once", "watch test", "--json")
        assert deployed.exit_code == 0, deployed.output
        result = _run("watch", "--env", ENV, "--time-scale", SCALE, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["outcome"] == "completed" and len(doc["checks"]) == 4
    assert all(c["green"] for c in doc["checks"]), [c["breaches"] for c in doc["checks"]]
    # judged on real traffic (the first window may still be empty: the new version's first execution environment
    # starts, and the sandbox flushes metrics every second, as CloudWatch shows them late)
    assert all(c["observation"]["canary"]["invocations"] >= 5 for c in doc["checks"][1:]), doc["checks"]
    # the service figures beside the version's: peak concurrency as Lambda reports it, no DynamoDB throttling
    assert all(c["figures"]["max_concurrency"] >= 1 for c in doc["checks"][1:])
    assert all(c["figures"]["dynamodb_throttled_requests"] == 0 for c in doc["checks"])
    ledger = Ledger(sandbox.home)
    [soak] = ledger.records(ENV, kind="watch-soak")
    assert soak["outcome"] == "passed" and soak["artifact_sha256"] == json.loads(deployed.stdout)["plan"][
        "artifact"]["sha256"]
    assert _alias(sandbox) == {"version": "2", "weights": {}}
    assert "soak-passed" in hooks.webhook.events()
    assert "soak-passed" in hooks.sns_events()
    delivered = ledger.records(ENV, kind="notification")
    assert {(d["event"], d["target"], d["ok"]) for d in delivered} >= {("soak-passed", "sns", True),
                                                                        ("soak-passed", "webhook", True)}
    status = _run("status", "--env", ENV, "--json")
    watch = json.loads(status.stdout)["watch"]
    assert watch["checks_green"] == 4 and watch["soak"] == "passed" and watch["ended"] == "completed"


def test_a_release_that_starts_failing_inside_the_window_is_rolled_back(sandbox, built, hooks):
    _set_watch(sandbox, window_minutes=12, soak_minutes=12)
    # GIVEN a release that passes the pre-traffic gate and then answers 30 % of requests with a 500 once each
    # execution environment has served 20 (CHAOS_START_AFTER): it goes bad after it reached 100 %
    with _traffic(sandbox):
        deployed = _deploy("--artifact", str(built.good), "--all-at-once", "watch test",
                           "--env-var", "CHAOS_ERROR_RATE=0.3", "--env-var", "CHAOS_START_AFTER=20", "--json")
        assert deployed.exit_code == 0, deployed.output
        result = _run("watch", "--env", ENV, "--time-scale", SCALE, "--json")
    assert result.exit_code == 3, result.output
    doc = json.loads(result.stdout)["watch"]
    assert doc["outcome"] == "rolled-back" and doc["rollback"]["to"] == "1"
    assert doc["checks"][-1]["decision"] == "rollback" and doc["checks"][-1]["in_rollback_window"]
    assert _alias(sandbox) == {"version": "1", "weights": {}}
    ledger = Ledger(sandbox.home)
    rollback = ledger.runs(ENV)[-1]
    assert rollback["kind_of_run"] == "rollback" and rollback["outcome"] == "succeeded"
    assert ledger.records(ENV, kind="alias-intent")[-1]["run_id"] == rollback["run_id"]  # the guarded path
    assert {"watch-breach", "rolled-back"} <= set(hooks.webhook.events())
    assert "rolled-back" in hooks.sns_events()
    # WHEN the cron runs the watch again THEN it says the watch ended and does nothing more
    again = _run("watch", "--env", ENV, "--once", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["ended_before"] is True and json.loads(again.stdout)["checks"] == []
    assert _alias(sandbox) == {"version": "1", "weights": {}}


def test_a_breach_after_the_window_only_notifies(sandbox, built, hooks):
    _set_watch(sandbox, window_minutes=0, soak_minutes=6, until_minutes=6)
    with _traffic(sandbox):
        deployed = _deploy("--artifact", str(built.good), "--all-at-once", "watch test",
                           "--env-var", "CHAOS_ERROR_RATE=0.3", "--env-var", "CHAOS_START_AFTER=8", "--json")
        assert deployed.exit_code == 0, deployed.output
        result = _run("watch", "--env", ENV, "--time-scale", SCALE, "--json")
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    decisions = [c["decision"] for c in doc["checks"]]
    # the first errors may only breach the SLA (reported); the rollback trigger after the window pages
    assert len(decisions) == 3 and "page" in decisions and set(decisions) <= {"ok", "report", "page"}, decisions
    assert _alias(sandbox) == {"version": "2", "weights": {}}  # traffic never moved
    assert Ledger(sandbox.home).runs(ENV)[-1]["kind_of_run"] == "deploy"  # no rollback run
    assert Ledger(sandbox.home).records(ENV, kind="watch-soak")[0]["outcome"] == "failed"
    breaches = [b["severity"] for b in hooks.webhook.bodies if b["event"] == "watch-breach"]
    assert breaches == [{"report": "sla", "page": "page"}[d] for d in decisions if d != "ok"]


def test_replay_of_a_rolled_back_faulty_canary_with_a_looser_threshold_would_not_have_rolled_back(sandbox, built):
    with _traffic(sandbox):
        deployed = _deploy("--canary", "--artifact", str(built.good), "--env-var", "CHAOS_ERROR_RATE=0.3",
                           "--env-var", "CHAOS_START_AFTER=10", "--bake", "12", "--analysis-interval", "2", "--json")
    assert deployed.exit_code == 3, deployed.output
    run_id = json.loads(deployed.stdout)["run"]["run_id"]
    same = json.loads(_run("replay", run_id, "--json").stdout)
    assert same["rolled_back"] and same["would_roll_back"] and same["comparison"] == "same"
    # a threshold above the highest rate any window showed (a 30 % fault can show more on a few early requests)
    highest = highest_canary_error_pct(Ledger(sandbox.home).records(ENV), run_id)
    looser_pct = f"error_rate_pct={threshold_above(highest, 50):g}"
    looser = _run("replay", run_id, "--threshold", looser_pct, "--json")
    assert looser.exit_code == 0, looser.output
    doc = json.loads(looser.stdout)
    assert doc["rolled_back"] and not doc["would_roll_back"] and doc["comparison"] == "never"
    assert doc["intervals"][-1]["recorded"] == "rollback" and doc["intervals"][-1]["replayed"] != "rollback"
    totals = json.loads(_run("replay", "--env", ENV, "--last", "5", "--threshold", looser_pct,
                             "--json").stdout)
    assert totals["avoided"] == 1 and totals["added"] == 0
