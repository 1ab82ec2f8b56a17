"""Trusted issuers and FedAdmin grants, managed by the Operator; all writes audited in the operator log."""

from __future__ import annotations

from fhs.audit import service as audit_service
from fhs.errors import Conflict, NotFound
from fhs.federations.events import now_iso
from fhs.identity.schemas import TrustedIssuer
from fhs.ids import member_id, member_key
from fhs.operator.schemas import FedAdminGrant, FedAdminRead, IssuerRead
from fhs.store.base import Append, Delete, Put, Store

ISSUERS = "issuers"
FEDADMINS = "fedadmins"
OPERATOR = "operator"


def _audit(action: str, target: str) -> Append:
    return Append(
        audit_service.OPERATOR_LOG, audit_service.entry(actor=OPERATOR, action=action, target=target)
    )


async def put_issuer(*, store: Store, name: str, issuer: TrustedIssuer) -> IssuerRead:
    """Create or replace the trusted issuer ``name``; one issuer URL is trusted under one name only."""
    for doc in await store.list(ISSUERS):
        if doc.key != name and doc.value["issuer"] == issuer.issuer:
            raise Conflict(f"issuer {issuer.issuer!r} is already trusted as {doc.key!r}")
    await store.write([Put(ISSUERS, name, issuer.model_dump(mode="json")), _audit("issuer.put", name)])
    return IssuerRead(name=name, config=issuer)


async def list_issuers(*, store: Store) -> list[IssuerRead]:
    """Every trusted issuer."""
    return [
        IssuerRead(name=d.key, config=TrustedIssuer.model_validate(d.value))
        for d in await store.list(ISSUERS)
    ]


async def get_issuer(*, store: Store, name: str) -> IssuerRead:
    """One trusted issuer."""
    doc = await store.get(ISSUERS, name)
    if doc is None:
        raise NotFound(f"no trusted issuer named {name[:64]!r}")
    return IssuerRead(name=name, config=TrustedIssuer.model_validate(doc.value))


async def delete_issuer(*, store: Store, name: str) -> None:
    """Stop trusting an issuer; tokens it issued are refused from the next request on."""
    await get_issuer(store=store, name=name)
    await store.write([Delete(ISSUERS, name), _audit("issuer.deleted", name)])


async def trusted_issuers(*, store: Store) -> dict[str, TrustedIssuer]:
    """Trusted issuers keyed by their ``iss`` value, as the token validator needs them."""
    return {i.config.issuer: i.config for i in await list_issuers(store=store)}


def _fedadmin_read(key: str, value: dict[str, str]) -> FedAdminRead:
    return FedAdminRead(
        id=member_id(key), issuer=value["issuer"], subject=value["subject"], granted_at=value["granted_at"]
    )


async def grant_fedadmin(*, store: Store, body: FedAdminGrant) -> FedAdminRead:
    """Grant the capability to create federations (idempotent)."""
    key = member_key(body.issuer, body.subject)
    value = {"issuer": body.issuer, "subject": body.subject, "granted_at": now_iso()}
    existing = await store.get(FEDADMINS, key)
    if existing is not None:
        return _fedadmin_read(key, existing.value)
    await store.write([Put(FEDADMINS, key, value), _audit("fedadmin.granted", member_id(key))])
    return _fedadmin_read(key, value)


async def list_fedadmins(*, store: Store) -> list[FedAdminRead]:
    """Every FedAdmin grant."""
    return [_fedadmin_read(d.key, d.value) for d in await store.list(FEDADMINS)]


async def revoke_fedadmin(*, store: Store, key: str) -> None:
    """Revoke the capability to create federations (existing federations are unaffected)."""
    if await store.get(FEDADMINS, key) is None:
        raise NotFound("no FedAdmin grant for that identity")
    await store.write([Delete(FEDADMINS, key), _audit("fedadmin.revoked", member_id(key))])


async def is_fedadmin(*, store: Store, key: str) -> bool:
    """True when the operator granted ``key`` the capability to create federations."""
    return await store.get(FEDADMINS, key) is not None
