"""The ledger and the lock in an S3 bucket, shared by every engineer and CI job (a ``StateStore`` adapter).

The same model as Terraform's S3 backend with native locking (``use_lockfile = true``, Terraform 1.10+, which
deprecated its DynamoDB table): S3's conditional writes are the only coordination. Layout under the prefix::

    <prefix>/ledger/<env>/000000000001.json    one object a record, ordered by key (the record's seq)
    <prefix>/locks/<env>.json                  the lock: holder, run, start time, lease

- Append: read the last record (cached between appends, listed after the cached key), chain the new one to it
  and ``PutObject`` it at the next key with ``If-None-Match: *``. When another writer took that key first, S3
  answers 412 (or 409 for a conflicting concurrent request): read the newer last record and try the next key. No
  record is overwritten, lost or reordered, and the hash chain follows the key order.
- Read: ``ListObjectsV2`` under the environment's prefix (S3 lists in key order, strongly consistent), then the
  objects not already read with the same ETag.
- Lock: ``PutObject`` with ``If-None-Match: *`` to take it; ``If-Match`` on its ETag to renew the lease; and
  ``DeleteObject`` with ``If-Match`` to release or break it, so nobody removes a lock taken again meanwhile.
- Throttling, 5xx and timeouts are retried by botocore's standard retry mode; past the retries the store raises
  :class:`~promoter.errors.StateUnavailable` and the command stops before changing anything else.
- Versioning should be on for the bucket (the sandbox turns it on): an edited or deleted record keeps its
  earlier version, and ``promoter ledger verify`` names it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from promoter.errors import StateUnavailable

CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
MAX_APPEND_ATTEMPTS = 200


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (bucket, prefix without slashes at its ends)."""
    rest = url[len("s3://"):] if url.startswith("s3://") else url
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix.strip("/")


