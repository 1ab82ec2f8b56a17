"""Invocation tokens: what an upstream service sees instead of the member's own token (DESIGN §2, §4).

The FHS that forwards a call signs a short-lived JWT with its own key (typ ``fhs-invocation+jwt``):
``iss`` = the FHS's public URL, ``aud`` = the service id, ``sub`` = the member key, and the claims
``federation``, ``member`` {iss, sub}, ``attributes``, ``jti``, ``iat``, ``nbf``, ``exp``. Resource services
verify it with :func:`verify_invocation_token` against the FHS keys they pinned.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fhs.errors import Unauthenticated
from fhs.identity.keys import FHSKeyring
from fhs.identity.pinned import verify_pinned_jwt

INVOCATION_TOKEN_TYP = "fhs-invocation+jwt"


class InvocationToken(BaseModel):
    """What the FHS vouches for when it forwards one call of ``member`` to service ``service_id``."""

    model_config = ConfigDict(frozen=True)

    federation: str = Field(min_length=1)
    service_id: str = Field(min_length=1)
    member_issuer: str = Field(min_length=1)
    member_subject: str = Field(min_length=1)
    attributes: tuple[str, ...] = ()

    def claims(self, *, issuer: str, ttl_s: int, now: float | None = None) -> dict[str, Any]:
        """The JWT claims of this token, valid ``ttl_s`` seconds from ``now``."""
        issued = int(time.time() if now is None else now)
        return {
            "iss": issuer,
            "aud": self.service_id,
            "sub": f"{self.member_issuer}#{self.member_subject}",
            "federation": self.federation,
            "member": {"iss": self.member_issuer, "sub": self.member_subject},
            "attributes": sorted(set(self.attributes)),
            "jti": secrets.token_urlsafe(16),
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl_s,
        }

    def mint(self, *, keyring: FHSKeyring, issuer: str, ttl_s: int, now: float | None = None) -> str:
        """Sign this token with the FHS's current key (``issuer`` = the FHS public URL)."""
        return keyring.sign(self.claims(issuer=issuer, ttl_s=ttl_s, now=now), typ=INVOCATION_TOKEN_TYP)


def verify_invocation_token(
    token: str,
    *,
    jwks: Mapping[str, Any],
    issuer: str,
    audience: str,
    leeway: float = 30,
    max_lifetime_s: int = 600,
) -> dict[str, Any]:
    """Verify an invocation token against pinned FHS keys; return its claims or raise ``Unauthenticated``.

    Only EdDSA keys from ``jwks`` are used (never a key named by the token), the ``typ`` must be
    ``fhs-invocation+jwt``, and ``iss``/``aud`` must match exactly. Single use of the ``jti`` is the
    caller's to check (:mod:`fhs.identity.replay`).
    """
    claims = verify_pinned_jwt(
        token,
        jwks=jwks,
        typ=INVOCATION_TOKEN_TYP,
        issuer=issuer,
        audience=audience,
        leeway=leeway,
        max_lifetime_s=max_lifetime_s,
        required=("exp", "iat", "iss", "aud", "sub", "jti"),
        what="invocation token",
    )
    member = claims.get("member")
    if not isinstance(member, dict) or not isinstance(claims.get("federation"), str):
        raise Unauthenticated("invocation token lacks 'federation' or 'member' claims")
    return claims
