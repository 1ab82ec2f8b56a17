"""Register, update, delete, discover and authorise services (IEEE 2302 service registry; DESIGN §4).

Discovery filters with each service's discovery policy; invocation is decided with its access policy by the
FHS that owns the service. Every discover and invoke decision is audited.
"""

from __future__ import annotations

from typing import Any

from fhs.audit import service as audit_service
from fhs.errors import Forbidden, NotFound
from fhs.federations import service as federations_service
from fhs.federations.events import now_iso
from fhs.federations.state import FederationState, load_state
from fhs.identity.schemas import Principal
from fhs.ids import new_service_id
from fhs.policy.service import Decision, MemberFacts, ServiceFacts, decide, decide_many, validate_policy
from fhs.proxy.ssrf import validate_endpoint_url
from fhs.registry.schemas import PolicySpec, ServiceCreate, ServiceRead, ServiceUpdate
from fhs.store.base import Store
from policies.compiler import compile_policy


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


def to_read(service: dict[str, Any], principal: Principal) -> ServiceRead:
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
        endpoint=service["endpoint"] if is_owner else None,
        discovery_policy=service["discovery_policy"] if is_owner else None,
        access_policy=service["access_policy"] if is_owner else None,
    )


def _policy(spec: PolicySpec, action: str) -> str:
    text = compile_policy(spec, action=action)  # type: ignore[arg-type]
    validate_policy(text)
    return text


async def register(
    *, store: Store, fhs_id: str, allowlist: list[str], fid: str, principal: Principal, body: ServiceCreate
) -> ServiceRead:
    """Register a service (ServiceOwner); returns it with its encoded id."""
    endpoint = validate_endpoint_url(body.endpoint, allowlist=allowlist)
    discovery, access = _policy(body.discovery_policy, "discover"), _policy(body.access_policy, "invoke")
    sid, at = new_service_id(fhs_id), now_iso()
    service = {
        "id": sid,
        "name": body.name,
        "type": body.type,
        "endpoint": endpoint,
        "metadata": body.metadata,
        "fhs": fhs_id,
        "created_at": at,
        "updated_at": at,
        "owner": {"key": principal.key, "issuer": principal.issuer, "subject": principal.subject},
        "discovery_policy": discovery,
        "access_policy": access,
    }

    def plan(state: FederationState) -> federations_service.Plan:
        federations_service.require_attribute(state, principal, "ServiceOwner")
        return "service.registered", {"service": service}, sid

    await federations_service.mutate(store=store, fid=fid, fhs_id=fhs_id, actor=principal, decide=plan)
    return to_read(service, principal)


def _owned_service(state: FederationState, principal: Principal, sid: str) -> dict[str, Any]:
    federations_service.require_member(state, principal)
    service = state.services.get(sid)
    if service is None:
        raise NotFound("no such service")
    if service["owner"]["key"] != principal.key:
        if not state.has_attribute(principal.key, "FedAdmin"):
            raise Forbidden("only the service's owner (or a FedAdmin, for deletion) may change it")
    return service


async def update(
    *,
    store: Store,
    fhs_id: str,
    allowlist: list[str],
    fid: str,
    sid: str,
    principal: Principal,
    body: ServiceUpdate,
) -> ServiceRead:
    """Update a service's registration (its owner only)."""
    changes: dict[str, Any] = {}
    if body.name is not None:
        changes["name"] = body.name
    if body.endpoint is not None:
        changes["endpoint"] = validate_endpoint_url(body.endpoint, allowlist=allowlist)
    if body.metadata is not None:
        changes["metadata"] = body.metadata
    if body.discovery_policy is not None:
        changes["discovery_policy"] = _policy(body.discovery_policy, "discover")
    if body.access_policy is not None:
        changes["access_policy"] = _policy(body.access_policy, "invoke")
    updated: dict[str, Any] = {}

    def plan(state: FederationState) -> federations_service.Plan:
        service = _owned_service(state, principal, sid)
        if service["owner"]["key"] != principal.key:
            raise Forbidden("only the service's owner may change it")
        updated.update({**service, **changes, "updated_at": now_iso()})
        return "service.updated", {"service": updated}, sid

    await federations_service.mutate(store=store, fid=fid, fhs_id=fhs_id, actor=principal, decide=plan)
    return to_read(updated, principal)


async def delete(*, store: Store, fhs_id: str, fid: str, sid: str, principal: Principal) -> None:
    """Delete a service (its owner or a FedAdmin)."""

    def plan(state: FederationState) -> federations_service.Plan:
        _owned_service(state, principal, sid)
        return "service.deleted", {"id": sid}, sid

    await federations_service.mutate(store=store, fid=fid, fhs_id=fhs_id, actor=principal, decide=plan)


async def discover(
    *, store: Store, fid: str, principal: Principal, service_type: str | None = None
) -> list[ServiceRead]:
    """The services of a federation the principal may discover (its own always), audited."""
    state = await load_state(store=store, fid=fid)
    federations_service.require_member(state, principal)
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
    visible, entries = [], []
    for service, decision in zip(candidates, decisions, strict=True):
        allowed = decision.allowed or service["owner"]["key"] == principal.key
        entries.append(_decision_entry(principal, "discover", service["id"], decision, allowed))
        if allowed:
            visible.append(to_read(service, principal))
    await audit_service.record(store=store, fid=fid, entries=entries)
    return visible


def _decision_entry(
    principal: Principal, action: str, sid: str, decision: Decision, allowed: bool
) -> dict[str, Any]:
    return audit_service.entry(
        actor=principal.key,
        action=action,
        target=sid,
        decision="allow" if allowed else "deny",
        policy=",".join(decision.reasons) or None,
        details={"errors": list(decision.errors)} if decision.errors else None,
    )


async def get(*, store: Store, fid: str, sid: str, principal: Principal) -> ServiceRead:
    """One service, if the principal may discover it (else NotFound)."""
    for service in await discover(store=store, fid=fid, principal=principal):
        if service.id == sid:
            return service
    raise NotFound("no such service")


async def authorize_invoke(
    *, store: Store, fid: str, sid: str, principal: Principal
) -> tuple[dict[str, Any], MemberFacts]:
    """Decide an invocation with the service's access policy; audited. Returns the service and the member.

    A member that may neither invoke nor discover the service gets NotFound (no existence leak); one that
    may discover it but not invoke gets Forbidden.
    """
    state = await load_state(store=store, fid=fid)
    federations_service.require_member(state, principal)
    service = state.services.get(sid)
    if service is None:
        raise NotFound("no such service")
    member, facts = member_facts(state, principal.key), service_facts(service)
    decision = decide(
        action="invoke", member=member, service=facts, policy_text=service["access_policy"], federation_id=fid
    )
    await audit_service.record(
        store=store, fid=fid, entries=[_decision_entry(principal, "invoke", sid, decision, decision.allowed)]
    )
    if decision.allowed:
        return service, member
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
