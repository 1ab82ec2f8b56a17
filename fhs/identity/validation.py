"""Strict validation of member JWTs from trusted issuers (DESIGN §2), and bearer-credential extraction.

What is checked, in order: size and shape; ``alg`` against the configured allow-list (never taken from
the token: ``none`` and every HS* are refused before any key is touched); the unverified ``iss`` only
picks the trusted issuer; the ``kid`` selects a key of that issuer whose type matches ``alg`` (an RSA key
never verifies an ES256 token, a public key is never used as an HMAC secret); then the signature and the
claims: exact ``iss``, ``aud``, required ``exp`` and ``sub``, ``nbf``/``iat`` not in the future, maximum
lifetime, all with ``Settings.clock_skew_s`` of leeway. Header members that carry keys or key URLs
(``jwk``, ``jku``, ``x5u``, ``x5c``) are ignored: keys come only from the operator's configuration.

JWKS by URL are cached per issuer. An unknown ``kid`` refreshes the cache at most once per
``jwks_refresh_cooldown_s`` per issuer, however many requests arrive: refreshes happen under one
``asyncio.Lock`` per issuer, and a request that waited for the lock first looks at what the previous
holder fetched. Cached keys are also refreshed after ``JWKS_MAX_AGE_S`` so that keys an IdP removed stop
verifying; if that refresh fails, the cached keys stay in use.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from fhs.errors import BadRequest, IdPUnavailable, Unauthenticated
from fhs.identity.schemas import Principal, TrustedIssuer
from fhs.settings import Settings

log = logging.getLogger(__name__)

MAX_TOKEN_BYTES = 16 * 1024
MAX_JWKS_BYTES = 256 * 1024
MAX_JWKS_KEYS = 64
JWKS_MAX_AGE_S = 3600.0
MIN_RSA_BITS = 2048

# The key type (and curve) each supported algorithm requires.
_KEY_TYPE_OF_ALG = {"RS256": ("RSA", None), "ES256": ("EC", "P-256"), "EdDSA": ("OKP", "Ed25519")}

_B64TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")


def _short(value: object, limit: int = 80) -> str:
    """``repr`` of an attacker-controlled value, truncated so it cannot flood logs or error bodies."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class _VerificationKey:
    kid: str | None
    alg: str
    key: Any


KeySet = dict[tuple[str | None, str], _VerificationKey]


def _alg_of_jwk(jwk: Mapping[str, Any]) -> str | None:
    for alg, (kty, crv) in _KEY_TYPE_OF_ALG.items():
        if jwk.get("kty") == kty and (crv is None or jwk.get("crv") == crv):
            return alg
    return None


def parse_jwks(jwks: Mapping[str, Any], *, source: str) -> KeySet:
    """Usable public signature keys of a JWK Set, by (kid, alg); unusable entries are skipped and logged."""
    entries = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(entries, list):
        raise Unauthenticated(f"JWKS of {source} is not a JWK Set (no 'keys' list)")
    keys: KeySet = {}
    for entry in entries[:MAX_JWKS_KEYS]:
        if not isinstance(entry, Mapping):
            continue
        kid = entry.get("kid")
        alg = _alg_of_jwk(entry)
        if (
            alg is None
            or entry.get("use", "sig") != "sig"
            or entry.get("alg", alg) != alg
            or "d" in entry  # private key material has no business in a published JWKS
            or not (kid is None or isinstance(kid, str))
        ):
            log.debug("skipping unusable JWK kid=%s from %s", _short(kid), source)
            continue
        try:
            key = jwt.PyJWK(dict(entry), algorithm=alg).key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
            log.warning("skipping malformed JWK kid=%s from %s: %s", _short(kid), source, exc)
            continue
        if isinstance(key, RSAPublicKey) and key.key_size < MIN_RSA_BITS:
            log.warning("skipping %d-bit RSA key kid=%s from %s", key.key_size, _short(kid), source)
            continue
        keys.setdefault((kid, alg), _VerificationKey(kid, alg, key))
    return keys


def _select_key(keys: KeySet, kid: str | None, alg: str) -> _VerificationKey | None:
    """The key for (kid, alg); a kid-less token may use the issuer's only key of that algorithm."""
    if kid is None:
        candidates = [key for (_, key_alg), key in keys.items() if key_alg == alg]
        if len(candidates) > 1:
            raise Unauthenticated("token has no 'kid' header and the issuer has several keys")
        return candidates[0] if candidates else None
    found = keys.get((kid, alg))
    if found is None and any(key_kid == kid for key_kid, _ in keys):
        raise Unauthenticated(f"algorithm {alg} does not match the type of signing key kid={_short(kid)}")
    return found


