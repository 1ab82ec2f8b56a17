"""Member API (`/member/v1`): federations, membership, attributes, services, discovery, invocation, audit."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from fhs.dependencies import CurrentMember, RuntimeDep, StoreDep, current_member
from fhs.federations import service as federations_service
from fhs.federations.schemas import (
    NAME_PATTERN,
    AttributeCreate,
    AttributeRead,
    AuditEntryRead,
    FederationCreate,
    FederationRead,
    MemberGrant,
    MemberRead,
)
from fhs.ids import member_key_from_id
from fhs.invocation import service as invocation_service
from fhs.registry import service as registry_service
from fhs.registry.schemas import ServiceCreate, ServiceRead, ServiceUpdate

router = APIRouter(tags=["member"], dependencies=[Depends(current_member)])
FedId = Annotated[str, Path(max_length=100)]
ServiceId = Annotated[str, Path(max_length=300)]
MemberId = Annotated[str, Path(max_length=2048)]
AttributeName = Annotated[str, Path(pattern=NAME_PATTERN)]
INVOKE_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@router.get("/federations")
async def list_federations(store: StoreDep, me: CurrentMember) -> list[FederationRead]:
    """Federations the caller belongs to."""
    return await federations_service.list_for_member(store=store, principal=me)


@router.post("/federations", status_code=201)
async def create_federation(body: FederationCreate, runtime: RuntimeDep, me: CurrentMember) -> FederationRead:
    """Create a federation instance (needs the operator's FedAdmin grant)."""
    return await federations_service.create(
        store=runtime.store, fhs_id=runtime.settings.fhs_id, principal=me, body=body
    )


@router.get("/federations/{fid}")
async def get_federation(fid: FedId, store: StoreDep, me: CurrentMember) -> FederationRead:
    """One federation the caller belongs to."""
    return await federations_service.get(store=store, fid=fid, principal=me)


@router.delete("/federations/{fid}", status_code=204)
async def delete_federation(fid: FedId, runtime: RuntimeDep, me: CurrentMember) -> Response:
    """Delete a federation (FedAdmin)."""
    await federations_service.delete(
        store=runtime.store, fhs_id=runtime.settings.fhs_id, fid=fid, principal=me
    )
    return Response(status_code=204)


@router.get("/federations/{fid}/members")
async def list_members(fid: FedId, store: StoreDep, me: CurrentMember) -> list[MemberRead]:
    """Members of the federation."""
    return await federations_service.list_members(store=store, fid=fid, principal=me)


@router.post("/federations/{fid}/members", status_code=201)
async def grant_member(fid: FedId, body: MemberGrant, runtime: RuntimeDep, me: CurrentMember) -> MemberRead:
    """Grant membership to an identity (FedAdmin)."""
    return await federations_service.grant_member(
        store=runtime.store, fhs_id=runtime.settings.fhs_id, fid=fid, principal=me, body=body
    )


@router.delete("/federations/{fid}/members/{member_id}", status_code=204)
async def revoke_member(fid: FedId, member_id: MemberId, runtime: RuntimeDep, me: CurrentMember) -> Response:
    """Revoke a membership (FedAdmin)."""
    await federations_service.revoke_member(
        store=runtime.store,
        fhs_id=runtime.settings.fhs_id,
        fid=fid,
        principal=me,
        key=member_key_from_id(member_id),
    )
    return Response(status_code=204)


@router.get("/federations/{fid}/attributes")
async def list_attributes(fid: FedId, store: StoreDep, me: CurrentMember) -> list[AttributeRead]:
    """Attribute definitions."""
    found = await federations_service.list_attributes(store=store, fid=fid, principal=me)
    return [AttributeRead.model_validate(a) for a in found]


@router.post("/federations/{fid}/attributes", status_code=201)
async def define_attribute(
    fid: FedId, body: AttributeCreate, runtime: RuntimeDep, me: CurrentMember
) -> AttributeRead:
    """Define an attribute (FedAdmin)."""
    await federations_service.define_attribute(
        store=runtime.store, fhs_id=runtime.settings.fhs_id, fid=fid, principal=me, body=body
    )
    return AttributeRead(name=body.name, description=body.description, predefined=False)


@router.delete("/federations/{fid}/attributes/{name}", status_code=204)
async def delete_attribute(
    fid: FedId, name: AttributeName, runtime: RuntimeDep, me: CurrentMember
) -> Response:
    """Delete an attribute and its grants (FedAdmin)."""
    await federations_service.delete_attribute(
        store=runtime.store, fhs_id=runtime.settings.fhs_id, fid=fid, principal=me, name=name
    )
    return Response(status_code=204)


@router.put("/federations/{fid}/members/{member_id}/attributes/{name}")
async def grant_attribute(
    fid: FedId, member_id: MemberId, name: AttributeName, runtime: RuntimeDep, me: CurrentMember
) -> MemberRead:
    """Grant an attribute to a member (FedAdmin)."""
    return await federations_service.grant_attribute(
        store=runtime.store,
        fhs_id=runtime.settings.fhs_id,
        fid=fid,
        principal=me,
        key=member_key_from_id(member_id),
        name=name,
    )


@router.delete("/federations/{fid}/members/{member_id}/attributes/{name}")
async def revoke_attribute(
    fid: FedId, member_id: MemberId, name: AttributeName, runtime: RuntimeDep, me: CurrentMember
) -> MemberRead:
    """Revoke an attribute from a member (FedAdmin)."""
    return await federations_service.revoke_attribute(
        store=runtime.store,
        fhs_id=runtime.settings.fhs_id,
        fid=fid,
        principal=me,
        key=member_key_from_id(member_id),
        name=name,
    )


@router.post("/federations/{fid}/services", status_code=201)
async def register_service(
    fid: FedId, body: ServiceCreate, runtime: RuntimeDep, me: CurrentMember
) -> ServiceRead:
    """Register a service (ServiceOwner); the response carries its encoded id."""
    return await registry_service.register(
        store=runtime.store,
        fhs_id=runtime.settings.fhs_id,
        allowlist=runtime.settings.proxy_allowlist,
        fid=fid,
        principal=me,
        body=body,
    )


@router.get("/federations/{fid}/services")
async def discover_services(
    fid: FedId,
    store: StoreDep,
    me: CurrentMember,
    type: Annotated[str | None, Query(max_length=64)] = None,
) -> list[ServiceRead]:
    """Services the caller may discover (filtered by each service's discovery policy)."""
    return await registry_service.discover(store=store, fid=fid, principal=me, service_type=type)


@router.get("/federations/{fid}/services/{sid}")
async def get_service(fid: FedId, sid: ServiceId, store: StoreDep, me: CurrentMember) -> ServiceRead:
    """One service the caller may discover."""
    return await registry_service.get(store=store, fid=fid, sid=sid, principal=me)


@router.patch("/federations/{fid}/services/{sid}")
async def update_service(
    fid: FedId, sid: ServiceId, body: ServiceUpdate, runtime: RuntimeDep, me: CurrentMember
) -> ServiceRead:
    """Change a registration (owner)."""
    return await registry_service.update(
        store=runtime.store,
        fhs_id=runtime.settings.fhs_id,
        allowlist=runtime.settings.proxy_allowlist,
        fid=fid,
        sid=sid,
        principal=me,
        body=body,
    )


@router.delete("/federations/{fid}/services/{sid}", status_code=204)
async def delete_service(fid: FedId, sid: ServiceId, runtime: RuntimeDep, me: CurrentMember) -> Response:
    """Remove a registration (owner or FedAdmin)."""
    await registry_service.delete(
        store=runtime.store, fhs_id=runtime.settings.fhs_id, fid=fid, sid=sid, principal=me
    )
    return Response(status_code=204)


@router.api_route("/federations/{fid}/services/{sid}/invoke/{path:path}", methods=INVOKE_METHODS)
async def invoke_service(
    fid: FedId, sid: ServiceId, path: str, request: Request, runtime: RuntimeDep, me: CurrentMember
) -> Response:
    """Invoke a service through the FHS: access policy checked, call proxied with an invocation token."""
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    result = await invocation_service.invoke(
        runtime=runtime,
        fid=fid,
        sid=sid,
        principal=me,
        method=request.method,
        sub_path=path,
        query=request.url.query,
        headers=request.headers.items(),
        body=request.stream(),
        request_id=request_id[:64],
    )
    return Response(content=result.body, status_code=result.status_code, headers=dict(result.headers))


@router.get("/federations/{fid}/audit")
async def read_audit(
    fid: FedId,
    store: StoreDep,
    me: CurrentMember,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditEntryRead]:
    """The federation's audit log (FedAdmin)."""
    entries = await federations_service.read_audit(
        store=store, fid=fid, principal=me, after=after, limit=limit
    )
    return [AuditEntryRead.model_validate(e) for e in entries]
