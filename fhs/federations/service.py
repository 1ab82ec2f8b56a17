"""Federation commands (create, delete, membership, attributes) and queries, as events.

Every command loads a snapshot, checks the caller's rights on it, builds one event and commits it in one
atomic batch guarded by the federation document's version; a concurrent write makes the batch fail and the
command is retried on a fresh snapshot, so no update is lost and nothing is half-applied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhs.audit import service as audit_service
from fhs.errors import Conflict, Forbidden, InvalidInput, NotFound
from fhs.federations.events import apply_event, make_event, now_iso
from fhs.federations.schemas import (
    AttributeCreate,
    FederationCreate,
    FederationRead,
    MemberGrant,
    MemberRead,
)
from fhs.federations.state import (
    FEDERATIONS,
    PREDEFINED_ATTRIBUTES,
    FederationState,
    events_log,
    load_state,
)
from fhs.identity.schemas import Principal
from fhs.ids import member_id, member_key, new_federation_id
from fhs.operator import service as operator_service
from fhs.store.base import Append, Expect, Op, Put, Store

MAX_RETRIES = 8
Plan = tuple[str, dict[str, Any], str]
"""What a command decided: (event type, event data, audit target)."""


async def _commit(*, store: Store, state: FederationState, event: dict[str, Any], target: str) -> None:
    fid = state.id
    ops: list[Op] = [Expect(FEDERATIONS, fid, state.version)]
    if event["type"] != "federation.deleted":
        ops.append(Put(FEDERATIONS, fid, {**state.federation, "seq": event["seq"]}, if_version=state.version))
    ops += apply_event(state, event)
    ops.append(Append(events_log(fid), event))
    ops.append(
        audit_service.federation_append(
            fid, audit_service.entry(actor=event["actor"], action=event["type"], target=target)
        )
    )
    await store.write(ops)


async def mutate(
    *, store: Store, fid: str, fhs_id: str, actor: Principal, decide: Callable[[FederationState], Plan]
) -> FederationState:
    """Run ``decide`` on a fresh snapshot and commit its event; retry on concurrent writes."""
    for _ in range(MAX_RETRIES):
        state = await load_state(store=store, fid=fid)
        event_type, data, target = decide(state)
        event = make_event(
            type=event_type,
            fid=fid,
            seq=int(state.federation.get("seq", 0)) + 1,
            origin=fhs_id,
            actor=actor.key,
            data=data,
        )
        try:
            await _commit(store=store, state=state, event=event, target=target)
        except Conflict:
            continue
        return state
    raise Conflict("the federation is being changed concurrently; try again")


def require_member(state: FederationState, principal: Principal) -> None:
    """Non-members must not learn that the federation exists: NotFound."""
    if not state.is_member(principal.key):
        raise NotFound(f"no federation {state.id!r}")


def require_attribute(state: FederationState, principal: Principal, attribute: str) -> None:
    """Members without ``attribute`` get Forbidden (non-members NotFound)."""
    require_member(state, principal)
    if not state.has_attribute(principal.key, attribute):
        raise Forbidden(f"this action needs the {attribute} attribute in federation {state.id!r}")


def to_read(state: FederationState, principal: Principal) -> FederationRead:
    """The federation as ``principal`` sees it."""
    fed = state.federation
    return FederationRead(
        id=fed["id"],
        name=fed["name"],
        description=fed["description"],
        home_fhs=fed["home_fhs"],
        created_by=fed["created_by"],
        created_at=fed["created_at"],
        my_attributes=sorted(state.attributes_of(principal.key)),
        participants=list(fed.get("participants", [fed["home_fhs"]])),
    )


def member_to_read(member: dict[str, Any]) -> MemberRead:
    """A stored member as returned by the API."""
    return MemberRead(
        id=member_id(member["key"]),
        issuer=member["issuer"],
        subject=member["subject"],
        home_fhs=member["home_fhs"],
        attributes=member["attributes"],
        granted_by=member["granted_by"],
        granted_at=member["granted_at"],
    )


async def create(
    *, store: Store, fhs_id: str, principal: Principal, body: FederationCreate
) -> FederationRead:
    """Create a federation; the creator becomes its first member and FedAdmin (needs an operator grant)."""
    if not await operator_service.is_fedadmin(store=store, key=principal.key):
        raise Forbidden("the operator of this FHS has not granted you the capability to create federations")
    fid = new_federation_id()
    creator = {
        "key": principal.key,
        "issuer": principal.issuer,
        "subject": principal.subject,
        "home_fhs": fhs_id,
    }
    doc = {
        "id": fid,
        "name": body.name,
        "description": body.description,
        "home_fhs": fhs_id,
        "participants": [fhs_id],
        "created_by": principal.key,
        "created_at": now_iso(),
        "seq": 1,
    }
    event = make_event(
        type="federation.created",
        fid=fid,
        seq=1,
        origin=fhs_id,
        actor=principal.key,
        data={"federation": {k: v for k, v in doc.items() if k != "seq"}, "creator": creator},
    )
    ops: list[Op] = [
        Put(FEDERATIONS, fid, doc, if_absent=True),
        *apply_event(None, event),
        Append(events_log(fid), event),
        audit_service.federation_append(
            fid, audit_service.entry(actor=principal.key, action="federation.created", target=fid)
        ),
    ]
    await store.write(ops)
    return to_read(await load_state(store=store, fid=fid), principal)


async def get(*, store: Store, fid: str, principal: Principal) -> FederationRead:
    """A federation the principal belongs to."""
    state = await load_state(store=store, fid=fid)
    require_member(state, principal)
    return to_read(state, principal)


async def list_for_member(*, store: Store, principal: Principal) -> list[FederationRead]:
    """Every federation the principal is a member of."""
    found = []
    for doc in await store.list(FEDERATIONS):
        try:
            state = await load_state(store=store, fid=doc.key)
        except NotFound:
            continue
        if state.is_member(principal.key):
            found.append(to_read(state, principal))
    return found


async def delete(*, store: Store, fhs_id: str, fid: str, principal: Principal) -> None:
    """Delete a federation with its members, attributes and services (FedAdmin)."""

    def decide(state: FederationState) -> Plan:
        require_attribute(state, principal, "FedAdmin")
        return "federation.deleted", {}, fid

    await mutate(store=store, fid=fid, fhs_id=fhs_id, actor=principal, decide=decide)


async def list_members(*, store: Store, fid: str, principal: Principal) -> list[MemberRead]:
    """The members of a federation (any member may list them)."""
    state = await load_state(store=store, fid=fid)
    require_member(state, principal)
    return [member_to_read(m) for _, m in sorted(state.members.items())]


def _check_attributes_defined(state: FederationState, names: list[str]) -> None:
    unknown = sorted(set(names) - set(state.attributes))
    if unknown:
        raise InvalidInput(
            f"attributes not defined in this federation: {', '.join(unknown)}; define them first"
        )


async def grant_member(
    *, store: Store, fhs_id: str, fid: str, principal: Principal, body: MemberGrant
) -> MemberRead:
    """Grant membership (and optionally attributes) to an identity (FedAdmin)."""
    key = member_key(body.issuer, body.subject)

    def decide(state: FederationState) -> Plan:
        require_attribute(state, principal, "FedAdmin")
        if state.is_member(key):
            raise Conflict("already a member; grant attributes instead")
        _check_attributes_defined(state, body.attributes)
        home = body.home_fhs or fhs_id
        if home not in state.federation.get("participants", [fhs_id]):
            raise InvalidInput(f"FHS {home!r} does not participate in this federation")
        member = {
            "key": key,
            "issuer": body.issuer,
            "subject": body.subject,
            "home_fhs": home,
            "attributes": sorted(set(body.attributes)),
        }
        return "member.granted", {"member": member}, member_id(key)

    await mutate(store=store, fid=fid, fhs_id=fhs_id, actor=principal, decide=decide)
    state = await load_state(store=store, fid=fid)
    return member_to_read(state.members[key])


def _fedadmins_after(state: FederationState, *, without: str) -> int:
    return sum(1 for k, m in state.members.items() if k != without and "FedAdmin" in m["attributes"])


async def revoke_member(*, store: Store, fhs_id: str, fid: str, principal: Principal, key: str) -> None:
    """Revoke a membership; services the member owns are removed with it (FedAdmin)."""

    def decide(state: FederationState) -> Plan:
        require_attribute(state, principal, "FedAdmin")
        if not state.is_member(key):
            raise NotFound("no such member in this federation")
        if state.has_attribute(key, "FedAdmin") and _fedadmins_after(state, without=key) == 0:
            raise Conflict("cannot remove the last FedAdmin; grant FedAdmin to another member first")
        return "member.revoked", {"key": key}, member_id(key)

    await mutate(store=store, fid=fid, fhs_id=fhs_id, actor=principal, decide=decide)


async def define_attribute(
    *, store: Store, fhs_id: str, fid: str, principal: Principal, body: AttributeCreate
) -> None:
    """Define a new attribute (FedAdmin)."""

    def decide(state: FederationState) -> Plan:
        require_attribute(state, principal, "FedAdmin")
        if body.name in state.attributes:
            raise Conflict(f"attribute {body.name!r} already exists")
        return "attribute.defined", body.model_dump(), body.name

    await mutate(store=store, fid=fid, fhs_id=fhs_id, actor=principal, decide=decide)


async def delete_attribute(*, store: Store, fhs_id: str, fid: str, principal: Principal, name: str) -> None:
    """Delete an attribute definition and every grant of it (FedAdmin; predefined ones stay)."""

    def decide(state: FederationState) -> Plan:
        require_attribute(state, principal, "FedAdmin")
        if name not in state.attributes:
            raise NotFound(f"no attribute {name[:64]!r}")
        if name in PREDEFINED_ATTRIBUTES:
            raise Conflict(f"{name} is predefined and cannot be deleted")
        return "attribute.deleted", {"name": name}, name

    await mutate(store=store, fid=fid, fhs_id=fhs_id, actor=principal, decide=decide)


async def grant_attribute(
    *, store: Store, fhs_id: str, fid: str, principal: Principal, key: str, name: str
) -> MemberRead:
    """Grant an attribute to a member (FedAdmin); granting one already held changes nothing."""

    def decide(state: FederationState) -> Plan:
        require_attribute(state, principal, "FedAdmin")
        if not state.is_member(key):
            raise NotFound("no such member in this federation")
        _check_attributes_defined(state, [name])
        return "attribute.granted", {"key": key, "name": name}, f"{member_id(key)}/{name}"

    await mutate(store=store, fid=fid, fhs_id=fhs_id, actor=principal, decide=decide)
    return member_to_read((await load_state(store=store, fid=fid)).members[key])


async def revoke_attribute(
    *, store: Store, fhs_id: str, fid: str, principal: Principal, key: str, name: str
) -> MemberRead:
    """Revoke an attribute from a member (FedAdmin). ``Member`` itself is revoked with the membership."""

    def decide(state: FederationState) -> Plan:
        require_attribute(state, principal, "FedAdmin")
        if not state.is_member(key):
            raise NotFound("no such member in this federation")
        if name == "Member":
            raise Conflict("Member is held by every member; revoke the membership instead")
        if name not in state.attributes_of(key):
            raise NotFound(f"the member does not hold {name[:64]!r}")
        if name == "FedAdmin" and _fedadmins_after(state, without=key) == 0:
            raise Conflict("cannot revoke the last FedAdmin; grant FedAdmin to another member first")
        return "attribute.revoked", {"key": key, "name": name}, f"{member_id(key)}/{name}"

    await mutate(store=store, fid=fid, fhs_id=fhs_id, actor=principal, decide=decide)
    return member_to_read((await load_state(store=store, fid=fid)).members[key])


async def list_attributes(*, store: Store, fid: str, principal: Principal) -> list[dict[str, Any]]:
    """Attribute definitions of a federation (members)."""
    state = await load_state(store=store, fid=fid)
    require_member(state, principal)
    return [state.attributes[name] for name in sorted(state.attributes)]


async def read_audit(
    *, store: Store, fid: str, principal: Principal, after: int = 0, limit: int = 100
) -> list[dict[str, Any]]:
    """The federation's audit log (FedAdmin)."""
    state = await load_state(store=store, fid=fid)
    require_attribute(state, principal, "FedAdmin")
    return await audit_service.read(store=store, fid=fid, after=after, limit=limit)
