"""Who is calling: bearer tokens with roles.

Roles, each including the ones before it (``config.Role``): ``submit`` sends photos, ``label``
also reads cases and labels them, ``admin`` also adjudicates, erases and sees everything. The
server's own ``--token`` is an admin token; the case store holds named tokens (``lesionlens cases
token add NAME --role label``), of which it keeps only a sha256. With no token anywhere, prediction
and submission are open, as before, and the labelling endpoints are closed: they always need a token.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from fastapi import Request

from lesionlens.config import Role, choices
from lesionlens.serving.errors import ApiError

ROLES = choices(Role)


@dataclass(frozen=True)
class Principal:
    name: str
    role: str

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


ANONYMOUS = Principal("anonymous", "submit")


class Authenticator:
    def __init__(self, token: str | None, store=None, cache_s: float = 5.0):
        self.token = token
        self.store = store
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._open: tuple[float, bool] = (0.0, False)

    def is_open(self) -> bool:
        """True when no token exists anywhere: anyone may predict and submit."""
        if self.token is not None:
            return False
        if self.store is None:
            return True
        checked, value = self._open
        if time.monotonic() - checked > self.cache_s:
            value = not self.store.has_tokens()
            self._open = (time.monotonic(), value)
        return value

    def principal(self, secret: str) -> Principal | None:
        if self.token is not None and secrets.compare_digest(secret.encode(), self.token.encode()):
            return Principal("admin", "admin")
        if self.store is None:
            return None
        key = hashlib.sha256(secret.encode()).hexdigest()  # the cache holds no secret either
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] <= self.cache_s:
            return hit[1]
        owner = self.store.token_owner(secret)
        found = Principal(*owner) if owner else None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (now, found)
        return found

    def require(self, role: str):
        """A FastAPI dependency: the caller, who must hold ``role`` (or a role above it)."""
        def check(request: Request) -> Principal:
            given = request.headers.get("authorization", "")
            scheme, _, value = given.partition(" ")
            if not given:
                if role == "submit" and self.is_open():
                    return ANONYMOUS
                raise ApiError(401, "unauthorized",
                               f"this endpoint needs a token with the {role!r} role: send 'Authorization: Bearer <token>'")
            who = self.principal(value) if scheme.lower() == "bearer" else None
            if who is None:
                raise ApiError(401, "unauthorized", "the API token is wrong or revoked")
            if not who.can(role):
                raise ApiError(403, "forbidden", f"this needs the {role!r} role; the token of {who.name!r} has {who.role!r}")
            return who

        return check
