"""FHS-FHS API (`/fhs/v1`): thin FastAPI adapter over fhs.peering.server (every route but `/keys` needs a
request assertion signed by a peer FHS)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import ValidationError

from fhs.dependencies import RuntimeDep
from fhs.errors import FHSError, InvalidInput
from fhs.invocation import service as invocation_service
from fhs.monitoring import service as monitoring_service
from fhs.observability import REQUEST_ID
from fhs.peering import server
from fhs.peering.client import ASSERTION_HEADER
from fhs.peering.schemas import CommandForward, EventBatch
from fhs.runtime import Runtime
from fhs.web import proxied_response

router = APIRouter(tags=["fhs-fhs"])
FedId = Annotated[str, Path(max_length=100)]
ServiceId = Annotated[str, Path(max_length=300)]
MAX_PEER_BODY = 32 * 1024 * 1024


async def _peer(
    runtime: Runtime, request: Request, action: str, fid: str | None
) -> tuple[str, dict[str, Any], bytes]:
    body = await request.body()
    if len(body) > MAX_PEER_BODY:
        raise InvalidInput("request body too large")
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    try:
        peer, claims = await server.authenticate_peer(
            runtime,
            assertion=request.headers.get(ASSERTION_HEADER),
            method=request.method,
            path=path,
            body=body,
        )
    except FHSError as exc:
        await server.record_refusal(
            runtime,
            fid=fid,
            peer=server.claimed_sender(request.headers.get(ASSERTION_HEADER)),
            action=action,
            reason=exc.message,
        )
        raise
    await runtime.rate_limits.spend("peer", peer)
    return peer, claims, body


async def _audited(runtime: Runtime, peer: str, fid: str, action: str, call: Any) -> Any:
    try:
        return await call
    except FHSError as exc:
        await server.record_refusal(runtime, fid=fid, peer=peer, action=action, reason=exc.message)
        raise


@router.get("/keys")
async def keys(runtime: RuntimeDep) -> dict[str, list[str]]:
    """This FHS's JWKS, signed with each of its published keys."""
    return server.signed_keys(runtime)


@router.post("/federations/{fid}/events")
async def push_events(fid: FedId, request: Request, runtime: RuntimeDep) -> dict[str, int]:
    """Accept signed events from the federation's home."""
    peer, _, body = await _peer(runtime, request, "events.push", fid)
    try:
        batch = EventBatch.model_validate_json(body)
    except ValidationError:
        raise InvalidInput('expected {"events": [signed event, ...]}') from None
    seq = await _audited(
        runtime,
        peer,
        fid,
        "events.push",
        server.receive_events(runtime, peer_id=peer, fid=fid, tokens=batch.events),
    )
    return {"seq": seq}


@router.get("/federations/{fid}/events")
async def pull_events(
    fid: FedId, request: Request, runtime: RuntimeDep, after: Annotated[int, Query(ge=0)] = 0
) -> dict[str, list[str]]:
    """Signed events of a federation homed here, for a participant."""
    peer, _, _ = await _peer(runtime, request, "events.pull", fid)
    events = await _audited(
        runtime, peer, fid, "events.pull", server.serve_events(runtime, peer_id=peer, fid=fid, after=after)
    )
    return {"events": events}


@router.post("/federations/{fid}/commands")
async def command(fid: FedId, request: Request, runtime: RuntimeDep) -> dict[str, int]:
    """Run a command a participant forwarded for one of its members (this FHS is the home)."""
    peer, _, body = await _peer(runtime, request, "command", fid)
    try:
        forwarded = CommandForward.model_validate_json(body)
    except ValidationError:
        raise InvalidInput('expected {"name", "args", "actor"}') from None
    seq = await server.handle_command(runtime, peer_id=peer, fid=fid, body=forwarded)
    return {"seq": seq}


@router.get("/federations/{fid}/monitoring")
async def monitoring(fid: FedId, request: Request, runtime: RuntimeDep) -> dict[str, Any]:
    """This FHS's counters for a federation, for a participant collating the federation-wide view."""
    peer, _, _ = await _peer(runtime, request, "monitoring", fid)
    await server.require_participant(runtime, peer_id=peer, fid=fid)
    return await monitoring_service.local_counters(store=runtime.store, me=runtime.settings.fhs_id, fid=fid)


async def invoke(fid: FedId, sid: ServiceId, path: str, request: Request, runtime: RuntimeDep) -> Response:
    """A member of a peer FHS invokes a service owned here: the owner's policy is decided here."""
    peer, claims, body = await _peer(runtime, request, "invoke", fid)
    principal = await _audited(
        runtime,
        peer,
        fid,
        "invoke",
        server.invocation_principal(runtime, peer_id=peer, fid=fid, claims=claims),
    )
    request_id = REQUEST_ID.get()
    result = await invocation_service.invoke_here(
        runtime=runtime,
        fid=fid,
        sid=sid,
        principal=principal,
        via=peer,
        method=request.method,
        sub_path=path,
        query=request.url.query,
        headers=request.headers.raw,
        body=body,
        request_id=request_id,
    )
    return proxied_response(result)


for _method in ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]:
    router.add_api_route(
        "/federations/{fid}/services/{sid}/invoke/{path:path}",
        invoke,
        methods=[_method],
        operation_id=f"peer_invoke_{_method.lower()}",
        summary=f"Forwarded invocation ({_method})",
    )
