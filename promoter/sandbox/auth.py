"""The API front's Cognito user-pool authorizer: bearer token in, API Gateway's ``authorizer.claims`` out.

Checks what a REST API's ``COGNITO_USER_POOLS`` authorizer checks on an ID token: the RS256 signature against
the pool's JWKS (``<moto-url>/<pool-id>/.well-known/jwks.json``), the issuer, the expiry, ``token_use = id`` and,
when the pool's app clients are given, that the token's audience is one of them.
The claims are then flattened the way API Gateway passes them to a Lambda proxy integration: every value a
string, lists joined with commas (``cognito:groups`` of one group is just that group's name), ``exp`` and ``iat``
as dates.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.request import urlopen

JWKS_REFRESH_MIN_S = 30.0


class Unauthorized(Exception):
    """The token is missing, malformed, forged, expired or not an ID token of this pool."""


def issuer_for(user_pool_id: str, region: str | None = None) -> str:
    pool_region = user_pool_id.split("_", 1)[0] if "_" in user_pool_id else region
    return f"https://cognito-idp.{pool_region or region}.amazonaws.com/{user_pool_id}"


def bearer_token(header: str | None) -> str | None:
    """``Authorization`` header value -> the token (``Bearer <jwt>`` or the raw token, as API Gateway accepts)."""
    if not header:
        return None
    value = header.strip()
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
    return value or None


def _date(epoch: int | float) -> str:
    return datetime.fromtimestamp(float(epoch), UTC).strftime("%a %b %d %H:%M:%S UTC %Y")


def flatten_claims(claims: dict) -> dict[str, str]:
    """Claims as API Gateway hands them to the integration: every value a string."""
    flat: dict[str, str] = {}
    for key, value in claims.items():
        if key in ("exp", "iat") and isinstance(value, int | float):
            flat[key] = _date(value)
        elif isinstance(value, bool):
            flat[key] = "true" if value else "false"
        elif isinstance(value, list | tuple):
            flat[key] = ",".join(str(v) for v in value)
        elif isinstance(value, dict):
            flat[key] = json.dumps(value)
        else:
            flat[key] = str(value)
    return flat


class CognitoAuthorizer:
    """Verifies ID tokens of one user pool; the JWKS is fetched once and again when an unknown key id shows up."""

    def __init__(self, jwks_url: str, issuer: str, *, leeway_s: float = 0.0,
                 audiences: Callable[[], set[str]] | None = None) -> None:
        self.jwks_url = jwks_url
        self.audiences = audiences  # the pool's app client ids, read when a token names an unknown one
        self._known_audiences: set[str] = set()
        self.issuer = issuer
        self.leeway_s = leeway_s
        self._keys: dict[str, object] = {}
        self._fetched_at = 0.0
        self._lock = threading.Lock()

    def _refresh(self, force: bool) -> None:
        import jwt

        with self._lock:
            if self._keys and not force:
                return
            if force and time.monotonic() - self._fetched_at < JWKS_REFRESH_MIN_S and self._keys:
                return
            with urlopen(self.jwks_url, timeout=5) as resp:
                document = json.loads(resp.read())
            keys = {}
            for jwk in document.get("keys", []):
                try:
                    keys[jwk.get("kid", "")] = jwt.PyJWK.from_dict(jwk).key
                except Exception:
                    continue
            self._keys = keys
            self._fetched_at = time.monotonic()

    def read_audiences(self) -> None:
        """Read the pool's app clients now; a failure is left for the first token to report."""
        if self.audiences is not None:
            try:
                self._known_audiences = set(self.audiences())
            except Exception:
                self._known_audiences = set()

    def _key(self, kid: str):
        self._refresh(force=False)
        if kid not in self._keys:
            self._refresh(force=True)
        try:
            return self._keys[kid]
        except KeyError:
            raise Unauthorized(f"unknown signing key {kid!r}") from None

    def verify(self, token: str | None) -> dict:
        """The token's claims, raw; raises :class:`Unauthorized`."""
        import jwt

        if not token:
            raise Unauthorized("no token")
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(
                token, self._key(header.get("kid", "")), algorithms=["RS256"], issuer=self.issuer,
                leeway=self.leeway_s, options={"verify_aud": False, "require": ["exp", "iss", "token_use"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(str(exc)) from None
        except OSError as exc:
            raise Unauthorized(f"could not fetch the pool's signing keys: {exc}") from None
        if claims.get("token_use") != "id":
            raise Unauthorized("not an ID token")
        if self.audiences is not None:
            audience = claims.get("aud")
            if audience not in self._known_audiences:
                try:
                    self._known_audiences = set(self.audiences())
                except Exception as exc:
                    raise Unauthorized(f"could not read the pool's app clients: {exc}") from None
            if audience not in self._known_audiences:
                raise Unauthorized(f"token for another audience {audience!r}")
        return claims
