"""Only calls forwarded by this node's FHS get in: invocation-token checks on every request (DESIGN §2).

:class:`InvocationVerifier` checks the ``Authorization: Bearer`` invocation token with
:func:`fhs.identity.invocation.verify_invocation_token` against the FHS keys (pinned inline, or fetched from
the FHS JWKS URL at start, again on an unknown ``kid`` at most once per cooldown, and after a maximum age),
for the exact FHS issuer and one of the node's service ids as audience, and refuses a replayed ``jti``.

:class:`InvocationAuthMiddleware` applies it to every HTTP request except ``GET /healthz``. It is an ASGI
middleware rather than a router dependency because FastAPI parses request bodies *before* it runs
dependencies: with a dependency, an unauthenticated caller would learn 422 validation details (and make the
node read its body) instead of getting a plain 401.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

import httpx
import jwt

from fhs.errors import Unauthenticated
from fhs.identity.invocation import verify_invocation_token
from fhs.identity.pinned import UnknownSigningKey
from fhs.identity.replay import MemoryReplayGuard, ReplayGuard

log = logging.getLogger(__name__)

MAX_JWKS_BYTES = 256 * 1024
MAX_AUTHORIZATION_BYTES = 16 * 1024
OPEN_PATHS = frozenset({"/healthz", "/metrics"})
"""Liveness and Prometheus metrics: keep the node on a private network (docs/deployment.md)."""


class InvocationVerifier:
    """Verifies FHS invocation tokens for one resource service (see module docstring)."""

    def __init__(
        self,
        *,
        issuer: str,
        audiences: Collection[str],
        jwks: Mapping[str, Any] | None = None,
        jwks_url: str = "",
        client: httpx.AsyncClient | None = None,
        refresh_cooldown_s: float = 30.0,
        max_age_s: float = 3600.0,
        fetch_timeout_s: float = 5.0,
        leeway_s: float = 30.0,
        max_lifetime_s: int = 600,
        monotonic: Callable[[], float] = time.monotonic,
        replays: ReplayGuard | None = None,
    ) -> None:
        if jwks is None and (not jwks_url or client is None):
            raise ValueError("pin the FHS JWKS inline, or give its URL and an HTTP client")
        self._issuer = issuer
        self._audiences = frozenset(audiences)
        self._jwks: Mapping[str, Any] = jwks if jwks is not None else {"keys": []}
        self._pinned = jwks is not None
        self._url = jwks_url
        self._client = client
        self._cooldown = refresh_cooldown_s
        self._max_age = max_age_s
        self._timeout = fetch_timeout_s
        self._leeway = leeway_s
        self._max_lifetime = max_lifetime_s
        self._monotonic = monotonic
        self._replays = replays or MemoryReplayGuard(leeway=leeway_s)
        self._lock = asyncio.Lock()
        self._loaded_at: float | None = None
        self._attempted_at: float | None = None
        self._generation = 0
        self.fetch_count = 0

    async def start(self) -> None:
        """Fetch the FHS JWKS once (a failure is logged; the first request will try again)."""
        if self._pinned:
            return
        try:
            await self._fetch()
        except Unauthenticated as exc:
            log.warning(
                "cannot fetch the FHS JWKS at start (%s); will retry on the first request", exc.message
            )

    async def verify(self, authorization: list[str]) -> dict[str, Any]:
        """The verified claims for the request's ``Authorization`` header values, or ``Unauthenticated``."""
        token = _bearer_token(authorization)
        audience = self._audience_of(token)
        if not self._pinned and self._stale():
            await self._refresh(generation=self._generation, reason="maximum age")
        claims = await self._verified(token, audience)
        if not await self._replays.first_use(str(claims["jti"]), float(claims["exp"])):
            raise Unauthenticated("invocation token replayed (jti already used)")
        return claims

    async def _verified(self, token: str, audience: str) -> dict[str, Any]:
        for attempt in range(2):
            generation = self._generation
            try:
                return verify_invocation_token(
                    token,
                    jwks=self._jwks,
                    issuer=self._issuer,
                    audience=audience,
                    leeway=self._leeway,
                    max_lifetime_s=self._max_lifetime,
                )
            except UnknownSigningKey:
                if (
                    self._pinned
                    or attempt
                    or not await self._refresh(generation=generation, reason="unknown kid")
                ):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _audience_of(self, token: str) -> str:
        """The accepted service id the token is for (read unverified; verification then checks it exactly)."""
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise Unauthenticated("malformed invocation token") from None
        aud = claims.get("aud")
        candidates = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        for candidate in candidates:
            if isinstance(candidate, str) and candidate in self._audiences:
                return candidate
        raise Unauthenticated("invocation token audience mismatch: the token is not for this service")

    def _stale(self) -> bool:
        return self._loaded_at is None or self._monotonic() - self._loaded_at >= self._max_age

    async def _refresh(self, *, generation: int, reason: str) -> bool:
        """Re-fetch the JWKS unless another request just did or the cooldown forbids; True if keys changed."""
        async with self._lock:
            if self._generation != generation:
                return True  # refreshed while we waited for the lock
            now = self._monotonic()
            if self._attempted_at is not None and now - self._attempted_at < self._cooldown:
                return False
            self._attempted_at = now
            try:
                await self._fetch()
            except Unauthenticated as exc:
                log.warning(
                    "refreshing the FHS JWKS (%s) failed: %s; keeping the cached keys", reason, exc.message
                )
                return False
            return True

    async def _fetch(self) -> None:
        assert self._client is not None
        self.fetch_count += 1
        body = bytearray()
        try:
            async with asyncio.timeout(self._timeout):
                async with self._client.stream(
                    "GET", self._url, headers={"Accept": "application/json"}, follow_redirects=False
                ) as response:
                    if response.status_code != 200:
                        raise Unauthenticated(f"FHS JWKS answered HTTP {response.status_code}")
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_JWKS_BYTES:
                            raise Unauthenticated(f"FHS JWKS is larger than {MAX_JWKS_BYTES} bytes")
        except TimeoutError:
            raise Unauthenticated(f"timed out after {self._timeout:g} s fetching the FHS JWKS") from None
        except httpx.HTTPError as exc:
            raise Unauthenticated(f"cannot fetch the FHS JWKS: {type(exc).__name__}") from None
        try:
            document = json.loads(body)
        except ValueError:
            raise Unauthenticated("the FHS JWKS is not JSON") from None
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise Unauthenticated("the FHS JWKS is not a JWK Set (no 'keys' list)")
        self._jwks = {"keys": [k for k in document["keys"] if isinstance(k, dict)]}
        self._loaded_at = self._monotonic()
        self._generation += 1


