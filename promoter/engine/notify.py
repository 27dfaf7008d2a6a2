"""Notifications: tell people what a promotion did, without ever holding it up.

Targets come from the plan's ``notifications:`` section: the environment's SNS topic (``resources.sns_topic``)
and a Slack-compatible incoming webhook whose URL is read from an environment variable or an AWS Secrets Manager
secret (the plan names which, never the URL).

Rules:

- :meth:`Notifier.notify` returns at once: each target is sent to on its own daemon thread;
- each attempt is bounded by ``timeout_seconds``, a failed one is retried up to ``attempts`` times with a short
  backoff, so one delivery takes at most about ``attempts * (timeout + backoff)``;
- every delivery, delivered or not, is recorded in the ledger (kind ``notification``); a failure to send or to
  record is never raised to the release;
- :meth:`Notifier.flush` waits, with a deadline, for what is still being sent when a command ends.

Events (the plan's ``notifications.events`` selects among them): promotion-started, step-passed,
waiting-approval, rolled-back, rollback-failed, watch-breach, soak-passed.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from promoter.engine.ledger import Ledger, utcnow

BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 4.0


class Target(Protocol):
    """One place a notification goes. ``send`` raises on any failure and returns within ``timeout``."""

    name: str

    def send(self, message: dict[str, Any], timeout: float) -> None: ...


@dataclass
class SnsTarget:
    client: Any
    topic_arn: str
    name: str = "sns"

    def send(self, message: dict[str, Any], timeout: float) -> None:
        subject = message["text"].splitlines()[0][:100]
        self.client.publish(TopicArn=self.topic_arn, Subject=subject.encode("ascii", "replace").decode(),
                            Message=json.dumps(message, sort_keys=True, default=str))


@dataclass
class WebhookTarget:
    """A Slack-compatible incoming webhook: POST ``{"text": ...}`` plus the event's fields."""

    url: str
    name: str = "webhook"

    def send(self, message: dict[str, Any], timeout: float) -> None:
        from promoter.adapters.http import HttpClient

        client = HttpClient(self.url, timeout=timeout)
        try:
            response = client.request("POST", "", json_body=message, auth=False)
        finally:
            client.close()
        if not 200 <= response.status < 300:
            raise RuntimeError(f"webhook answered HTTP {response.status}: {response.body[:200]!r}")


@dataclass
class Delivery:
    event: str
    target: str
    ok: bool = False
    attempts: int = 0
    error: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def deliver(target: Target, message: dict[str, Any], *, attempts: int, timeout: float,
            sleep: Callable[[float], None] = time.sleep, monotonic: Callable[[], float] = time.monotonic) -> Delivery:
    """Send ``message`` to ``target``, retrying a failure up to ``attempts`` times in all (pure over its seams)."""
    result = Delivery(event=str(message.get("event")), target=target.name)
    started = monotonic()
    for attempt in range(1, attempts + 1):
        result.attempts = attempt
        try:
            target.send(message, timeout)
        except Exception as exc:  # any failure of a target is the delivery's, never the release's
            result.error = f"{type(exc).__name__}: {exc}"[:500]
            if attempt < attempts:
                sleep(min(MAX_BACKOFF_SECONDS, BACKOFF_SECONDS * 2 ** (attempt - 1)))
            continue
        result.ok, result.error = True, None
        break
    result.seconds = round(monotonic() - started, 3)
    return result


@dataclass
class Notifier:
    """Sends events to every target off the caller's thread and records each delivery in ``env``'s ledger."""

    targets: list[Target] = field(default_factory=list)
    ledger: Ledger | None = None
    env: str = ""
    attempts: int = 3
    timeout: float = 5.0
    events: frozenset[str] | None = None  # None: every event
    notes: list[str] = field(default_factory=list)  # why a target is missing (say it once, never fail)
    sleep: Callable[[float], None] = time.sleep
    _threads: list[threading.Thread] = field(default_factory=list, repr=False)
    delivered: list[Delivery] = field(default_factory=list, repr=False)

    def wants(self, event: str) -> bool:
        return bool(self.targets) and (self.events is None or event in self.events)

    def notify(self, event: str, text: str, **data: Any) -> None:
        """Queue ``event`` for every target; returns at once and never raises."""
        if not self.wants(event):
            return
        message = {"event": event, "env": self.env, "text": f"[{self.env}] {text}", "ts": utcnow(), **data}
        for target in self.targets:
            thread = threading.Thread(target=self._send, args=(target, message), daemon=True,
                                      name=f"notify-{event}-{target.name}")
            self._threads.append(thread)
            thread.start()

    def _send(self, target: Target, message: dict[str, Any]) -> None:
        try:
            result = deliver(target, message, attempts=self.attempts, timeout=self.timeout, sleep=self.sleep)
        except BaseException as exc:  # a thread that dies must still leave its record
            result = Delivery(str(message.get("event")), target.name, error=f"{type(exc).__name__}: {exc}")
        self.delivered.append(result)
        if self.ledger is not None:
            with contextlib.suppress(Exception):
                self.ledger.append(self.env, "notification", **result.to_dict())

    @property
    def longest_seconds(self) -> float:
        """The longest one delivery can take: every attempt timing out, with the backoff between them."""
        backoff = sum(min(MAX_BACKOFF_SECONDS, BACKOFF_SECONDS * 2 ** i) for i in range(self.attempts - 1))
        return self.attempts * self.timeout + backoff

    def flush(self, timeout: float | None = None) -> list[Delivery]:
        """Wait for the deliveries under way, at most ``timeout`` seconds (default: the longest one can take)."""
        deadline = time.monotonic() + (self.longest_seconds + 1.0 if timeout is None else timeout)
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]
        return list(self.delivered)


