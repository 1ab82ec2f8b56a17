"""Everything one FHS tells another is a JWT it signs (EdDSA), verified with that peer's pinned keys only.

Three kinds, told apart by ``typ`` so none can be replayed as another:

* request assertions (``fhs-peer+jwt``): bind one HTTP request (method, path with query, body digest) to the
  sending FHS, for one receiver, for a short time, with a ``jti`` the receiver remembers; a forwarded
  invocation adds the federation and the member it acts for;
* events (``fhs-event+jwt``): one federation event signed by the federation's home; durable (no expiry),
  ordering and replays are handled by the event sequence;
* key sets (``fhs-keys+jwt``): the sender's current JWKS signed by a key the receiver already pinned, so keys
  rotate without manual steps and without trusting anything unsigned.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Mapping
from typing import Any

from fhs.errors import Unauthenticated
from fhs.identity.keys import FHSKeyring
from fhs.identity.pinned import verify_pinned_jwt

REQUEST_TYP = "fhs-peer+jwt"
EVENT_TYP = "fhs-event+jwt"
KEYS_TYP = "fhs-keys+jwt"
REQUEST_TTL_S = 60
KEYS_TTL_S = 300


def body_digest(body: bytes) -> str:
    """SHA-256 of a request body, base64url."""
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode("ascii")


def sign_request(
    keyring: FHSKeyring,
    *,
    me: str,
    peer: str,
    method: str,
    path: str,
    body: bytes,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """An assertion for one request from ``me`` to ``peer``."""
    now = int(time.time())
    claims = {
        "iss": me,
        "aud": peer,
        "iat": now,
        "exp": now + REQUEST_TTL_S,
        "jti": secrets.token_urlsafe(18),
        "htm": method.upper(),
        "htu": path,
        "bd": body_digest(body),
        **(extra or {}),
    }
    return keyring.sign(claims, typ=REQUEST_TYP)


def verify_request(
    token: str,
    *,
    jwks: Mapping[str, Any],
    peer: str,
    me: str,
    method: str,
    path: str,
    body: bytes,
    leeway: float,
) -> dict[str, Any]:
    """The claims of a request assertion from ``peer``, checked against the request it came with."""
    claims = verify_pinned_jwt(
        token,
        jwks=jwks,
        typ=REQUEST_TYP,
        issuer=peer,
        audience=me,
        leeway=leeway,
        max_lifetime_s=REQUEST_TTL_S * 2,
        required=("exp", "iat", "iss", "aud", "jti"),
        what="peer assertion",
    )
    if claims.get("htm") != method.upper() or claims.get("htu") != path:
        raise Unauthenticated("peer assertion was made for another request")
    if claims.get("bd") != body_digest(body):
        raise Unauthenticated("request body does not match the peer assertion's digest")
    return claims


def sign_event(keyring: FHSKeyring, *, me: str, event: Mapping[str, Any]) -> str:
    """One federation event signed by its home ``me``."""
    return keyring.sign({"iss": me, "iat": int(time.time()), "evt": dict(event)}, typ=EVENT_TYP)


def verify_event(token: str, *, jwks: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """A federation event signed by ``origin`` (the federation's home)."""
    claims = verify_pinned_jwt(
        token,
        jwks=jwks,
        typ=EVENT_TYP,
        issuer=origin,
        audience=None,
        leeway=0,
        max_lifetime_s=None,
        required=("iss", "evt"),
        what="federation event",
    )
    event = claims["evt"]
    if not isinstance(event, dict) or event.get("origin") != origin:
        raise Unauthenticated("federation event does not come from its signer")
    return event


def sign_keys(keyring: FHSKeyring, *, me: str) -> list[str]:
    """This FHS's current JWKS, signed once with each published key (old, current and next)."""
    now = int(time.time())
    claims = {
        "iss": me,
        "iat": now,
        "exp": now + KEYS_TTL_S,
        "jti": secrets.token_urlsafe(12),
        "jwks": keyring.jwks(),
    }
    return keyring.sign_with_each(claims, typ=KEYS_TYP)


def verify_keys(tokens: list[str], *, jwks: Mapping[str, Any], peer: str, leeway: float) -> dict[str, Any]:
    """A peer's new JWKS, accepted only if one of its signatures is by a key already pinned for that peer."""
    claims: dict[str, Any] | None = None
    for token in tokens[:8]:
        try:
            claims = verify_pinned_jwt(
                token,
                jwks=jwks,
                typ=KEYS_TYP,
                issuer=peer,
                audience=None,
                leeway=leeway,
                max_lifetime_s=KEYS_TTL_S * 2,
                what="peer key set",
            )
            break
        except Unauthenticated:
            continue
    if claims is None:
        raise Unauthenticated("no signature on the peer's key set is by a key pinned for it; re-pin its keys")
    new = claims.get("jwks")
    if not isinstance(new, dict) or not isinstance(new.get("keys"), list) or not new["keys"]:
        raise Unauthenticated("peer key set is empty or malformed")
    return new
