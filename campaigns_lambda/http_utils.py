"""Request helpers: header lookup and JSON body decoding with size/type checks."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from campaigns_lambda.errors import MalformedBody, MalformedJson, PayloadTooLarge, UnsupportedMediaType

MAX_BODY_BYTES = 64 * 1024
JSON_MEDIA_TYPE = "application/json"


def get_header(event: Mapping[str, Any], name: str) -> str | None:
    """Case-insensitive header lookup over ``headers`` then ``multiValueHeaders``."""
    wanted = name.lower()
    headers = event.get("headers")
    if isinstance(headers, Mapping):
        for key, value in headers.items():
            if isinstance(key, str) and key.lower() == wanted and isinstance(value, str):
                return value
    multi = event.get("multiValueHeaders")
    if isinstance(multi, Mapping):
        for key, values in multi.items():
            if isinstance(key, str) and key.lower() == wanted and isinstance(values, list):
                strings = [v for v in values if isinstance(v, str)]
                if strings:
                    return strings[-1]
    return None


def is_json_content_type(value: str | None) -> bool:
    """True for ``application/json`` with an optional UTF-8 charset parameter."""
    if value is None:
        return False
    media_type, *params = (part.strip() for part in value.split(";"))
    if media_type.lower() != JSON_MEDIA_TYPE:
        return False
    for param in params:
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset" and val.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False
    return True


def _raw_body_bytes(event: Mapping[str, Any]) -> bytes:
    body = event.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise MalformedBody()
    if event.get("isBase64Encoded") is True:
        # A base64 text of n characters decodes to at most 3n/4 bytes: reject early.
        if len(body) > (MAX_BODY_BYTES * 4) // 3 + 4:
            raise PayloadTooLarge(details={"max_bytes": MAX_BODY_BYTES})
        try:
            return base64.b64decode(body.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error, ValueError):
            raise MalformedBody("the request body is not valid base64") from None
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(details={"max_bytes": MAX_BODY_BYTES})
    try:
        return body.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedBody("the request body is not valid UTF-8") from None


def has_body(event: Mapping[str, Any]) -> bool:
    body = event.get("body")
    return body is not None and body != ""


def read_json_body(event: Mapping[str, Any]) -> Any:
    """Decode the request body as JSON, enforcing media type, size and encoding.

    Raises 415 for a body that is not declared as JSON, 413 over 64 KiB (counted after
    base64 decoding), 400 for undecodable or malformed content. A missing body is
    malformed JSON since every write operation needs one.
    """
    if has_body(event) and not is_json_content_type(get_header(event, "content-type")):
        raise UnsupportedMediaType()
    raw = _raw_body_bytes(event)
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(details={"max_bytes": MAX_BODY_BYTES})
    if not raw.strip():
        raise MalformedJson("a JSON request body is required")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedBody("the request body is not valid UTF-8") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise MalformedJson() from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
