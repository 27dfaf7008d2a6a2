"""Notifications: bounded, retried, off the caller's thread, recorded; a real webhook receiver on loopback."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from promoter.engine.ledger import Ledger
from promoter.engine.notify import Notifier, WebhookTarget, deliver, notifier_for, webhook_url
from promoter.plan import load_plan
from promoter.plan.models import Webhook

ENV = "sit"


class Flaky:
    name = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0

    def send(self, message, timeout):
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"attempt {self.calls} refused")


def test_a_failed_attempt_is_retried_with_backoff():
    slept: list[float] = []
    result = deliver(Flaky(2), {"event": "soak-passed"}, attempts=3, timeout=1, sleep=slept.append)
    assert result.ok and result.attempts == 3 and result.error is None
    assert slept == [0.5, 1.0]


def test_a_target_that_keeps_failing_gives_up_after_the_attempts_and_says_why():
    target = Flaky(10)
    result = deliver(target, {"event": "rolled-back"}, attempts=3, timeout=1, sleep=lambda _s: None)
    assert not result.ok and target.calls == 3 and "attempt 3 refused" in result.error


class Receiver:
    """A real HTTP server on 127.0.0.1: answers ``statuses`` in turn (then 200), or sleeps ``delay`` first."""

    def __init__(self, statuses=(), delay: float = 0.0) -> None:
        self.bodies: list[dict] = []
        self.statuses, self.delay = list(statuses), delay
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(receiver.delay)
                receiver.bodies.append(json.loads(body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                return None

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                return None  # a client that gave up (the timeout under test) leaves a broken pipe: expected

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T000/B000"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_the_webhook_gets_slack_text_and_a_5xx_is_retried(tmp_path):
    ledger = Ledger(tmp_path / "l")
    with Receiver(statuses=[503]) as hook:
        notifier = Notifier([WebhookTarget(hook.url)], ledger, ENV, attempts=3, timeout=2, sleep=lambda _s: None)
        notifier.notify("rolled-back", "v1.1.0 rolled back to version 1: error rate 30 % > 5 %", to="1")
        [delivery] = notifier.flush(10)
    assert delivery.ok and delivery.attempts == 2
    assert len(hook.bodies) == 2 and hook.bodies[-1]["text"].startswith("[sit] v1.1.0 rolled back")
    assert hook.bodies[-1]["event"] == "rolled-back" and hook.bodies[-1]["to"] == "1"
    [record] = ledger.records(ENV, kind="notification")
    assert record["ok"] is True and record["attempts"] == 2 and record["target"] == "webhook"


def test_a_hanging_receiver_never_holds_the_caller_and_the_failure_is_recorded(tmp_path):
    ledger = Ledger(tmp_path / "l")
    with Receiver(delay=3) as hook:
        notifier = Notifier([WebhookTarget(hook.url)], ledger, ENV, attempts=2, timeout=0.5, sleep=lambda _s: None)
        started = time.monotonic()
        notifier.notify("watch-breach", "p95 900 ms > 500 ms")
        assert time.monotonic() - started < 0.2  # notify returns at once
        [delivery] = notifier.flush(10)
        took = time.monotonic() - started
    assert not delivery.ok and delivery.attempts == 2 and delivery.error
    assert took < 3  # two attempts of 0.5 s each, not the receiver's 3 s
    [record] = ledger.records(ENV, kind="notification")
    assert record["ok"] is False and record["error"]


def test_events_the_plan_does_not_select_are_not_sent():
    target = Flaky(0)
    notifier = Notifier([target], None, ENV, events=frozenset({"soak-passed"}))
    notifier.notify("step-passed", "preflight passed")
    notifier.notify("soak-passed", "soak passed")
    notifier.flush(5)
    assert target.calls == 1


def test_the_webhook_url_comes_from_the_named_variable_or_secret(monkeypatch):
    monkeypatch.setenv("TEAM_HOOK", "http://127.0.0.1:9/hook")
    assert webhook_url(Webhook(url_env="TEAM_HOOK"), None) == ("http://127.0.0.1:9/hook", "$TEAM_HOOK")
    monkeypatch.delenv("TEAM_HOOK")
    url, why = webhook_url(Webhook(url_env="TEAM_HOOK"), None)
    assert url is None and "$TEAM_HOOK" in why

    class Secrets:
        def get_secret_value(self, SecretId):
            assert SecretId == "promoter/webhook"
            return {"SecretString": json.dumps({"url": "https://hooks.example.test/T1"})}

    url, why = webhook_url(Webhook(url_env="TEAM_HOOK", secret_id="promoter/webhook"), lambda: Secrets())
    assert url == "https://hooks.example.test/T1" and why == "secret promoter/webhook"


@pytest.mark.parametrize("with_hook", [True, False])
def test_the_plan_names_the_sns_topic_and_the_webhook(monkeypatch, with_hook):
    plan = load_plan()
    if with_hook:
        monkeypatch.setenv("PROMOTER_WEBHOOK_URL", "http://127.0.0.1:9/hook")
    else:
        monkeypatch.delenv("PROMOTER_WEBHOOK_URL", raising=False)

    class Aws:
        def client(self, service, **config):
            assert config["retries"]["max_attempts"] == 1  # the notifier retries, boto3 does not
            return object()

    notifier = notifier_for(plan, "prod", Aws(), None)
    sns = notifier.targets[0]
    assert sns.topic_arn.endswith(f":{plan.environment('prod').account_id}:campaigns-alerts-prod")
    assert [t.name for t in notifier.targets] == (["sns", "webhook"] if with_hook else ["sns"])
    assert bool(notifier.notes) is not with_hook


def test_pipeline_events_become_notifications():
    from promoter.engine.notify import pipeline_notifications
    from promoter.engine.pipeline import PipelineEvent

    sent = []

    class Recorder:
        def notify(self, event, text, **data):
            sent.append((event, text, data))

    on = pipeline_notifications(Recorder())
    on(PipelineEvent("start", {"pipeline_id": "P1", "phases": ["sit-promotion"], "release": "v1.1.0"}))
    on(PipelineEvent("step-end", {"step_key": "sit-promotion/preflight", "title": "Preflight", "status": "passed"}))
    on(PipelineEvent("step-end", {"step_key": "sit-promotion/deploy", "title": "Deploy", "status": "failed"}))
    command = "promoter approve --env prod --gate sit-signoff --approver NAME --release v1.1.0"
    on(PipelineEvent("end", {"outcome": "waiting", "pipeline_id": "P1", "waiting_for": {
        "step": "prod-promotion/signoff", "title": "SIT sign-off", "command": command}}))
    assert [e for e, _t, _d in sent] == ["promotion-started", "step-passed", "waiting-approval"]
    assert sent[-1][2]["command"] == command and command in sent[-1][1]
