"""Authorise an invocation, attach an FHS-signed invocation token and forward it through the proxy."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence

from fhs.identity.invocation import InvocationToken
from fhs.identity.schemas import Principal
from fhs.proxy.service import ProxiedResponse, forward
from fhs.registry import service as registry_service
from fhs.runtime import Runtime


async def invoke(
    *,
    runtime: Runtime,
    fid: str,
    sid: str,
    principal: Principal,
    method: str,
    sub_path: str,
    query: str,
    headers: Sequence[tuple[str, str]] | Mapping[str, str],
    body: AsyncIterator[bytes] | bytes,
    request_id: str,
) -> ProxiedResponse:
    """Invoke service ``sid`` of federation ``fid`` as ``principal`` (404/403 when not allowed)."""
    service, member = await registry_service.authorize_invoke(
        store=runtime.store, fid=fid, sid=sid, principal=principal
    )
    settings = runtime.settings
    token = InvocationToken(
        federation=fid, service_id=sid, member_issuer=member.issuer, member_subject=member.subject,
        attributes=tuple(sorted(member.attributes)),
    ).mint(keyring=runtime.keyring, issuer=settings.public_url, ttl_s=settings.invocation_token_ttl_s)
    return await forward(
        client=runtime.proxy_http,
        method=method,
        endpoint=service["endpoint"],
        sub_path=sub_path,
        query=query,
        headers=headers,
        body=body,
        extra_headers={"Authorization": f"Bearer {token}", "X-Request-Id": request_id},
        allowlist=settings.proxy_allowlist,
        timeout_s=settings.proxy_timeout_s,
        max_body_bytes=settings.proxy_max_body_bytes,
    )