def _bearer_token(authorization: list[str]) -> str:
    if not authorization:
        raise Unauthenticated(
            "missing invocation token: this resource service only accepts calls forwarded by its FHS "
            "(invoke it through /member/v1/federations/{fid}/services/{sid}/invoke/…)"
        )
    if len(authorization) > 1:
        raise Unauthenticated("several Authorization headers; send exactly one invocation token")
    value = authorization[0]
    scheme, _, token = value.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(value) > MAX_AUTHORIZATION_BYTES:
        raise Unauthenticated("the Authorization header must be 'Bearer <invocation token>'")
    return token


class InvocationAuthMiddleware:
    """ASGI middleware: 401 with the JSON error body unless the request carries a valid invocation token.

    The verifier is looked up per request from ``app.state.verifier`` (set by the app's lifespan); the
    verified claims are put in ``request.state.invocation``.
    """

    def __init__(self, app: Any, open_paths: Collection[str] = OPEN_PATHS) -> None:
        self.app = app
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Check the token, then pass the request on (or answer 401 without reading the body)."""
        if scope["type"] != "http" or (
            scope["path"] in self.open_paths and scope["method"] in ("GET", "HEAD")
        ):
            await self.app(scope, receive, send)
            return
        verifier: InvocationVerifier | None = getattr(scope["app"].state, "verifier", None)
        values = [v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"authorization"]
        try:
            if verifier is None:
                raise Unauthenticated("the resource service is not ready to verify invocation tokens")
            claims = await verifier.verify(values)
        except Unauthenticated as exc:
            client = scope.get("client") or ("?", 0)
            log.info("refused %s %s from %s: %s", scope["method"], scope["path"], client[0], exc.message)
            await _send_json(
                send, 401, exc.to_body(), [(b"www-authenticate", b'Bearer error="invalid_token"')]
            )
            return
        scope.setdefault("state", {})["invocation"] = claims
        await self.app(scope, receive, send)


async def _send_json(send: Any, status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]]) -> None:
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
