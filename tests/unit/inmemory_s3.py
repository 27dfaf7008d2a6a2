"""``InMemoryS3``: a fake S3 client that models what the state store relies on, for tests of races.

moto checks ``If-None-Match`` and ``If-Match`` but handles concurrent requests without S3's per-key
serialisation, so a race test against moto could pass or fail by luck. This fake answers each request atomically
(one lock around each request, as S3 serialises conditional writes to a key), returns MD5 ETags, 412
``PreconditionFailed`` on a failed condition, ``NoSuchKey`` on a missing key, lists keys in UTF-8 order with
pagination, and keeps every version as a bucket with versioning on does. ``latency`` sleeps outside that lock
before each request, so requests from several threads interleave the way requests from several machines do.
``honour_conditions=False`` makes it ignore conditions, which is what a store without conditional writes would
do: the race tests show the ledger then loses records.
"""

from __future__ import annotations

import hashlib
import io
import random
import threading
import time
from typing import Any

from botocore.exceptions import ClientError


def _error(code: str, status: int, op: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, op)


class InMemoryS3:
    def __init__(self, *, latency: float = 0.0, honour_conditions: bool = True, page_size: int = 1000) -> None:
        self.objects: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.versions: dict[tuple[str, str], list[bytes | None]] = {}
        self.latency = latency
        self.honour_conditions = honour_conditions
        self.page_size = page_size
        self.down = False
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def _wait(self, op: str) -> None:
        if self.latency:
            time.sleep(random.uniform(0, self.latency))
        if self.down:
            raise _error("ServiceUnavailable", 503, op)
        self.calls.append(op)

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, IfNoneMatch: str | None = None,
                   IfMatch: str | None = None, **_: Any) -> dict[str, Any]:
        self._wait("PutObject")
        body = Body if isinstance(Body, bytes) else Body.encode()
        with self._lock:
            current = self.objects.get((Bucket, Key))
            if self.honour_conditions:
                if IfNoneMatch == "*" and current is not None:
                    raise _error("PreconditionFailed", 412, "PutObject")
                if IfMatch is not None and (current is None or current[1] != IfMatch):
                    raise _error("PreconditionFailed" if current else "NoSuchKey", 412 if current else 404,
                                 "PutObject")
            etag = '"' + hashlib.md5(body).hexdigest() + '"'
            self.objects[(Bucket, Key)] = (body, etag)
            self.versions.setdefault((Bucket, Key), []).append(body)
            return {"ETag": etag}

    def get_object(self, *, Bucket: str, Key: str, **_: Any) -> dict[str, Any]:
        self._wait("GetObject")
        with self._lock:
            current = self.objects.get((Bucket, Key))
            if current is None:
                raise _error("NoSuchKey", 404, "GetObject")
            return {"Body": io.BytesIO(current[0]), "ETag": current[1]}

    def delete_object(self, *, Bucket: str, Key: str, IfMatch: str | None = None, **_: Any) -> dict[str, Any]:
        self._wait("DeleteObject")
        with self._lock:
            current = self.objects.get((Bucket, Key))
            if self.honour_conditions and IfMatch is not None:
                if current is None:
                    raise _error("NoSuchKey", 404, "DeleteObject")
                if current[1] != IfMatch:
                    raise _error("PreconditionFailed", 412, "DeleteObject")
            self.objects.pop((Bucket, Key), None)
            self.versions.setdefault((Bucket, Key), []).append(None)  # a delete marker
            return {}

    def list_objects_v2(self, *, Bucket: str, Prefix: str = "", StartAfter: str = "",
                        ContinuationToken: str | None = None, **_: Any) -> dict[str, Any]:
        self._wait("ListObjectsV2")
        after = ContinuationToken or StartAfter
        with self._lock:
            keys = sorted(k for (b, k) in self.objects if b == Bucket and k.startswith(Prefix) and k > after)
            page = keys[: self.page_size]
            reply: dict[str, Any] = {"Contents": [{"Key": k, "ETag": self.objects[(Bucket, k)][1]} for k in page],
                                     "IsTruncated": len(keys) > len(page)}
            if reply["IsTruncated"]:
                reply["NextContinuationToken"] = page[-1]
            return reply

    def list_object_versions(self, *, Bucket: str, Prefix: str = "", **_: Any) -> dict[str, Any]:
        self._wait("ListObjectVersions")
        with self._lock:
            versions, markers = [], []
            for (b, key), history in sorted(self.versions.items()):
                if b != Bucket or not key.startswith(Prefix):
                    continue
                for n, body in enumerate(history):
                    entry = {"Key": key, "VersionId": f"v{n}", "IsLatest": n == len(history) - 1}
                    (markers if body is None else versions).append(entry)
            return {"Versions": versions, "DeleteMarkers": markers, "IsTruncated": False}
