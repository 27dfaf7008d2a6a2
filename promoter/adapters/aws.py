"""The one place that makes boto3 sessions and clients.

Endpoints come only from the SDK's own configuration (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_<SERVICE>``,
``endpoint_url`` in a profile), so the same engine talks to real AWS or to the local sandbox without a code
path of its own. Credentials are resolved in this order:

1. an explicit profile (``--profile``);
2. ``AWS_PROFILE`` or credentials in the environment (``AWS_ACCESS_KEY_ID``): the SDK's default chain;
3. the plan's profile for the environment, when that profile is configured on this machine;
4. the SDK's default chain (instance role, SSO cache, web identity in CI).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from promoter.errors import AwsError, ConfigurationError, PreconditionFailed

if TYPE_CHECKING:
    import boto3

RETRY_CONFIG = {"mode": "standard", "max_attempts": 5}


@dataclass
class AwsSessionFactory:
    """Sessions and clients for one environment (its region and credentials)."""

    region: str
    profile: str | None = None
    plan_profile: str | None = None
    _sessions: dict[str | None, Any] = field(default_factory=dict, repr=False)

    def resolved_profile(self) -> str | None:
        if self.profile:
            return self.profile
        if os.environ.get("AWS_PROFILE") or os.environ.get("AWS_ACCESS_KEY_ID"):
            return None
        if self.plan_profile and self.plan_profile in _configured_profiles():
            return self.plan_profile
        return None

    def session(self, region: str | None = None) -> boto3.Session:
        import boto3
        import botocore.exceptions

        region = region or self.region
        if region not in self._sessions:
            try:
                self._sessions[region] = boto3.Session(profile_name=self.resolved_profile(), region_name=region)
            except botocore.exceptions.ProfileNotFound as exc:
                raise ConfigurationError(
                    str(exc), hint="list profiles with `aws configure list-profiles`, or pass --profile"
                ) from None
        return self._sessions[region]

    def client(self, service: str, region: str | None = None, **config: Any) -> Any:
        from botocore.config import Config

        options = {"retries": dict(RETRY_CONFIG), "connect_timeout": 5, "read_timeout": 30}
        options.update(config)
        return self.session(region).client(service, config=Config(**options))


def _configured_profiles() -> set[str]:
    try:
        import botocore.session

        return set(botocore.session.Session().available_profiles)
    except Exception:  # a broken ~/.aws/config must not stop profile-less use
        return set()


def error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("Error", {}).get("Code")
    return None


# Error codes that mean "these credentials cannot be used at all": every call would fail the same way.
CREDENTIAL_CODES = frozenset({"NoCredentials", "SSOLoginRequired", "ExpiredToken", "ExpiredTokenException",
                              "InvalidClientTokenId", "UnrecognizedClientException"})


def login_hint(profile: str | None, *, again: bool = False) -> str:
    verb = "log in again" if again else "log in"
    if profile:
        return f"{verb}: aws sso login --profile {profile} (the plan's profile), or export AWS_PROFILE / pass --profile"
    return f"{verb}: aws sso login --profile PROFILE, or export AWS_PROFILE / pass --profile"


def translate(exc: BaseException, action: str, *, profile: str | None = None) -> AwsError:
    """Turn a botocore exception into an :class:`AwsError` that says what failed and what to do; ``profile``
    (the plan's) makes the login hints exact."""
    import botocore.exceptions as bce

    code = error_code(exc)
    if code == "PreconditionFailedException":
        return PreconditionFailed(
            f"{action}: the resource changed since it was read ({code})",
            code=code,
            hint="someone else changed it meanwhile; inspect with `promoter status` before retrying",
        )
    if isinstance(exc, bce.NoCredentialsError):
        return AwsError(f"{action}: no AWS credentials found", code="NoCredentials", hint=login_hint(profile))
    if isinstance(exc, bce.SSOError | bce.TokenRetrievalError):  # SSOTokenLoadError, UnauthorizedSSOTokenError
        return AwsError(f"{action}: the AWS SSO session has expired or was never started",
                        code="SSOLoginRequired", hint=login_hint(profile, again=True))
    if isinstance(exc, (bce.EndpointConnectionError, bce.ConnectTimeoutError, bce.ReadTimeoutError)):
        return AwsError(f"{action}: endpoint unreachable: {exc}", code="EndpointUnreachable")
    if code in {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}:
        return AwsError(f"{action}: access denied: {_message(exc)}", code=code, hint="check the role's IAM policy")
    if code in {"ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException"}:
        return AwsError(f"{action}: credentials rejected: {_message(exc)}", code=code,
                        hint=login_hint(profile, again=True))
    if code in {"Throttling", "ThrottlingException", "TooManyRequestsException"}:
        return AwsError(f"{action}: throttled by AWS after retries", code=code, hint="retry in a minute")
    return AwsError(f"{action}: {code or type(exc).__name__}: {_message(exc)}", code=code)


def _message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("Error", {}).get("Message") or str(exc)
    return str(exc)
