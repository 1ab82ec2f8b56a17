"""Register, update, delete, discover and authorise services (IEEE 2302 service registry; DESIGN §4).

Discovery filters with each service's discovery policy at the member's FHS (on replicated state); invocation
is decided with the access policy by the FHS that owns the service. Endpoint URLs live only at the owning
FHS (collection ``endpoints:{fid}``). Every discover and invoke decision is audited.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhs.audit import service as audit_service
from fhs.commands import run_command
from fhs.errors import FHSError, Forbidden, NotFound
from fhs.federations.commands import require_member
from fhs.federations.events import now_iso
from fhs.federations.state import FederationState, load_excerpt, load_state
from fhs.identity.schemas import Principal
from fhs.ids import new_service_id
from fhs.observability import DECISIONS
from fhs.policy.service import Decision, MemberFacts, ServiceFacts, decide, decide_many, validate_policy
from fhs.proxy.ssrf import validate_endpoint_url
from fhs.registry.schemas import PolicySpec, ServiceCreate, ServiceRead, ServiceUpdate
from fhs.store.base import Delete, Put, Store
from policies.compiler import compile_policy

if TYPE_CHECKING:
    from fhs.runtime import Runtime


def endpoints_collection(fid: str) -> str:
    """Local (never replicated) collection of the endpoint URLs of services owned through this FHS."""
    return f"endpoints:{fid}"


def member_facts(state: FederationState, key: str) -> MemberFacts:
    """The policy view of member ``key`` (a non-member has no attributes)."""
    member = state.members.get(key, {})
    issuer, _, subject = key.partition("#")
    return MemberFacts(
        key=key,
        issuer=member.get("issuer", issuer),
        subject=member.get("subject", subject),
        home_fhs=member.get("home_fhs", ""),
        attributes=state.attributes_of(key),
    )


def service_facts(service: dict[str, Any]) -> ServiceFacts:
    """The policy view of a stored service."""
    return ServiceFacts(
        id=service["id"],
        owner_key=service["owner"]["key"],
        type=service["type"],
        tier=str(service["metadata"].get("tier", "")),
        fhs=service["fhs"],
        name=service["name"],
    )


def to_read(service: dict[str, Any], principal: Principal, endpoint: str | None) -> ServiceRead:
    """The service as ``principal`` may see it (endpoint and policies for the owner only)."""
    is_owner = service["owner"]["key"] == principal.key
    return ServiceRead(
        id=service["id"],
        name=service["name"],
        type=service["type"],
        metadata=service["metadata"],
        fhs=service["fhs"],
        owner=service["owner"]["subject"],
        created_at=service["created_at"],
        updated_at=service["updated_at"],
        endpoint=endpoint if is_owner else None,
        discovery_policy=service["discovery_policy"] if is_owner else None,
        access_policy=service["access_policy"] if is_owner else None,
    )


async def endpoint_of(*, store: Store, fid: str, sid: str) -> str | None:
    """The endpoint URL of a service owned through this FHS (None for services of other FHSs)."""
    doc = await store.get(endpoints_collection(fid), sid)
    return str(doc.value["url"]) if doc else None


def _policy(spec: PolicySpec, action: str) -> str:
    text = compile_policy(spec, action=action)  # type: ignore[arg-type]
    validate_policy(text)
    return text


async def register(*, runtime: Runtime, fid: str, principal: Principal, body: ServiceCreate) -> ServiceRead:
    """Register a service (ServiceOwner); returns it with its encoded id."""
    me = runtime.settings.fhs_id
    endpoint = validate_endpoint_url(body.endpoint, allowlist=runtime.settings.proxy_allowlist)
    discovery, access = _policy(body.discovery_policy, "discover"), _policy(body.access_policy, "invoke")
    sid, at = new_service_id(me), now_iso()
    service = {
        "id": sid,
        "name": body.name,
        "type": body.type,
        "metadata": body.metadata,
        "fhs": me,
        "created_at": at,
        "updated_at": at,
        "owner": {"key": principal.key, "issuer": principal.issuer, "subject": principal.subject},
        "discovery_policy": discovery,
        "access_policy": access,
    }
    endpoint_put = Put(endpoints_collection(fid), sid, {"url": endpoint}, if_absent=True)
    try:
        await run_command(
            runtime=runtime,
            fid=fid,
            principal=principal,
            name="service.register",
            args=service,
            extra_ops=[endpoint_put],
        )
    except FHSError as exc:
        if exc.status_code < 500:  # refused (at the home, or here): nothing was registered, undo
            await runtime.store.write([Delete(endpoints_collection(fid), sid)])
        raise  # 502/504: the home may have committed it; keep the endpoint so the service works if it did
    return to_read(service, principal, endpoint)


async def update(
    *, runtime: Runtime, fid: str, sid: str, principal: Principal, body: ServiceUpdate
) -> ServiceRead:
    """Update a registration (its owner, through the FHS that holds the endpoint)."""
    store, me = runtime.store, runtime.settings.fhs_id
    state = await load_state(store=store, fid=fid)
    require_member(state, principal, me)
    service = state.services.get(sid)
    if service is None:
        raise NotFound("no such service")
    if service["owner"]["key"] != principal.key:
        raise Forbidden("only the service's owner may change it")
    changes: dict[str, Any] = {}
    if body.name is not None:
        changes["name"] = body.name
    if body.metadata is not None:
        changes["metadata"] = body.metadata
    if body.discovery_policy is not None:
        changes["discovery_policy"] = _policy(body.discovery_policy, "discover")
    if body.access_policy is not None:
        changes["access_policy"] = _policy(body.access_policy, "invoke")
    if body.endpoint is not None:
        endpoint = validate_endpoint_url(body.endpoint, allowlist=runtime.settings.proxy_allowlist)
        await store.write([Put(endpoints_collection(fid), sid, {"url": endpoint})])
    if changes:
        await run_command(
            runtime=runtime,
            fid=fid,
            principal=principal,
            name="service.update",
            args={"id": sid, "changes": changes, "updated_at": now_iso()},
        )
    state = await load_state(store=store, fid=fid)
    return to_read(state.services[sid], principal, await endpoint_of(store=store, fid=fid, sid=sid))


async def delete(*, runtime: Runtime, fid: str, sid: str, principal: Principal) -> None:
    """Delete a service (its owner or a FedAdmin)."""
    await run_command(runtime=runtime, fid=fid, principal=principal, name="service.delete", args={"id": sid})
    await runtime.store.write([Delete(endpoints_collection(fid), sid)])


def _decision_entry(
    principal: Principal, action: str, sid: str, decision: Decision, allowed: bool, via: str | None = None
) -> dict[str, Any]:
    DECISIONS.labels(action, "allow" if allowed else "deny").inc()
    details: dict[str, Any] = {"errors": list(decision.errors)} if decision.errors else {}
    if via:
        details["via"] = via
    return audit_service.entry(
        actor=principal.key,
        action=action,
        target=sid,
        decision="allow" if allowed else "deny",
        policy=",".join(decision.reasons) or None,
        details=details,
    )


async def discover(
    *, store: Store, me: str, fid: str, principal: Principal, service_type: str | None = None
) -> list[ServiceRead]:
    """The services of a federation the principal may discover (its own always), audited."""
    state = await load_state(store=store, fid=fid)
    require_member(state, principal, me)
    candidates = [
        s for _, s in sorted(state.services.items()) if service_type is None or s["type"] == service_type
    ]
    member = member_facts(state, principal.key)
    decisions = decide_many(
        action="discover",
        member=member,
        federation_id=fid,
        services=[(service_facts(s), s["discovery_policy"]) for s in candidates],
    )
    endpoints = {d.key: d.value["url"] for d in await store.list(endpoints_collection(fid))}
    visible, entries = [], []
    for service, decision in zip(candidates, decisions, strict=True):
        allowed = decision.allowed or service["owner"]["key"] == principal.key
        entries.append(_decision_entry(principal, "discover", service["id"], decision, allowed))
        if allowed:
            visible.append(to_read(service, principal, endpoints.get(service["id"])))
    await audit_service.record(store=store, fid=fid, entries=entries)
    return visible


async def get(*, store: Store, me: str, fid: str, sid: str, principal: Principal) -> ServiceRead:
    """One service, if the principal may discover it (else NotFound)."""
    for service in await discover(store=store, me=me, fid=fid, principal=principal):
        if service.id == sid:
            return service
    raise NotFound("no such service")


async def authorize_invoke(
    *, store: Store, fid: str, sid: str, principal: Principal, via: str
) -> tuple[dict[str, Any], MemberFacts, str]:
    """Decide an invocation at the owning FHS with the service's access policy; audited.

    ``via`` is the FHS the member authenticated to (this FHS, or a peer that forwarded the call). Returns
    the service, the member and the endpoint URL. A member that may neither invoke nor discover the
    service gets NotFound (no existence leak); one that may discover it but not invoke gets Forbidden.
    """
    state = await load_excerpt(store=store, fid=fid, member=principal.key, service=sid)
    require_member(state, principal, via)
    service = state.services.get(sid)
    endpoint = await endpoint_of(store=store, fid=fid, sid=sid)
    if service is None or endpoint is None:
        raise NotFound("no such service")
    member, facts = member_facts(state, principal.key), service_facts(service)
    decision = decide(
        action="invoke", member=member, service=facts, policy_text=service["access_policy"], federation_id=fid
    )
    await audit_service.record(
        store=store,
        fid=fid,
        entries=[_decision_entry(principal, "invoke", sid, decision, decision.allowed, via=via)],
    )
    if decision.allowed:
        return service, member, endpoint
    discoverable = (
        service["owner"]["key"] == principal.key
        or decide(
            action="discover",
            member=member,
            service=facts,
            policy_text=service["discovery_policy"],
            federation_id=fid,
        ).allowed
    )
    if not discoverable:
        raise NotFound("no such service")
    raise Forbidden("the service's access policy does not allow you to invoke it")