@dataclass
class _JwksCacheEntry:
    keys: KeySet | None = None
    loaded_at: float = 0.0
    attempted_at: float | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class TokenValidator:
    """Validates member JWTs against the trusted issuers passed per call; holds the JWKS cache."""

    def __init__(
        self,
        settings: Settings,
        client: httpx.AsyncClient,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._client = client
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._allowed = frozenset(settings.allowed_algorithms)
        self._remote: dict[tuple[str, str], _JwksCacheEntry] = {}
        self._inline: dict[str, KeySet] = {}
        self.fetch_count = 0
        """How many JWKS fetches were attempted (for monitoring and tests)."""

    async def validate(self, token: str, *, issuers: Mapping[str, TrustedIssuer]) -> Principal:
        """Verify ``token`` against ``issuers`` (keyed by exact issuer string); raise ``Unauthenticated``."""
        if not isinstance(token, str) or not token:
            raise Unauthenticated("no bearer token")
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthenticated(f"token is larger than {MAX_TOKEN_BYTES} bytes")
        if token.count(".") != 2:
            raise Unauthenticated("malformed token: not a compact JWS (header.payload.signature)")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"malformed token: {exc}") from None

        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._allowed:
            raise Unauthenticated(
                f"algorithm {_short(alg, 40)} not allowed (allowed: {', '.join(sorted(self._allowed))})"
            )
        if alg not in _KEY_TYPE_OF_ALG:  # the settings type already restricts this; defence in depth
            raise Unauthenticated(f"algorithm {alg} not supported")
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or len(kid) > 256):
            raise Unauthenticated("malformed token: 'kid' header must be a short string")

        iss = unverified.get("iss")
        if not isinstance(iss, str):
            raise Unauthenticated("token has no 'iss' claim")
        trusted = issuers.get(iss)
        if trusted is None:
            raise Unauthenticated(f"untrusted issuer {_short(iss)}")

        key = await self._key_for(trusted, iss, kid, alg)
        audience = trusted.audience or self._settings.expected_audience
        claims = self._verify(token, key=key, alg=alg, issuer=iss, audience=audience)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise Unauthenticated("token has no 'sub' claim")
        return Principal(issuer=iss, subject=subject, claims=claims)

    def _verify(
        self, token: str, *, key: _VerificationKey, alg: str, issuer: str, audience: str
    ) -> dict[str, Any]:
        skew = self._settings.clock_skew_s
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=audience,
                issuer=issuer,
                leeway=skew,
                options={"require": ["exp", "iss", "aud", "sub"], "verify_sub": True, "verify_jti": True},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.ImmatureSignatureError as exc:
            which = "iat" if "iat" in str(exc) else "nbf"
            raise Unauthenticated(f"token not yet valid ({which} is in the future)") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(f"audience mismatch: expected {_short(audience)}") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(f"issuer mismatch: expected {_short(issuer)}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"token has no '{exc.claim}' claim") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated(f"invalid signature (key kid={_short(key.kid)})") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None

        max_lifetime = self._settings.max_token_lifetime_s
        exp = claims["exp"]
        starts = [claims[c] for c in ("nbf", "iat") if isinstance(claims.get(c), int | float)]
        if starts:
            lifetime = exp - min(starts)
            if lifetime > max_lifetime:
                raise Unauthenticated(
                    f"token lifetime {int(lifetime)} s exceeds the maximum of {max_lifetime} s"
                )
        elif exp - self._wall_clock() > max_lifetime + skew:
            raise Unauthenticated(
                f"token without 'iat'/'nbf' expires beyond the maximum lifetime ({max_lifetime} s) from now"
            )
        return claims

    # --- keys ------------------------------------------------------------------------------------

    async def _key_for(self, trusted: TrustedIssuer, iss: str, kid: str | None, alg: str) -> _VerificationKey:
        if trusted.jwks is not None:
            keys = self._inline_keys(trusted.jwks, iss)
            found = _select_key(keys, kid, alg)
        else:
            assert trusted.jwks_uri is not None  # guaranteed by TrustedIssuer
            found = await self._remote_key(iss, trusted.jwks_uri, kid, alg)
        if found is None:
            if kid is None:
                raise Unauthenticated(f"issuer has no {alg} signing key")
            raise Unauthenticated(f"unknown signing key kid={_short(kid)}")
        return found

    def _inline_keys(self, jwks: Mapping[str, Any], iss: str) -> KeySet:
        digest = hashlib.sha256(json.dumps(jwks, sort_keys=True, default=str).encode()).hexdigest()
        keys = self._inline.get(digest)
        if keys is None:
            if len(self._inline) >= 1024:
                self._inline.clear()
            keys = self._inline[digest] = parse_jwks(jwks, source=f"issuer {_short(iss)}")
        return keys

    async def _remote_key(self, iss: str, uri: str, kid: str | None, alg: str) -> _VerificationKey | None:
        entry = self._remote.setdefault((iss, uri), _JwksCacheEntry())
        if entry.keys is not None and self._monotonic() - entry.loaded_at < JWKS_MAX_AGE_S:
            found = _select_key(entry.keys, kid, alg)
            if found is not None:
                return found
        async with entry.lock:
            now = self._monotonic()
            fresh = entry.keys is not None and now - entry.loaded_at < JWKS_MAX_AGE_S
            found = _select_key(entry.keys, kid, alg) if entry.keys is not None else None
            if found is not None and fresh:
                return found  # a request that held the lock before us fetched it
            cooldown = self._settings.jwks_refresh_cooldown_s
            if entry.attempted_at is None or now - entry.attempted_at >= cooldown:
                entry.attempted_at = now
                try:
                    entry.keys = await self._fetch_jwks(uri, iss)
                    entry.loaded_at = self._monotonic()
                except IdPUnavailable as exc:
                    if found is None:
                        raise IdPUnavailable(exc.message, retry_after_s=max(1, math.ceil(cooldown))) from None
                    log.warning("refreshing JWKS of %s failed; using cached keys", _short(iss))
                    return found
            elif entry.keys is None:
                raise IdPUnavailable(
                    f"JWKS of issuer {_short(iss)} is unavailable; next fetch allowed after the "
                    f"{cooldown:g} s cooldown",
                    retry_after_s=max(1, math.ceil(cooldown - (now - entry.attempted_at))),
                )
            return _select_key(entry.keys, kid, alg) if entry.keys is not None else None

    async def _fetch_jwks(self, uri: str, iss: str) -> KeySet:
        self.fetch_count += 1
        timeout = self._settings.jwks_fetch_timeout_s
        body = bytearray()
        try:
            async with asyncio.timeout(timeout):
                async with self._client.stream(
                    "GET",
                    uri,
                    headers={"Accept": "application/json"},
                    follow_redirects=False,
                    timeout=timeout,
                ) as response:
                    if response.status_code != 200:
                        hint = " (redirects are not followed)" if response.is_redirect else ""
                        raise IdPUnavailable(
                            f"cannot fetch JWKS from {uri}: HTTP {response.status_code}{hint}"
                        )
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_JWKS_BYTES:
                            raise IdPUnavailable(f"JWKS from {uri} is larger than {MAX_JWKS_BYTES} bytes")
        except TimeoutError:
            raise IdPUnavailable(f"timed out after {timeout:g} s fetching JWKS from {uri}") from None
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
            raise IdPUnavailable(f"cannot fetch JWKS from {uri}: {type(exc).__name__}") from None
        try:
            document = json.loads(body)
        except ValueError:
            raise IdPUnavailable(f"JWKS from {uri} is not JSON") from None
        try:
            return parse_jwks(document, source=f"issuer {_short(iss)} ({uri})")
        except Unauthenticated as exc:
            raise IdPUnavailable(exc.message) from None


# --- bearer credentials ----------------------------------------------------------------------------

ACCESS_TOKEN_HEADER = "x-forwarded-access-token"
ACCESS_TOKEN_QUERY = "access_token"


def _all_values(container: Any, name: str) -> list[str]:
    """Every value of ``name`` in a multi-valued mapping (starlette/httpx headers, query params, pairs)."""
    if container is None:
        return []
    for method in ("getlist", "get_list"):
        getter = getattr(container, method, None)
        if callable(getter):
            return [str(v) for v in getter(name)]
    if isinstance(container, Mapping):
        for key, value in container.items():
            if str(key).lower() == name.lower():
                return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]
        return []
    if isinstance(container, Iterable):
        return [str(v) for k, v in container if str(k).lower() == name.lower()]
    return []


