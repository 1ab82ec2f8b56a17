"""Peers as the Operator configures them: base URL and pinned keys, kept apart per peer (never merged)."""

from __future__ import annotations

from typing import Any

import httpx

from fhs.audit import service as audit_service
from fhs.errors import InvalidInput, NotFound, UpstreamError
from fhs.federations.events import now_iso
from fhs.identity.keys import jwk_thumbprint
from fhs.peering.schemas import PeerCreate, PeerRead
from fhs.store.base import Append, Delete, Put, Store

PEERS = "peers"
MAX_KEYS = 8


def _public_keys(jwks: dict[str, Any]) -> dict[str, Any]:
    """The Ed25519 public keys of a JWKS, each with kid = its RFC 7638 thumbprint; anything else refused."""
    keys = jwks.get("keys")
    if not isinstance(keys, list) or not 0 < len(keys) <= MAX_KEYS:
        raise InvalidInput(f"a peer JWKS needs 1 to {MAX_KEYS} keys")
    pinned = []
    for jwk in keys:
        if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or "d" in jwk:
            raise InvalidInput(
                "peer keys must be public Ed25519 JWKs (kty OKP, crv Ed25519, no private part)"
            )
        try:
            kid = jwk_thumbprint(jwk)
        except (KeyError, ValueError):
            raise InvalidInput("a peer key lacks its 'x' member") from None
        if jwk.get("kid", kid) != kid:
            raise InvalidInput(f"peer key kid {str(jwk.get('kid'))[:64]!r} is not its RFC 7638 thumbprint")
        pinned.append(
            {"kty": "OKP", "crv": "Ed25519", "x": jwk["x"], "kid": kid, "alg": "EdDSA", "use": "sig"}
        )
    return {"keys": pinned}


def _read(doc: dict[str, Any]) -> PeerRead:
    return PeerRead(
        fhs_id=doc["fhs_id"],
        base_url=doc["base_url"],
        kids=[k["kid"] for k in doc["jwks"]["keys"]],
        added_at=doc["added_at"],
        keys_updated_at=doc["keys_updated_at"],
    )


async def _fetch_jwks(http: httpx.AsyncClient, base_url: str) -> dict[str, Any]:
    url = base_url.rstrip("/") + "/.well-known/jwks.json"
    try:
        response = await http.get(url)
        response.raise_for_status()
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise UpstreamError(f"could not fetch the peer's keys from {url}: {exc.__class__.__name__}") from None
    if not isinstance(body, dict):
        raise UpstreamError(f"{url} did not return a JWK Set")
    return body


async def put_peer(
    *, store: Store, http: httpx.AsyncClient, me: str, fhs_id: str, body: PeerCreate
) -> PeerRead:
    """Add or replace a peer; with fingerprints the keys are fetched once and kept only if they match."""
    if fhs_id == me:
        raise InvalidInput("an FHS does not peer with itself")
    if body.jwks is not None:
        jwks = _public_keys(body.jwks)
    else:
        fetched = _public_keys(await _fetch_jwks(http, body.base_url))
        wanted = set(body.fingerprints or [])
        jwks = {"keys": [k for k in fetched["keys"] if k["kid"] in wanted]}
        missing = wanted - {k["kid"] for k in jwks["keys"]}
        if missing:
            raise InvalidInput(
                f"the peer at {body.base_url} does not publish keys with fingerprints "
                f"{', '.join(sorted(missing))}; check them with its operator"
            )
    now = now_iso()
    existing = await store.get(PEERS, fhs_id)
    doc = {
        "fhs_id": fhs_id,
        "base_url": body.base_url.rstrip("/"),
        "jwks": jwks,
        "added_at": existing.value["added_at"] if existing else now,
        "keys_updated_at": now,
    }
    await store.write(
        [
            Put(PEERS, fhs_id, doc),
            Append(
                audit_service.OPERATOR_LOG,
                audit_service.entry(
                    actor="operator",
                    action="peer.put",
                    target=fhs_id,
                    details={"kids": [k["kid"] for k in jwks["keys"]]},
                ),
            ),
        ]
    )
    return _read(doc)


async def get_peer(*, store: Store, fhs_id: str) -> dict[str, Any]:
    """The stored peer document (base URL, pinned JWKS)."""
    doc = await store.get(PEERS, fhs_id)
    if doc is None:
        raise NotFound(f"{fhs_id[:64]!r} is not a peer of this FHS")
    return doc.value


async def is_peer(*, store: Store, fhs_id: str) -> bool:
    """True when ``fhs_id`` is a configured peer."""
    return await store.get(PEERS, fhs_id) is not None


async def list_peers(*, store: Store) -> list[PeerRead]:
    """Every peer."""
    return [_read(d.value) for d in await store.list(PEERS)]


async def delete_peer(*, store: Store, fhs_id: str) -> None:
    """Stop peering: nothing from that FHS is accepted any more."""
    await get_peer(store=store, fhs_id=fhs_id)
    await store.write(
        [
            Delete(PEERS, fhs_id),
            Append(
                audit_service.OPERATOR_LOG,
                audit_service.entry(actor="operator", action="peer.deleted", target=fhs_id),
            ),
        ]
    )


async def replace_peer_keys(*, store: Store, fhs_id: str, jwks: dict[str, Any]) -> None:
    """Pin a peer's rotated key set (already verified as signed by one of its pinned keys)."""
    doc = await get_peer(store=store, fhs_id=fhs_id)
    pinned = _public_keys(jwks)
    if pinned == doc["jwks"]:
        return
    await store.write(
        [
            Put(PEERS, fhs_id, {**doc, "jwks": pinned, "keys_updated_at": now_iso()}),
            Append(
                audit_service.OPERATOR_LOG,
                audit_service.entry(
                    actor=fhs_id,
                    action="peer.keys_rotated",
                    target=fhs_id,
                    details={"kids": [k["kid"] for k in pinned["keys"]]},
                ),
            ),
        ]
    )
