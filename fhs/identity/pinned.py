"""Verify JWTs signed by an FHS against keys pinned in advance (never keys named by the token).

Used for invocation tokens (resource services), FHS-FHS request assertions and replicated events. Only
EdDSA is accepted; ``typ`` separates the kinds of token so one can never be replayed as another.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import jwt

from fhs.errors import Unauthenticated
from fhs.identity.keys import KEY_ALGORITHM

if TYPE_CHECKING:
    from jwt.types import Options


class UnknownSigningKey(Unauthenticated):
    """The token names a key that is not (yet) pinned; the caller may refresh the signer's keys once."""

    code = "unknown_signing_key"


def _pinned_key(jwks: Mapping[str, Any], kid: object) -> Any:
    for jwk in jwks.get("keys", []) if isinstance(jwks, Mapping) else []:
        if isinstance(jwk, Mapping) and jwk.get("kid") == kid and jwk.get("kty") == "OKP" and "d" not in jwk:
            try:
                return jwt.PyJWK(dict(jwk), algorithm=KEY_ALGORITHM).key
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                continue
    return None


def verify_pinned_jwt(
    token: str,
    *,
    jwks: Mapping[str, Any],
    typ: str,
    issuer: str,
    audience: str | None,
    leeway: float = 30,
    max_lifetime_s: int | None = 600,
    required: Iterable[str] = ("exp", "iat", "iss", "jti"),
    what: str = "token",
) -> dict[str, Any]:
    """The verified claims of ``token``, or ``Unauthenticated`` naming what is wrong."""
    if not isinstance(token, str) or token.count(".") != 2 or len(token) > 1024 * 1024:
        raise Unauthenticated(f"malformed {what}")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"malformed {what}: {exc}") from None
    if header.get("alg") != KEY_ALGORITHM:
        raise Unauthenticated(f"{what} algorithm {str(header.get('alg'))[:20]!r} not allowed")
    if header.get("typ") != typ:
        raise Unauthenticated(f"wrong token type for {what}: typ must be {typ}")
    key = _pinned_key(jwks, header.get("kid"))
    if key is None:
        raise UnknownSigningKey(f"unknown FHS signing key kid={str(header.get('kid'))[:64]!r} for {what}")
    options: Options = {"require": list(required), "verify_aud": audience is not None}
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[KEY_ALGORITHM],
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options=options,
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated(f"{what} expired") from None
    except jwt.InvalidAudienceError:
        raise Unauthenticated(f"{what} audience mismatch: expected {audience!r}") from None
    except jwt.InvalidIssuerError:
        raise Unauthenticated(f"{what} issuer mismatch: expected {issuer!r}") from None
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthenticated(f"{what} has no '{exc.claim}' claim") from None
    except jwt.InvalidSignatureError:
        raise Unauthenticated(f"{what} signature is invalid") from None
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"invalid {what}: {exc}") from None
    if max_lifetime_s is not None and "exp" in claims and "iat" in claims:
        if claims["exp"] - claims["iat"] > max_lifetime_s:
            raise Unauthenticated(f"{what} lifetime exceeds {max_lifetime_s} s")
    return claims
