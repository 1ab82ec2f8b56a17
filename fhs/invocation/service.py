"""Invoke a service through the FHS (DESIGN §2, §4).

Local service: decide with its access policy here, attach an FHS-signed invocation token, proxy. Service of a
peer FHS: forward the call to that FHS with a signed assertion naming the federation, the member and the
request digest; the owning FHS verifies it, decides with its owner's policy itself, audits and forwards. The
endpoint URL never leaves the owning FHS.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode

from fhs.audit import service as audit_service
from fhs.errors import FHSError, NotFound
from fhs.federations.commands import require_member
from fhs.federations.state import load_excerpt
from fhs.identity.invocation import InvocationToken
from fhs.identity.schemas import Principal
from fhs.identity.validation import ACCESS_TOKEN_QUERY
from fhs.observability import PROXY_SECONDS
from fhs.proxy.service import Headers, ProxiedResponse, forward, header_pairs, read_body, strip_caller_headers
from fhs.registry import service as registry_service

if TYPE_CHECKING:
    from fhs.runtime import Runtime

NOT_FROM_PEER = {
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "set-cookie",
    "server",
    "date",
    "x-fhs-error",
}
"""Response headers of a peer FHS that are not passed on (the service's own headers are)."""


async def _audited(
    runtime: Runtime,
    fid: str,
    sid: str,
    principal: Principal,
    via: str,
    call: ProxiedResponse | FHSError,
    started: float,
) -> None:
    status = call.status_code
    PROXY_SECONDS.labels("local" if via == runtime.settings.fhs_id else "for-peer").observe(
        time.perf_counter() - started
    )
    await audit_service.record(
        store=runtime.store,
        fid=fid,
        entries=[
            audit_service.entry(
                actor=principal.key,
                action="invoke.completed",
                target=sid,
                decision="allow" if status < 400 else "deny",
                details={
                    "status": status,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                    "via": via,
                },
            )
        ],
    )


def without_credentials(query: str) -> str:
    """The query string without an ``access_token`` parameter (a member's JWT never travels upstream)."""
    pairs = parse_qsl(query, keep_blank_values=True)
    return (
        query
        if not any(k == ACCESS_TOKEN_QUERY for k, _ in pairs)
        else urlencode([(k, v) for k, v in pairs if k != ACCESS_TOKEN_QUERY])
    )


async def invoke_here(
    *,
    runtime: Runtime,
    fid: str,
    sid: str,
    principal: Principal,
    via: str,
    method: str,
    sub_path: str,
    query: str,
    headers: Headers,
    body: AsyncIterable[bytes] | bytes,
    request_id: str,
) -> ProxiedResponse:
    """Invoke a service owned through this FHS for a member of FHS ``via`` (this one or a peer)."""
    started = time.perf_counter()
    service, member, endpoint = await registry_service.authorize_invoke(
        store=runtime.store, fid=fid, sid=sid, principal=principal, via=via
    )
    settings = runtime.settings
    token = InvocationToken(
        federation=fid,
        service_id=sid,
        member_issuer=member.issuer,
        member_subject=member.subject,
        attributes=tuple(sorted(member.attributes)),
    ).mint(keyring=runtime.keyring, issuer=settings.public_url, ttl_s=settings.invocation_token_ttl_s)
    try:
        result = await forward(
            client=runtime.proxy_http,
            method=method,
            endpoint=endpoint,
            sub_path=sub_path,
            query=query,
            headers=headers,
            body=body,
            extra_headers={"Authorization": f"Bearer {token}", "X-Request-Id": request_id},
            allowlist=settings.proxy_allowlist,
            timeout_s=settings.proxy_timeout_s,
            max_body_bytes=settings.proxy_max_body_bytes,
        )
    except FHSError as exc:
        await _audited(runtime, fid, sid, principal, via, exc, started)
        raise
    await _audited(runtime, fid, sid, principal, via, result, started)
    return result


async def invoke(
    *,
    runtime: Runtime,
    fid: str,
    sid: str,
    principal: Principal,
    method: str,
    sub_path: str,
    query: str,
    headers: Headers,
    body: AsyncIterable[bytes] | bytes,
    request_id: str,
) -> ProxiedResponse:
    """Invoke service ``sid`` of federation ``fid`` as ``principal``, here or through the owning peer FHS."""
    me = runtime.settings.fhs_id
    query = without_credentials(query)
    state = await load_excerpt(store=runtime.store, fid=fid, member=principal.key, service=sid)
    require_member(state, principal, me)
    service = state.services.get(sid)
    if service is None:
        raise NotFound("no such service")
    if service["fhs"] == me:
        return await invoke_here(
            runtime=runtime,
            fid=fid,
            sid=sid,
            principal=principal,
            via=me,
            method=method,
            sub_path=sub_path,
            query=query,
            headers=headers,
            body=body,
            request_id=request_id,
        )
    content = await read_body(body, runtime.settings.proxy_max_body_bytes)
    kept = [*strip_caller_headers(header_pairs(headers)), ("X-Request-Id", request_id)]
    kept = [(n, v) for n, v in kept if n.lower() not in {"host", "content-length"}]
    response = await runtime.peers.forward_invoke(
        peer_id=service["fhs"],
        fid=fid,
        sid=sid,
        actor=principal,
        method=method,
        sub_path=sub_path,
        query=query,
        headers=kept,
        body=content,
    )
    out = [(n, v) for n, v in response.headers.multi_items() if n.lower() not in NOT_FROM_PEER]
    return ProxiedResponse(status_code=response.status_code, headers=out, body=response.content)
