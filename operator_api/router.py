"""Operator API (`/operator/v1`): status, trusted issuers, FedAdmin grants, operator audit log."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response

from fhs import __version__
from fhs.audit import service as audit_service
from fhs.dependencies import RuntimeDep, StoreDep, require_operator
from fhs.federations.schemas import MAX_SEQ, NAME_PATTERN, AuditEntryRead
from fhs.federations.state import FEDERATIONS
from fhs.identity.schemas import TrustedIssuer
from fhs.ids import member_key_from_id
from fhs.operator import service as operator_service
from fhs.operator.schemas import FedAdminGrant, FedAdminRead, IssuerRead, KeyRotation, Status
from fhs.peering import service as peers_service
from fhs.peering.schemas import FHS_ID_PATTERN, FederationSync, PeerCreate, PeerRead

router = APIRouter(tags=["operator"], dependencies=[Depends(require_operator)])
IssuerName = Annotated[str, Path(pattern=NAME_PATTERN)]
PeerId = Annotated[str, Path(pattern=FHS_ID_PATTERN)]
MemberIdPath = Annotated[str, Path(max_length=2048)]


@router.get("/status")
async def status(runtime: RuntimeDep) -> Status:
    """Version, uptime, store health and counts."""
    store = runtime.store
    return Status(
        fhs_id=runtime.settings.fhs_id,
        version=__version__,
        uptime_s=round(time.time() - runtime.started_at, 3),
        store=runtime.settings.resolved_store_url.split(":", 1)[0],
        store_ok=await store.ping(),
        federations=len(await store.list(FEDERATIONS)),
        trusted_issuers=len(await store.list(operator_service.ISSUERS)),
        peers=0,
    )


@router.get("/issuers")
async def list_issuers(store: StoreDep) -> list[IssuerRead]:
    """Every trusted issuer."""
    return await operator_service.list_issuers(store=store)


@router.put("/issuers/{name}")
async def put_issuer(name: IssuerName, body: TrustedIssuer, store: StoreDep) -> IssuerRead:
    """Trust an issuer (create or replace) under a name."""
    return await operator_service.put_issuer(store=store, name=name, issuer=body)


@router.get("/issuers/{name}")
async def get_issuer(name: IssuerName, store: StoreDep) -> IssuerRead:
    """One trusted issuer."""
    return await operator_service.get_issuer(store=store, name=name)


@router.delete("/issuers/{name}", status_code=204)
async def delete_issuer(name: IssuerName, store: StoreDep) -> Response:
    """Stop trusting an issuer."""
    await operator_service.delete_issuer(store=store, name=name)
    return Response(status_code=204)


@router.get("/fedadmins")
async def list_fedadmins(store: StoreDep) -> list[FedAdminRead]:
    """Identities allowed to create federations."""
    return await operator_service.list_fedadmins(store=store)


@router.post("/fedadmins", status_code=201)
async def grant_fedadmin(body: FedAdminGrant, store: StoreDep) -> FedAdminRead:
    """Allow an identity to create federations."""
    return await operator_service.grant_fedadmin(store=store, body=body)


@router.delete("/fedadmins/{member_id}", status_code=204)
async def revoke_fedadmin(member_id: MemberIdPath, store: StoreDep) -> Response:
    """Withdraw the capability to create federations."""
    await operator_service.revoke_fedadmin(store=store, key=member_key_from_id(member_id))
    return Response(status_code=204)


@router.get("/audit")
async def audit(
    store: StoreDep,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditEntryRead]:
    """The operator audit log."""
    entries: list[dict[str, Any]] = await audit_service.read(store=store, fid=None, after=after, limit=limit)
    return [AuditEntryRead.model_validate(e) for e in entries]


@router.get("/peers")
async def list_peers(store: StoreDep) -> list[PeerRead]:
    """Peer FHSs and their pinned keys."""
    return await peers_service.list_peers(store=store)


@router.put("/peers/{fhs_id}")
async def put_peer(fhs_id: PeerId, body: PeerCreate, runtime: RuntimeDep) -> PeerRead:
    """Peer with an FHS: pin its keys (inline, or fetched once and checked against fingerprints)."""
    return await peers_service.put_peer(
        store=runtime.store, http=runtime.http, me=runtime.settings.fhs_id, fhs_id=fhs_id, body=body
    )


@router.delete("/peers/{fhs_id}", status_code=204)
async def delete_peer(fhs_id: PeerId, store: StoreDep) -> Response:
    """Stop peering with an FHS."""
    await peers_service.delete_peer(store=store, fhs_id=fhs_id)
    return Response(status_code=204)


@router.get("/replication")
async def replication_status(runtime: RuntimeDep) -> list[FederationSync]:
    """Per federation: home, event sequence, state hash, and per-peer sync status (pending, last success)."""
    return await runtime.replication.status()


@router.post("/replication/sync")
async def sync_now(runtime: RuntimeDep) -> list[FederationSync]:
    """Run one replication round now (push pending events, pull from homes) and report the status."""
    await runtime.replication.sync_once()
    return await runtime.replication.status()


@router.post("/keys/rotate")
async def rotate_keys(body: KeyRotation, runtime: RuntimeDep) -> dict[str, object]:
    """Rotate this FHS's signing key: the new key is published now and signs after the delay."""
    kid = await runtime.rotate_keys(overlap_s=body.overlap_s, publish_delay_s=body.publish_delay_s)
    return {"next_kid": kid, "jwks": runtime.keyring.jwks()}
