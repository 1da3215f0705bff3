"""Access tokens of the case store: a named secret with a role, kept only as its SHA-256 hash.

    secret = store.add_token("dr_a", "label")     # shown once; the server's Bearer token
    store.token_owner(secret)                      # ("dr_a", "label"), or None once revoked
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from lesionlens.cases import schema
from lesionlens.cases.db import StoreError, as_utc, now
from lesionlens.config import Role, choices


class Tokens:
    """The token half of :class:`~lesionlens.cases.store.CaseStore` (a mixin over its ``engine``)."""

    engine: Engine

    # -- tokens -----------------------------------------------------------------------------------

    def add_token(self, name: str, role: str) -> str:
        """A new secret token for ``name`` with ``role``; only its hash is stored, so this is the
        only time it can be read."""
        if role not in choices(Role):
            raise StoreError(f"unknown role {role!r}; use one of {', '.join(choices(Role))}")
        secret = secrets.token_urlsafe(32)
        try:
            with self.engine.begin() as c:
                c.execute(insert(schema.tokens).values(name=name, role=role, token_sha256=token_hash(secret),
                                                       created_at=now()))
        except IntegrityError as e:
            raise StoreError(f"a token named {name!r} exists; revoke it first") from e
        return secret

    def revoke_token(self, name: str) -> bool:
        with self.engine.begin() as c:
            return c.execute(update(schema.tokens).where(schema.tokens.c.name == name,
                                                         schema.tokens.c.revoked_at.is_(None))
                             .values(revoked_at=now())).rowcount > 0

    def tokens(self) -> list[dict]:
        with self.engine.connect() as c:
            return [{"name": r.name, "role": r.role, "created_at": as_utc(r.created_at).isoformat(),
                     "revoked": r.revoked_at is not None}
                    for r in c.execute(select(schema.tokens).order_by(schema.tokens.c.id))]

    def token_owner(self, secret: str) -> tuple[str, str] | None:
        """(name, role) of a live token, looked up by its hash (so the secret is never compared
        character by character)."""
        digest = token_hash(secret)
        with self.engine.connect() as c:
            row = c.execute(select(schema.tokens.c.name, schema.tokens.c.role, schema.tokens.c.token_sha256)
                            .where(schema.tokens.c.token_sha256 == digest,
                                   schema.tokens.c.revoked_at.is_(None))).first()
        if row is None or not secrets.compare_digest(row.token_sha256, digest):
            return None
        return row.name, row.role

    def has_tokens(self) -> bool:
        with self.engine.connect() as c:
            return c.execute(select(schema.tokens.c.id).where(schema.tokens.c.revoked_at.is_(None))).first() is not None


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()
