"""The narrow FHS-FHS client (STYLE #9): every call carries a request assertion signed by this FHS."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from fhs.errors import FHSError, UpstreamError, UpstreamTimeout
from fhs.identity.keys import FHSKeyring
from fhs.identity.schemas import Principal
from fhs.observability import REQUEST_ID
from fhs.peering import service as peers_service
from fhs.peering.messages import sign_request
from fhs.store.base import Store

ASSERTION_HEADER = "X-FHS-Assertion"


class PeerRefused(FHSError):
    """A peer FHS refused the request; status and code are the peer's."""

    code = "peer_refused"


def _peer_error(peer_id: str, response: httpx.Response) -> FHSError:
    try:
        error = response.json()["error"]
        message, code = str(error["message"]), str(error["code"])
    except (ValueError, KeyError, TypeError):
        message, code = f"HTTP {response.status_code}", "peer_refused"
    if response.status_code >= 500:
        return UpstreamError(f"peer FHS {peer_id} failed: {message}"[:500])
    refused = PeerRefused(f"{peer_id}: {message}"[:500])
    refused.status_code, refused.code = response.status_code, code
    return refused


class PeerClient:
    """Calls the FHS-FHS API of peers (base URL from the pinned peer document)."""

    def __init__(
        self,
        *,
        store: Store,
        http: httpx.AsyncClient,
        me: str,
        keyring: Callable[[], FHSKeyring],
        timeout_s: float,
    ) -> None:
        self._store, self._http, self._me, self._keyring, self._timeout_s = (
            store,
            http,
            me,
            keyring,
            timeout_s,
        )

    async def request(
        self,
        peer_id: str,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
        claims: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """Send one signed request to a peer; transport failures become 502/504 naming the peer."""
        peer = await peers_service.get_peer(store=self._store, fhs_id=peer_id)
        token = sign_request(
            self._keyring(), me=self._me, peer=peer_id, method=method, path=path, body=body, extra=claims
        )
        out = [(n, v) for n, v in headers or [] if n.lower() != "x-request-id"]
        out += [(ASSERTION_HEADER, token), ("X-Request-Id", REQUEST_ID.get())]
        try:
            return await self._http.request(
                method, peer["base_url"] + path, content=body, headers=out, timeout=self._timeout_s
            )
        except httpx.TimeoutException:
            raise UpstreamTimeout(f"peer FHS {peer_id} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"peer FHS {peer_id} is unreachable ({exc.__class__.__name__})") from None

    async def _json(self, peer_id: str, method: str, path: str, payload: Any = None) -> Any:
        body = b"" if payload is None else json.dumps(payload).encode()
        headers = [("Content-Type", "application/json")] if payload is not None else []
        response = await self.request(peer_id, method, path, body=body, headers=headers)
        if response.status_code >= 400:
            raise _peer_error(peer_id, response)
        try:
            return response.json()
        except ValueError:
            raise UpstreamError(f"peer FHS {peer_id} answered with something that is not JSON") from None

    async def forward_command(
        self, *, peer_id: str, fid: str, actor: Principal, name: str, args: dict[str, Any]
    ) -> int:
        """Have the federation's home run a member's command; returns the committed event's sequence."""
        result = await self._json(
            peer_id,
            "POST",
            f"/fhs/v1/federations/{fid}/commands",
            {"name": name, "args": args, "actor": {"issuer": actor.issuer, "subject": actor.subject}},
        )
        return int(result["seq"])

    async def push_events(self, *, peer_id: str, fid: str, events: list[str]) -> int:
        """Deliver signed events; returns the peer's sequence after applying them."""
        result = await self._json(peer_id, "POST", f"/fhs/v1/federations/{fid}/events", {"events": events})
        return int(result["seq"])

    async def pull_events(self, *, peer_id: str, fid: str, after: int) -> list[str]:
        """Signed events of a federation homed at ``peer_id`` after sequence ``after``."""
        result = await self._json(peer_id, "GET", f"/fhs/v1/federations/{fid}/events?after={after}")
        return [str(e) for e in result["events"]]

    async def fetch_keys(self, *, peer_id: str) -> list[str]:
        """The peer's key set, signed once with each of its published keys."""
        signed = (await self._json(peer_id, "GET", "/fhs/v1/keys"))["signed_jwks"]
        return [str(token) for token in signed] if isinstance(signed, list) else [str(signed)]

    async def fetch_monitoring(self, *, peer_id: str, fid: str) -> dict[str, Any]:
        """The peer's counters for one federation."""
        result: dict[str, Any] = await self._json(peer_id, "GET", f"/fhs/v1/federations/{fid}/monitoring")
        return result

    async def forward_invoke(
        self,
        *,
        peer_id: str,
        fid: str,
        sid: str,
        actor: Principal,
        method: str,
        sub_path: str,
        query: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> httpx.Response:
        """Forward a member's invocation to the FHS that owns the service, asserting who the member is."""
        path = f"/fhs/v1/federations/{fid}/services/{sid}/invoke/{sub_path}" + (f"?{query}" if query else "")
        response = await self.request(
            peer_id,
            method,
            path,
            body=body,
            headers=headers,
            claims={"federation": fid, "member": {"iss": actor.issuer, "sub": actor.subject}},
        )
        if response.status_code >= 400 and response.headers.get("x-fhs-error") == "1":
            raise _peer_error(peer_id, response)
        return response
