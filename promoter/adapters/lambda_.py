"""A typed client over the boto3 Lambda API: the only place the release engine's Lambda calls are made.

Every botocore error leaves this module as a :mod:`promoter.errors` exception (via ``translate``); a
``PreconditionFailedException`` (stale ``RevisionId``, wrong ``CodeSha256``) becomes
:class:`~promoter.errors.PreconditionFailed`. Waits take a clock and a deadline.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any

from promoter.adapters.aws import error_code, translate
from promoter.engine.ledger import Clock, SystemClock
from promoter.errors import AwsError

DESCRIPTION_FORMAT = "release={release} git={git} sha256={sha256}"
_DESCRIPTION = re.compile(r"^release=(?P<release>\S+) git=(?P<git>\S+) sha256=(?P<sha256>[0-9a-f]{64})$")


def version_description(release: str, git_sha: str | None, sha256: str) -> str:
    return DESCRIPTION_FORMAT.format(release=release, git=git_sha or "unknown", sha256=sha256)


def parse_description(description: str | None) -> dict[str, str] | None:
    """``release=<tag> git=<sha> sha256=<hex>`` -> its three fields; None for any other description."""
    match = _DESCRIPTION.match((description or "").strip())
    return match.groupdict() if match else None


@dataclass(frozen=True)
class AliasState:
    """Where an alias routes: its primary version and the extra weights (version -> fraction 0..1)."""

    version: str
    weights: dict[str, float] = field(default_factory=dict)
    revision: str | None = None

    def same_routing(self, other: AliasState) -> bool:
        return self.version == other.version and _rounded(self.weights) == _rounded(other.weights)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "weights": dict(self.weights), "revision": self.revision}

    def describe(self) -> str:
        if not self.weights:
            return f"version {self.version} at 100%"
        extra = ", ".join(f"version {v} at {w * 100:g}%" for v, w in sorted(self.weights.items()))
        stable = 100 - sum(self.weights.values()) * 100
        return f"version {self.version} at {stable:g}%, {extra}"


def _rounded(weights: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in weights.items() if v}


@dataclass(frozen=True)
class FunctionVersion:
    version: str
    description: str
    code_sha256: str
    environment: dict[str, str]
    last_modified: str = ""

    @property
    def tags(self) -> dict[str, str] | None:
        return parse_description(self.description)

    @property
    def release(self) -> str | None:
        parsed = self.tags
        return parsed["release"] if parsed else None

    @property
    def sha256(self) -> str | None:
        parsed = self.tags
        return parsed["sha256"] if parsed else None


@dataclass(frozen=True)
class InvokeResult:
    status_code: int | None  # the HTTP status of the proxy response, when the payload is one
    body: Any
    function_error: str | None
    raw: Any = None


class LambdaClient:
    """One function and one alias, through one boto3 Lambda client."""

    def __init__(self, client: Any, function: str, alias: str) -> None:
        self._c = client
        self.function = function
        self.alias = alias

    # -- alias -------------------------------------------------------------------------------------------
    def get_alias(self) -> AliasState:
        try:
            data = self._c.get_alias(FunctionName=self.function, Name=self.alias)
        except Exception as exc:
            raise translate(exc, f"get alias {self.function}:{self.alias}") from None
        weights = (data.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        return AliasState(str(data["FunctionVersion"]), {str(k): float(v) for k, v in weights.items()},
                          data.get("RevisionId"))

    def update_alias(self, version: str, weights: dict[str, float], revision: str | None) -> AliasState:
        """Point the alias at ``version`` with extra ``weights``; guarded by ``revision`` when given."""
        kwargs: dict[str, Any] = {
            "FunctionName": self.function,
            "Name": self.alias,
            "FunctionVersion": version,
            "RoutingConfig": {"AdditionalVersionWeights": dict(weights)},
        }
        if revision:
            kwargs["RevisionId"] = revision
        try:
            data = self._c.update_alias(**kwargs)
        except Exception as exc:
            raise translate(exc, f"update alias {self.function}:{self.alias}") from None
        out = (data.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        return AliasState(str(data["FunctionVersion"]), {str(k): float(v) for k, v in out.items()},
                          data.get("RevisionId"))

    # -- code and versions -------------------------------------------------------------------------------
    def get_configuration(self, qualifier: str | None = None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"FunctionName": self.function}
        if qualifier:
            kwargs["Qualifier"] = qualifier
        try:
            return self._c.get_function_configuration(**kwargs)
        except Exception as exc:
            raise translate(exc, f"get configuration of {self.function}:{qualifier or '$LATEST'}") from None

    def update_function_code(self, zip_bytes: bytes) -> dict[str, Any]:
        try:
            return self._c.update_function_code(FunctionName=self.function, ZipFile=zip_bytes)
        except Exception as exc:
            raise translate(exc, f"update code of {self.function}") from None

    def update_environment(self, variables: dict[str, str]) -> dict[str, Any]:
        try:
            return self._c.update_function_configuration(
                FunctionName=self.function, Environment={"Variables": dict(variables)}
            )
        except Exception as exc:
            raise translate(exc, f"update environment of {self.function}") from None

    def wait_updated(self, *, clock: Clock | None = None, timeout: float = 300, poll: float = 1.0) -> dict[str, Any]:
        """Poll LastUpdateStatus until Successful; raise on Failed or when the deadline passes."""
        clock = clock or SystemClock()
        deadline = clock.now() + timeout
        while True:
            config = self.get_configuration()
            status = config.get("LastUpdateStatus") or "Successful"
            if status == "Successful":
                return config
            if status == "Failed":
                raise AwsError(
                    f"update of {self.function} failed: {config.get('LastUpdateStatusReason', 'no reason given')}",
                    code=config.get("LastUpdateStatusReasonCode"),
                )
            if clock.now() >= deadline:
                raise AwsError(f"update of {self.function} still {status} after {timeout:.0f}s",
                               hint="check the function in the console; nothing was published")
            clock.sleep(poll)

    def publish_version(self, description: str, code_sha256: str) -> FunctionVersion:
        """Publish $LATEST as a version, only if its code is still ``code_sha256`` (else PreconditionFailed)."""
        try:
            data = self._c.publish_version(FunctionName=self.function, Description=description,
                                           CodeSha256=code_sha256)
        except Exception as exc:
            raise translate(exc, f"publish a version of {self.function}") from None
        return _version(data)

    def list_versions(self) -> list[FunctionVersion]:
        """Published versions (never $LATEST), oldest first."""
        out: list[FunctionVersion] = []
        kwargs: dict[str, Any] = {"FunctionName": self.function}
        try:
            while True:
                page = self._c.list_versions_by_function(**kwargs)
                out.extend(_version(v) for v in page.get("Versions", []) if v.get("Version") != "$LATEST")
                marker = page.get("NextMarker")
                if not marker:
                    break
                kwargs["Marker"] = marker
        except Exception as exc:
            raise translate(exc, f"list versions of {self.function}") from None
        return sorted(out, key=lambda v: int(v.version))

    def version_environment(self, version: str) -> dict[str, str]:
        return dict((self.get_configuration(version).get("Environment") or {}).get("Variables") or {})

    def invoke(self, qualifier: str, event: dict[str, Any]) -> InvokeResult:
        """Invoke one version synchronously with ``event``; parse a proxy response."""
        try:
            data = self._c.invoke(FunctionName=self.function, Qualifier=qualifier,
                                  InvocationType="RequestResponse", Payload=json.dumps(event).encode())
        except Exception as exc:
            raise translate(exc, f"invoke {self.function}:{qualifier}") from None
        raw = data["Payload"].read() if hasattr(data.get("Payload"), "read") else data.get("Payload")
        return parse_invoke_payload(raw, data.get("FunctionError"))


def parse_invoke_payload(raw: bytes | str | None, function_error: str | None) -> InvokeResult:
    try:
        payload = json.loads(raw) if raw else None
    except ValueError:
        return InvokeResult(None, raw, function_error or "InvalidPayload", raw)
    if function_error or not isinstance(payload, dict) or "statusCode" not in payload:
        return InvokeResult(None, payload, function_error or "NotAProxyResponse", payload)
    body = payload.get("body")
    if payload.get("isBase64Encoded") and isinstance(body, str):
        body = base64.b64decode(body).decode(errors="replace")
    if isinstance(body, str) and body:
        try:
            body = json.loads(body)
        except ValueError:
            pass
    return InvokeResult(int(payload["statusCode"]), body, None, payload)


def _version(data: dict[str, Any]) -> FunctionVersion:
    return FunctionVersion(
        version=str(data["Version"]),
        description=data.get("Description") or "",
        code_sha256=data.get("CodeSha256") or "",
        environment=dict((data.get("Environment") or {}).get("Variables") or {}),
        last_modified=data.get("LastModified") or "",
    )


def is_not_found(exc: BaseException) -> bool:
    return error_code(exc) in {"ResourceNotFoundException", "AWS.SimpleQueueService.NonExistentQueue",
                               "QueueDoesNotExist"}


class LambdaAliasRouter:
    """The ``AliasRouter`` port over :class:`LambdaClient`."""

    def __init__(self, client: LambdaClient) -> None:
        self._client = client

    def read(self) -> AliasState:
        return self._client.get_alias()

    def set(self, version: str, weights: dict[str, float], revision: str | None) -> AliasState:
        return self._client.update_alias(version, weights, revision)


class LambdaInvoker:
    """The ``Invoker`` port: synchronous Invoke of one version."""

    def __init__(self, client: LambdaClient) -> None:
        self._client = client

    def invoke(self, version: str, event: dict[str, Any]) -> InvokeResult:
        return self._client.invoke(version, event)
