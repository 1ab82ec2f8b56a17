"""Member API (`/member/v1`): federations, membership, attributes, participants, services, discovery,
invocation, audit and monitoring — thin adapters over the fhs domain."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import Field

from fhs.dependencies import CurrentMember, PlanningMember, RuntimeDep, current_member
from fhs.federations import service as federations_service
from fhs.federations.schemas import (
    MAX_SEQ,
    NAME_PATTERN,
    AttributeCreate,
    AttributeRead,
    AuditEntryRead,
    FedBase,
    FederationCreate,
    FederationRead,
    MemberGrant,
    MemberRead,
)
from fhs.ids import member_key_from_id
from fhs.invocation import service as invocation_service
from fhs.monitoring import service as monitoring_service
from fhs.observability import REQUEST_ID
from fhs.peering.schemas import FHS_ID_PATTERN
from fhs.proxy.service import read_body
from fhs.registry import service as registry_service
from fhs.registry.schemas import ServiceCreate, ServiceRead, ServiceUpdate
from fhs.web import proxied_response
from scission_service.federated import service as partition_service
from scission_service.federated.schemas import PartitionQueryCreate, PartitionQueryRead, PlanExecutionRead

router = APIRouter(tags=["member"], dependencies=[Depends(current_member)])
FedId = Annotated[str, Path(max_length=100)]
ServiceId = Annotated[str, Path(max_length=300)]
MemberId = Annotated[str, Path(max_length=2048)]
AttributeName = Annotated[str, Path(pattern=NAME_PATTERN)]
INVOKE_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class ParticipantCreate(FedBase):
    """A peer FHS to bring into the federation."""

    fhs_id: str = Field(pattern=FHS_ID_PATTERN)


@router.get("/federations")
async def list_federations(runtime: RuntimeDep, me: CurrentMember) -> list[FederationRead]:
    """Federations the caller belongs to."""
    return await federations_service.list_for_member(
        store=runtime.store, me=runtime.settings.fhs_id, principal=me
    )


@router.post("/federations", status_code=201)
async def create_federation(body: FederationCreate, runtime: RuntimeDep, me: CurrentMember) -> FederationRead:
    """Create a federation instance homed at this FHS (needs the operator's FedAdmin grant)."""
    return await federations_service.create(runtime=runtime, principal=me, body=body)


@router.get("/federations/{fid}")
async def get_federation(fid: FedId, runtime: RuntimeDep, me: CurrentMember) -> FederationRead:
    """One federation the caller belongs to."""
    return await federations_service.get(
        store=runtime.store, me=runtime.settings.fhs_id, fid=fid, principal=me
    )


@router.delete("/federations/{fid}", status_code=204)
async def delete_federation(fid: FedId, runtime: RuntimeDep, me: CurrentMember) -> Response:
    """Delete a federation (FedAdmin)."""
    await federations_service.delete(runtime=runtime, fid=fid, principal=me)
    return Response(status_code=204)


@router.post("/federations/{fid}/participants", status_code=201)
async def add_participant(
    fid: FedId, body: ParticipantCreate, runtime: RuntimeDep, me: CurrentMember
) -> FederationRead:
    """Bring a peer FHS into the federation (FedAdmin); its members can then be granted membership."""
    return await federations_service.add_participant(
        runtime=runtime, fid=fid, principal=me, fhs_id=body.fhs_id
    )


@router.delete("/federations/{fid}/participants/{fhs_id}", status_code=204)
async def remove_participant(
    fid: FedId, fhs_id: Annotated[str, Path(pattern=FHS_ID_PATTERN)], runtime: RuntimeDep, me: CurrentMember
) -> Response:
    """Take a peer FHS out of the federation (FedAdmin): its members and their services leave with it."""
    await federations_service.remove_participant(runtime=runtime, fid=fid, principal=me, fhs_id=fhs_id)
    return Response(status_code=204)


@router.get("/federations/{fid}/members")
async def list_members(fid: FedId, runtime: RuntimeDep, me: CurrentMember) -> list[MemberRead]:
    """Members of the federation."""
    return await federations_service.list_members(
        store=runtime.store, me=runtime.settings.fhs_id, fid=fid, principal=me
    )


@router.post("/federations/{fid}/members", status_code=201)
async def grant_member(fid: FedId, body: MemberGrant, runtime: RuntimeDep, me: CurrentMember) -> MemberRead:
    """Grant membership to an identity, of this or a participating domain (FedAdmin)."""
    return await federations_service.grant_member(runtime=runtime, fid=fid, principal=me, body=body)


@router.delete("/federations/{fid}/members/{member_id}", status_code=204)
async def revoke_member(fid: FedId, member_id: MemberId, runtime: RuntimeDep, me: CurrentMember) -> Response:
    """Revoke a membership (FedAdmin)."""
    await federations_service.revoke_member(
        runtime=runtime, fid=fid, principal=me, key=member_key_from_id(member_id)
    )
    return Response(status_code=204)


@router.get("/federations/{fid}/attributes")
async def list_attributes(fid: FedId, runtime: RuntimeDep, me: CurrentMember) -> list[AttributeRead]:
    """Attribute definitions."""
    found = await federations_service.list_attributes(
        store=runtime.store, me=runtime.settings.fhs_id, fid=fid, principal=me
    )
    return [AttributeRead.model_validate(a) for a in found]


@router.post("/federations/{fid}/attributes", status_code=201)
async def define_attribute(
    fid: FedId, body: AttributeCreate, runtime: RuntimeDep, me: CurrentMember
) -> AttributeRead:
    """Define an attribute (FedAdmin)."""
    await federations_service.define_attribute(runtime=runtime, fid=fid, principal=me, body=body)
    return AttributeRead(name=body.name, description=body.description, predefined=False)


@router.delete("/federations/{fid}/attributes/{name}", status_code=204)
async def delete_attribute(
    fid: FedId, name: AttributeName, runtime: RuntimeDep, me: CurrentMember
) -> Response:
    """Delete an attribute and its grants (FedAdmin)."""
    await federations_service.delete_attribute(runtime=runtime, fid=fid, principal=me, name=name)
    return Response(status_code=204)


@router.put("/federations/{fid}/members/{member_id}/attributes/{name}")
async def grant_attribute(
    fid: FedId, member_id: MemberId, name: AttributeName, runtime: RuntimeDep, me: CurrentMember
) -> MemberRead:
    """Grant an attribute to a member (FedAdmin)."""
    return await federations_service.grant_attribute(
        runtime=runtime, fid=fid, principal=me, key=member_key_from_id(member_id), name=name
    )


@router.delete("/federations/{fid}/members/{member_id}/attributes/{name}")
async def revoke_attribute(
    fid: FedId, member_id: MemberId, name: AttributeName, runtime: RuntimeDep, me: CurrentMember
) -> MemberRead:
    """Revoke an attribute from a member (FedAdmin)."""
    return await federations_service.revoke_attribute(
        runtime=runtime, fid=fid, principal=me, key=member_key_from_id(member_id), name=name
    )


@router.post("/federations/{fid}/services", status_code=201)
async def register_service(
    fid: FedId, body: ServiceCreate, runtime: RuntimeDep, me: CurrentMember
) -> ServiceRead:
    """Register a service (ServiceOwner); the response carries its encoded id."""
    return await registry_service.register(runtime=runtime, fid=fid, principal=me, body=body)


@router.get("/federations/{fid}/services")
async def discover_services(
    fid: FedId,
    runtime: RuntimeDep,
    me: CurrentMember,
    type: Annotated[str | None, Query(max_length=64)] = None,
) -> list[ServiceRead]:
    """Services the caller may discover, in every participating domain (filtered by discovery policies)."""
    return await registry_service.discover(
        store=runtime.store, me=runtime.settings.fhs_id, fid=fid, principal=me, service_type=type
    )


@router.get("/federations/{fid}/services/{sid}")
async def get_service(fid: FedId, sid: ServiceId, runtime: RuntimeDep, me: CurrentMember) -> ServiceRead:
    """One service the caller may discover."""
    return await registry_service.get(
        store=runtime.store, me=runtime.settings.fhs_id, fid=fid, sid=sid, principal=me
    )


@router.patch("/federations/{fid}/services/{sid}")
async def update_service(
    fid: FedId, sid: ServiceId, body: ServiceUpdate, runtime: RuntimeDep, me: CurrentMember
) -> ServiceRead:
    """Change a registration (owner)."""
    return await registry_service.update(runtime=runtime, fid=fid, sid=sid, principal=me, body=body)


@router.delete("/federations/{fid}/services/{sid}", status_code=204)
async def delete_service(fid: FedId, sid: ServiceId, runtime: RuntimeDep, me: CurrentMember) -> Response:
    """Remove a registration (owner or FedAdmin)."""
    await registry_service.delete(runtime=runtime, fid=fid, sid=sid, principal=me)
    return Response(status_code=204)


async def invoke_service(
    fid: FedId, sid: ServiceId, path: str, request: Request, runtime: RuntimeDep, me: CurrentMember
) -> Response:
    """Invoke a service through the FHS: access policy checked by the owning FHS, call proxied."""
    request_id = REQUEST_ID.get()
    result = await invocation_service.invoke(
        runtime=runtime,
        fid=fid,
        sid=sid,
        principal=me,
        method=request.method,
        sub_path=path,
        query=request.url.query,
        headers=request.headers.raw,
        body=request.stream(),
        request_id=request_id,
    )
    return proxied_response(result)


@router.get("/federations/{fid}/audit")
async def read_audit(
    fid: FedId,
    runtime: RuntimeDep,
    me: CurrentMember,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditEntryRead]:
    """This FHS's audit log of the federation (FedAdmin)."""
    entries = await federations_service.read_audit(
        store=runtime.store, me=runtime.settings.fhs_id, fid=fid, principal=me, after=after, limit=limit
    )
    return [AuditEntryRead.model_validate(e) for e in entries]


@router.get("/federations/{fid}/monitoring")
async def monitoring(fid: FedId, runtime: RuntimeDep, me: CurrentMember) -> dict[str, Any]:
    """Invocation, denial and latency counters from every participating FHS (FedAdmin)."""
    return await monitoring_service.federation_view(runtime=runtime, fid=fid, principal=me)


@router.post("/federations/{fid}/partition-queries", status_code=201)
async def create_partition_query(
    fid: FedId, body: PartitionQueryCreate, runtime: RuntimeDep, me: PlanningMember
) -> PartitionQueryRead:
    """Rank where each part of a model should run, over the resources the caller may discover and invoke."""
    return await partition_service.create_query(runtime=runtime, fid=fid, principal=me, body=body)


@router.get("/federations/{fid}/partition-queries/{qid}")
async def get_partition_query(
    fid: FedId, qid: Annotated[str, Path(max_length=64)], runtime: RuntimeDep, me: CurrentMember
) -> PartitionQueryRead:
    """A partition query the caller made."""
    return await partition_service.get_query(runtime=runtime, fid=fid, principal=me, qid=qid)


@router.post("/federations/{fid}/partition-queries/{qid}/plans/{rank}/execute")
async def execute_plan(
    fid: FedId,
    qid: Annotated[str, Path(max_length=64)],
    rank: Annotated[int, Path(ge=1, le=1000)],
    request: Request,
    runtime: RuntimeDep,
    me: PlanningMember,
) -> PlanExecutionRead:
    """Run a plan hop by hop on an input tensor (body: one `.npy` array); reports predicted vs measured."""
    tensor = await read_body(request.stream(), partition_service.MAX_TENSOR_BYTES + 4096)
    return await partition_service.execute_plan(
        runtime=runtime, fid=fid, principal=me, qid=qid, rank=rank, tensor=tensor
    )


for _method in INVOKE_METHODS:
    router.add_api_route(
        "/federations/{fid}/services/{sid}/invoke/{path:path}",
        invoke_service,
        methods=[_method],
        operation_id=f"invoke_service_{_method.lower()}",
        summary=f"Invoke a service ({_method})",
    )
