"""The S3 state store's client retries S3's 503 SlowDown with botocore's standard mode (moto in-process).

The injected 503 replaces moto's reply after moto has handled the request, so the first attempt's write lands
and its reply is lost: the retries then meet S3's 412 from that very write. The store must recognise its own
record instead of appending it a second time."""

from __future__ import annotations

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws

from promoter.adapters.state_s3 import s3_store_from_url
from promoter.engine.ledger import Ledger
from promoter.engine.state import StateUnavailable

SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")


class _Raw:
    def stream(self, **_kw):
        yield SLOW_DOWN


def _slow_down_first(client, count: int) -> list[int]:
    seen: list[int] = []

    def handler(request, **_kw):
        seen.append(1)
        if len(seen) <= count:
            return AWSResponse(request.url, 503, {"Content-Type": "application/xml"}, _Raw())
        return None

    client.meta.events.register("before-send.s3.PutObject", handler)
    return seen


@pytest.fixture
def store():
    with mock_aws():
        session = boto3.Session(region_name="eu-west-1")
        session.client("s3").create_bucket(Bucket="team-state",
                                           CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        yield s3_store_from_url("s3://team-state/campaigns", session)


def test_a_lost_reply_is_retried_and_the_record_lands_once(store, tmp_path):
    seen = _slow_down_first(store.client, 2)
    ledger = Ledger(tmp_path, store=store)
    ledger.append("sit", "approval", gate="g", approver="ana")
    ledger.append("sit", "approval", gate="g", approver="bo")
    assert len(seen) == 4  # two 503s and the retry that met its own write (412), then the second record
    assert [(r["seq"], r["approver"]) for r in ledger.records("sit")] == [(1, "ana"), (2, "bo")]


def test_slow_down_past_the_retries_raises_state_unavailable(store, tmp_path):
    seen = _slow_down_first(store.client, 100)
    ledger = Ledger(tmp_path, store=store)
    with pytest.raises(StateUnavailable, match="SlowDown") as info:
        ledger.append("sit", "alias-intent", run_id="r1")
    assert len(seen) == 6  # the first attempt and botocore's 5 retries
    assert "nothing was changed" in info.value.hint