def webhook_url(spec: Any, secrets: Callable[[], Any] | None) -> tuple[str | None, str | None]:
    """The webhook URL and where it came from, or (None, why not). ``secrets`` makes a Secrets Manager client."""
    if spec is None:
        return None, "no webhook in the plan"
    if spec.url_env and os.environ.get(spec.url_env):
        return os.environ[spec.url_env], f"${spec.url_env}"
    if spec.secret_id and secrets is not None:
        try:
            value = secrets().get_secret_value(SecretId=spec.secret_id)["SecretString"]
        except Exception as exc:
            return None, f"secret {spec.secret_id} could not be read ({type(exc).__name__})"
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            value = json.loads(value).get("url", value)
        return str(value), f"secret {spec.secret_id}"
    where = ([f"${spec.url_env}"] if spec.url_env else []) + ([f"secret {spec.secret_id}"] if spec.secret_id else [])
    return None, f"webhook URL not set ({' or '.join(where) or 'no source named'})"


def notifier_for(plan: Any, env: str, aws: Any, ledger: Ledger | None) -> Notifier:
    """The plan's targets for ``env`` over boto3 clients of ``aws`` (an ``AwsSessionFactory``)."""
    spec = plan.notifications
    notifier = Notifier(ledger=ledger, env=env, attempts=spec.attempts, timeout=spec.timeout_seconds,
                        events=frozenset(spec.events))
    environment = plan.environment(env)
    if spec.sns:
        topic = plan.names(env).sns_topic
        arn = f"arn:aws:sns:{environment.region}:{environment.account_id}:{topic}"
        try:  # one attempt per try, bounded: the notifier retries
            client = aws.client("sns", connect_timeout=spec.timeout_seconds, read_timeout=spec.timeout_seconds,
                                retries={"max_attempts": 1, "mode": "standard"})
            notifier.targets.append(SnsTarget(client, arn))
        except Exception as exc:
            notifier.notes.append(f"SNS topic {topic} unavailable: {type(exc).__name__}: {exc}")
    url, where = webhook_url(spec.webhook, (lambda: aws.client("secretsmanager")) if aws is not None else None)
    if url:
        notifier.targets.append(WebhookTarget(url))
    elif where:
        notifier.notes.append(where)
    return notifier


def pipeline_notifications(notifier: Notifier) -> Callable[[Any], None]:
    """A pipeline observer (``PipelinePorts.notify``) that tells the plan's targets of a promotion's start, each
    step that passed, and a wait for an approval with the command that records it."""

    def on(event: Any) -> None:
        d = event.data
        if event.kind == "start":
            notifier.notify("promotion-started", f"promotion of {d.get('release')} started: "
                            f"{' + '.join(d.get('phases') or [])}{' (resumed)' if d.get('resumed') else ''}",
                            release=d.get("release"), pipeline_id=d.get("pipeline_id"),
                            artifact_sha256=d.get("artifact_sha256"))
        elif event.kind == "step-end" and d.get("status") == "passed":
            notifier.notify("step-passed", f"{d.get('step_key')} passed: {d.get('title')}", step=d.get("step_key"),
                            detail=d.get("detail"))
        elif event.kind == "end" and d.get("outcome") == "waiting":
            waiting = d.get("waiting_for") or {}
            notifier.notify("waiting-approval", f"{waiting.get('step')} ({waiting.get('title')}) waits for an "
                            f"approval; record it with: {waiting.get('command')}", step=waiting.get("step"),
                            command=waiting.get("command"), pipeline_id=d.get("pipeline_id"))

    return on
