"""Tokens of a running sandbox for ``promoter security``: its seeded test users, and claims signed with the key
its user pool signs with (moto's published test key), so an expired token or a token for another audience can be
made validly signed, as only the issuer could. A real pool's key never leaves Cognito; this exists only here."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

POOL_KEY_ID = "dummy"  # the kid moto's user pools sign with (its jwks-public.json)


class SandboxTokens:
    def __init__(self, state_dir: str | Path | None = None) -> None:
        from promoter.sandbox.manager import Sandbox

        self.sandbox = Sandbox.attach(state_dir)
        self._cache: dict[str, str] = {}

    def token(self, principal: str) -> str:
        if principal not in self._cache:
            self._cache[principal] = self.sandbox.token(principal)
        return self._cache[principal]

    def mint(self, claims: Mapping[str, Any]) -> str | None:
        import jwt
        from moto.utilities.utils import load_resource

        key = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(load_resource("cognitoidp/resources/jwks-private.json")))
        return jwt.encode(dict(claims), key, algorithm="RS256", headers={"kid": POOL_KEY_ID})
