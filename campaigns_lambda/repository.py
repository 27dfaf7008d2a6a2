"""DynamoDB persistence for campaigns and the S3 email template lookup.

Both stores accept an injected boto3 client; otherwise one is built lazily on first use.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass
from typing import Any

from campaigns_lambda._aws import error_code, make_client
from campaigns_lambda.errors import CampaignNotFound, Conflict, InvalidNextToken, ServiceUnavailable
from campaigns_lambda.models import is_valid_id

HEALTH_PROBE_KEY = "__health_probe__"
MAX_SCAN_CALLS = 50
_THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)


def encode_next_token(key: dict[str, str]) -> str:
    raw = json.dumps(key, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_next_token(token: str) -> dict[str, str]:
    """Decode an opaque pagination token into an ExclusiveStartKey ({"id": ...})."""
    try:
        padded = token.encode("ascii") + b"=" * (-len(token) % 4)
        raw = base64.b64decode(padded, altchars=b"-_", validate=True)
        key = json.loads(raw.decode("utf-8"))
    except (UnicodeError, binascii.Error, ValueError, RecursionError):
        raise InvalidNextToken() from None
    if (
        not isinstance(key, dict)
        or set(key) != {"id"}
        or not isinstance(key["id"], str)
        or not is_valid_id(key["id"])
    ):
        raise InvalidNextToken()
    return key


@dataclass(frozen=True)
class ProbeResult:
    reachable: bool
    latency_ms: float
    error: str | None = None


def _serializer():
    from boto3.dynamodb.types import TypeSerializer

    return TypeSerializer()


def _deserializer():
    from boto3.dynamodb.types import TypeDeserializer

    return TypeDeserializer()


class CampaignRepository:
    def __init__(self, table_name: str, client: Any = None) -> None:
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_client("dynamodb")
        return self._client

    # -- (de)serialisation -------------------------------------------------
    @staticmethod
    def _to_item(data: dict[str, Any]) -> dict[str, Any]:
        serializer = _serializer()
        return {k: serializer.serialize(v) for k, v in data.items() if v is not None}

    @staticmethod
    def _from_item(item: dict[str, Any]) -> dict[str, Any]:
        deserializer = _deserializer()
        return {k: deserializer.deserialize(v) for k, v in item.items()}

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        from botocore.exceptions import ClientError, ConnectionError, ReadTimeoutError

        try:
            return getattr(self.client, operation)(TableName=self.table_name, **kwargs)
        except ClientError as exc:
            if error_code(exc) in _THROTTLING_CODES:
                raise ServiceUnavailable(headers={"Retry-After": "1"}) from exc
            raise
        except (ConnectionError, ReadTimeoutError) as exc:
            raise ServiceUnavailable(headers={"Retry-After": "1"}) from exc

    # -- operations --------------------------------------------------------
    def probe(self) -> ProbeResult:
        """Cheap reachability check: a GetItem of a key that never exists."""
        from botocore.exceptions import BotoCoreError, ClientError

        started = time.perf_counter()
        try:
            self.client.get_item(
                TableName=self.table_name,
                Key={"id": {"S": HEALTH_PROBE_KEY}},
                ProjectionExpression="#id",
                ExpressionAttributeNames={"#id": "id"},
            )
        except (ClientError, BotoCoreError) as exc:
            elapsed = round((time.perf_counter() - started) * 1000, 2)
            return ProbeResult(False, elapsed, error_code(exc) or type(exc).__name__)
        return ProbeResult(True, round((time.perf_counter() - started) * 1000, 2))

    def get(self, campaign_id: str) -> dict[str, Any] | None:
        response = self._call("get_item", Key={"id": {"S": campaign_id}}, ConsistentRead=True)
        item = response.get("Item")
        return self._from_item(item) if item else None

    def create(self, campaign: dict[str, Any]) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        try:
            self._call(
                "put_item",
                Item=self._to_item(campaign),
                ConditionExpression="attribute_not_exists(#id)",
                ExpressionAttributeNames={"#id": "id"},
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise Conflict("a campaign with this id already exists") from None
            raise
        return campaign

    def list(
        self, limit: int, next_token: str | None = None, status: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Return up to ``limit`` campaigns and the token of the following page (or None).

        A filtered Scan may yield fewer matches than its Limit, so pages are read until
        ``limit`` matches are collected or the table ends. The returned token resumes right
        after the last returned item, so no item is skipped or repeated.
        """
        kwargs: dict[str, Any] = {}
        if status is not None:
            kwargs.update(
                FilterExpression="#status = :status",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":status": {"S": status}},
            )
        start_key = decode_next_token(next_token) if next_token else None
        items: list[dict[str, Any]] = []
        for _ in range(MAX_SCAN_CALLS):
            remaining = limit - len(items)
            page_size = remaining if status is None else min(max(remaining, 100), 1000)
            request = dict(kwargs, Limit=page_size)
            if start_key is not None:
                request["ExclusiveStartKey"] = {"id": {"S": start_key["id"]}}
            response = self._call("scan", **request)
            page = [self._from_item(i) for i in response.get("Items", [])]
            last_key = response.get("LastEvaluatedKey")
            if len(page) >= remaining:
                taken = page[:remaining]
                items.extend(taken)
                more = len(page) > remaining or last_key is not None
                return items, encode_next_token({"id": taken[-1]["id"]}) if more else None
            items.extend(page)
            if not last_key:
                return items, None
            start_key = {"id": last_key["id"]["S"]}
        # Bound the work per request; the client continues from where the scan stopped.
        return items, encode_next_token(start_key) if start_key else None

    def update(
        self,
        campaign_id: str,
        changes: dict[str, Any],
        expected_version: int,
        audit: dict[str, Any],
    ) -> dict[str, Any]:
        """Apply ``changes`` (None values remove the attribute) if the stored version matches.

        The version is incremented atomically; a concurrent writer makes this raise
        Conflict (or CampaignNotFound if the campaign was deleted meanwhile).
        """
        from botocore.exceptions import ClientError

        serializer = _serializer()
        names: dict[str, str] = {"#id": "id", "#version": "version"}
        values: dict[str, Any] = {":expected": {"N": str(expected_version)}, ":one": {"N": "1"}}
        set_parts = ["#version = #version + :one"]
        remove_parts: list[str] = []
        for index, (field, value) in enumerate(sorted({**changes, **audit}.items())):
            names[f"#f{index}"] = field
            if value is None:
                remove_parts.append(f"#f{index}")
            else:
                values[f":v{index}"] = serializer.serialize(value)
                set_parts.append(f"#f{index} = :v{index}")
        expression = "SET " + ", ".join(set_parts)
        if remove_parts:
            expression += " REMOVE " + ", ".join(remove_parts)
        try:
            response = self._call(
                "update_item",
                Key={"id": {"S": campaign_id}},
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(#id) AND #version = :expected",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise self._conflict_or_missing(campaign_id, expected_version) from None
            raise
        return self._from_item(response["Attributes"])

    def delete(self, campaign_id: str, expected_version: int | None = None) -> None:
        from botocore.exceptions import ClientError

        condition = "attribute_exists(#id)"
        kwargs: dict[str, Any] = {"ExpressionAttributeNames": {"#id": "id"}}
        if expected_version is not None:
            condition += " AND #version = :expected"
            kwargs["ExpressionAttributeNames"]["#version"] = "version"
            kwargs["ExpressionAttributeValues"] = {":expected": {"N": str(expected_version)}}
        try:
            self._call("delete_item", Key={"id": {"S": campaign_id}}, ConditionExpression=condition, **kwargs)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                if expected_version is None:
                    raise CampaignNotFound() from None
                raise self._conflict_or_missing(campaign_id, expected_version) from None
            raise

    def _conflict_or_missing(self, campaign_id: str, expected_version: int) -> Exception:
        current = self.get(campaign_id)
        if current is None:
            return CampaignNotFound()
        return Conflict(
            details={"expected_version": expected_version, "current_version": _as_int(current.get("version"))}
        )


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class TemplateStore:
    """Existence checks for email templates in the templates bucket."""

    def __init__(self, bucket: str, client: Any = None) -> None:
        self.bucket = bucket
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_client("s3")
        return self._client

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) in {"404", "NoSuchKey", "NotFound", "403", "AccessDenied"}:
                return False
            raise
        return True
