"""Bearer tokens for the authorization matrix: a real ID token per principal, and the forgeries made from it.

:class:`TokenSource` is the port: ``token(principal)`` signs in a test user of that group (``none``: the user in no
group); ``mint(claims)`` signs claims with the issuer's own key where that is possible (a sandbox's user pool),
else returns None, and the cells that need it (an expired token, a token for another audience, each validly
signed) are reported as skipped with that reason. The forgeries that need no key are made here, from the real
token: re-signed by another RSA key under the same ``kid``, and ``alg: none`` with no signature.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Mapping
from typing import Any, Protocol

from promoter.errors import ConfigurationError

PASSWORD_VAR = "PROMOTER_SECURITY_PASSWORD"
FOREIGN_AUDIENCE = "security-check-foreign-client"


class TokenSource(Protocol):
    def token(self, principal: str) -> str: ...

    def mint(self, claims: Mapping[str, Any]) -> str | None: ...


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a JWT, unverified."""
    import jwt

    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


def signed_by_another_key(token: str) -> str:
    """The same header and claims, signed by a fresh RSA key: what a forger without the pool's key can make."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    header, claims = parts(token)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": header.get("kid", "")})


def unsigned(token: str) -> str:
    """``alg: none``, the claims unchanged, an empty signature."""
    header, claims = parts(token)
    forged = {**header, "alg": "none"}
    return f"{_b64(json.dumps(forged).encode())}.{_b64(json.dumps(claims).encode())}."


def expired_claims(claims: Mapping[str, Any], now: float | None = None) -> dict[str, Any]:
    moment = int(now if now is not None else time.time())
    return {**claims, "iat": moment - 7200, "auth_time": moment - 7200, "exp": moment - 3600}


def foreign_audience_claims(claims: Mapping[str, Any]) -> dict[str, Any]:
    return {**claims, "aud": FOREIGN_AUDIENCE}


class CognitoTokens:
    """Test users of the environment's Cognito pool (plan ``security.test_users``: principal -> username) signing in
    with ``$PROMOTER_SECURITY_PASSWORD``. Cannot mint: Cognito's key never leaves Cognito."""

    def __init__(self, aws: Any, plan: Any, env: str, users: Mapping[str, str], password: str | None = None) -> None:
        self.aws, self.plan, self.env, self.users = aws, plan, env, dict(users)
        self.password = password or os.environ.get(PASSWORD_VAR)
        self._cache: dict[str, str] = {}

    def token(self, principal: str) -> str:
        from promoter.engine.smoke import cognito_token

        if principal in self._cache:
            return self._cache[principal]
        username = self.users.get(principal)
        if not username:
            raise ConfigurationError(f"no test user for {principal!r} in the plan's security.test_users",
                                     hint="add one user per group (and one in no group, `none`) to security.test_users")
        if not self.password:
            raise ConfigurationError("no password for the security test users",
                                     hint=f"set {PASSWORD_VAR} (the test users share it)")
        self._cache[principal] = cognito_token(self.aws, self.plan, self.env, username, self.password)
        return self._cache[principal]

    def mint(self, claims: Mapping[str, Any]) -> str | None:
        return None