@dataclass
class S3StateStore:
    """Records and locks under ``s3://bucket/prefix``, through an injected S3 client."""

    client: Any
    bucket: str
    prefix: str = "promoter"
    caller_arn: Callable[[], str | None] | None = None
    _last: dict[str, tuple[int, bytes]] = field(default_factory=dict, repr=False)
    _bodies: dict[str, tuple[str, bytes]] = field(default_factory=dict, repr=False)

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def _record_prefix(self, env: str) -> str:
        return self._key("ledger", env) + "/"

    def _record_key(self, env: str, seq: int) -> str:
        return f"{self._record_prefix(env)}{seq:012d}.json"

    def _lock_key(self, env: str) -> str:
        return self._key("locks", f"{env}.json")

    def describe(self, env: str) -> str:
        return f"s3://{self.bucket}/{self._record_prefix(env)}"

    def caller(self) -> str | None:
        if self.caller_arn is None:
            return None
        try:
            return self.caller_arn()
        except Exception:  # who we are is informative; never a reason to refuse
            return None

    # -- records -------------------------------------------------------------------------------------------
    def _list(self, env: str, start_after: str = "") -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._record_prefix(env)}
        if start_after:
            kwargs["StartAfter"] = start_after
        while True:
            page = self._call("list the ledger", self.client.list_objects_v2, **kwargs)
            out.extend(page.get("Contents", []))
            if not page.get("IsTruncated"):
                return out
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def _get(self, key: str, etag: str | None = None) -> bytes:
        cached = self._bodies.get(key)
        if etag is not None and cached and cached[0] == etag:
            return cached[1]
        reply = self._call(f"read {key}", self.client.get_object, Bucket=self.bucket, Key=key)
        body = reply["Body"].read()
        self._bodies[key] = (reply.get("ETag", ""), body)
        return body

    def read_records(self, env: str) -> list[tuple[str, bytes]]:
        return [(f"s3://{self.bucket}/{obj['Key']}", self._get(obj["Key"], obj.get("ETag")))
                for obj in self._list(env)]

    def _seq_of(self, key: str) -> int:
        return int(key.rsplit("/", 1)[-1].split(".", 1)[0])

    def _refresh_last(self, env: str) -> tuple[int, bytes | None]:
        known = self._last.get(env)
        start_after = self._record_key(env, known[0]) if known else ""
        newer = self._list(env, start_after)
        if newer:
            key = newer[-1]["Key"]
            self._last[env] = (self._seq_of(key), self._get(key, newer[-1].get("ETag")))
        elif known is None:
            return 0, None
        seq, body = self._last[env]
        return seq, body

    def append(self, env: str, make: Callable[[bytes | None], bytes]) -> str:
        seq, last = self._refresh_last(env)
        for _ in range(MAX_APPEND_ATTEMPTS):
            body = make(last)
            key = self._record_key(env, seq + 1)
            if self._put_if_absent(key, body) is not None or self._is_ours(key, body):
                self._last[env] = (seq + 1, body)
                return f"s3://{self.bucket}/{key}"
            seq, last = self._refresh_last(env)  # someone appended first: chain to theirs
        raise StateUnavailable(f"could not append to {self.describe(env)}: {MAX_APPEND_ATTEMPTS} writers got there "
                               "first", hint="try again")

    def _is_ours(self, key: str, body: bytes) -> bool:
        """After a 412: whether the object at ``key`` is the very record we wrote. A retried request whose first
        attempt landed (its reply was lost) is refused by its own earlier write; every record carries a unique
        ``uid``, so equal bytes mean our write, and appending again would duplicate it."""
        import botocore.exceptions

        try:
            reply = self.client.get_object(Bucket=self.bucket, Key=key)
        except botocore.exceptions.ClientError:
            return False
        except botocore.exceptions.BotoCoreError as exc:
            raise _unavailable(f"read {key}", exc) from None
        return reply["Body"].read() == body

    def audit(self, env: str) -> list[str]:
        """With versioning on, every record object has exactly one version: name those overwritten (edited) or
        deleted (a delete marker on top), which catches even the deletion of the last records."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._record_prefix(env)}
        versions: dict[str, int] = {}
        deleted: list[str] = []
        while True:
            page = self._call("list the ledger's versions", self.client.list_object_versions, **kwargs)
            for v in page.get("Versions", []):
                versions[v["Key"]] = versions.get(v["Key"], 0) + 1
            deleted += [m["Key"] for m in page.get("DeleteMarkers", []) if m.get("IsLatest")]
            if not page.get("IsTruncated"):
                break
            kwargs.update(KeyMarker=page.get("NextKeyMarker"), VersionIdMarker=page.get("NextVersionIdMarker"))
        problems = [f"s3://{self.bucket}/{key}: deleted (a delete marker hides it; its versions are kept)"
                    for key in sorted(deleted)]
        problems += [f"s3://{self.bucket}/{key}: written {count} times (records are written once; the earlier "
                     "versions are kept)" for key, count in sorted(versions.items()) if count > 1]
        return problems

    # -- the lock ------------------------------------------------------------------------------------------
    def read_lock(self, env: str) -> tuple[bytes, str] | None:
        import botocore.exceptions

        try:
            reply = self.client.get_object(Bucket=self.bucket, Key=self._lock_key(env))
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in {"NoSuchKey", "404"}:
                return None
            raise _unavailable(f"read the lock s3://{self.bucket}/{self._lock_key(env)}", exc) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise _unavailable(f"read the lock s3://{self.bucket}/{self._lock_key(env)}", exc) from None
        return reply["Body"].read(), reply["ETag"]

    def create_lock(self, env: str, body: bytes) -> str | None:
        return self._put_if_absent(self._lock_key(env), body)

    def replace_lock(self, env: str, body: bytes, tag: str) -> str | None:
        return self._conditional("renew the lock", self.client.put_object, Bucket=self.bucket,
                                 Key=self._lock_key(env), Body=body, IfMatch=tag, ContentType="application/json")

    def delete_lock(self, env: str, tag: str) -> bool:
        import botocore.exceptions

        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._lock_key(env), IfMatch=tag)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in CONFLICT_CODES | {"NoSuchKey", "404"}:
                return False
            raise _unavailable("release the lock", exc) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise _unavailable("release the lock", exc) from None
        return True

    # -- calls ---------------------------------------------------------------------------------------------
    def _put_if_absent(self, key: str, body: bytes) -> str | None:
        return self._conditional(f"write s3://{self.bucket}/{key}", self.client.put_object, Bucket=self.bucket,
                                 Key=key, Body=body, IfNoneMatch="*", ContentType="application/json")

    def _conditional(self, action: str, call: Callable[..., Any], **kwargs: Any) -> str | None:
        """The new ETag, or ``None`` when S3 refused the condition (412, or 409 for a concurrent conflict)."""
        import botocore.exceptions

        try:
            return call(**kwargs)["ETag"]
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in CONFLICT_CODES | {"NoSuchKey", "404"}:  # If-Match on a key that is gone: 404
                return None
            raise _unavailable(action, exc) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise _unavailable(action, exc) from None

    def _call(self, action: str, call: Callable[..., Any], **kwargs: Any) -> Any:
        import botocore.exceptions

        try:
            return call(**kwargs)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise _unavailable(action, exc) from None


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", {}) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return code if code and not code.isdigit() else status or code


def _unavailable(action: str, exc: Exception) -> StateUnavailable:
    return StateUnavailable(f"state store: could not {action}: {exc}",
                            hint="nothing was changed; check the bucket, the credentials and the network, then run "
                            "the command again")


def s3_store_from_url(url: str, session: Any) -> S3StateStore:
    """An :class:`S3StateStore` for ``s3://bucket/prefix`` with clients from ``session`` (standard retries)."""
    from botocore.config import Config

    from promoter.adapters.aws import RETRY_CONFIG

    bucket, prefix = parse_s3_url(url)
    config = Config(retries=dict(RETRY_CONFIG), connect_timeout=5, read_timeout=30)
    client = session.client("s3", config=config)

    def caller() -> str | None:
        return session.client("sts", config=config).get_caller_identity().get("Arn")

    return S3StateStore(client=client, bucket=bucket, prefix=prefix, caller_arn=caller)