def _check_token_syntax(token: str, where: str) -> str:
    if not _B64TOKEN.match(token):
        raise Unauthenticated(f"malformed bearer token in {where}")
    return token


def extract_bearer(headers: Any, query: Any = None) -> str | None:
    """The one bearer token of a request, or ``None``; ``BadRequest`` if two different ones are present.

    Looks at every ``Authorization: Bearer`` header, every ``X-Forwarded-Access-Token`` header and every
    ``access_token`` query parameter (RFC 6750 §2). The same token repeated is accepted.
    """
    found: list[str] = []
    for value in _all_values(headers, "authorization"):
        scheme, _, credential = value.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise Unauthenticated(
                f"unsupported authorization scheme {_short(scheme, 20)}; use 'Bearer <token>'"
            )
        credential = credential.strip()
        if not credential:
            raise Unauthenticated("empty bearer token in Authorization header")
        found.append(_check_token_syntax(credential, "Authorization header"))
    for value in _all_values(headers, ACCESS_TOKEN_HEADER):
        found.append(_check_token_syntax(value.strip(), "X-Forwarded-Access-Token header"))
    for value in _all_values(query, ACCESS_TOKEN_QUERY):
        found.append(_check_token_syntax(value.strip(), "access_token query parameter"))
    distinct = set(found)
    if len(distinct) > 1:
        raise BadRequest("the request carries two different credentials; send exactly one bearer token")
    return found[0] if found else None
