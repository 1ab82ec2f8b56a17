"""Federation use cases for the Member API: create, read, and the admin commands (run via fhs.commands)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhs.audit import service as audit_service
from fhs.commands import commit_event, run_command
from fhs.errors import Forbidden, NotFound
from fhs.federations.commands import require_attribute, require_member
from fhs.federations.events import make_event, now_iso
from fhs.federations.schemas import AttributeCreate, FederationCreate, FederationRead, MemberGrant, MemberRead
from fhs.federations.state import FEDERATIONS, FederationState, load_state
from fhs.identity.schemas import Principal
from fhs.ids import member_id, new_federation_id
from fhs.operator import service as operator_service
from fhs.store.base import Store

if TYPE_CHECKING:
    from fhs.runtime import Runtime


def to_read(state: FederationState, principal: Principal) -> FederationRead:
    """The federation as ``principal`` sees it."""
    fed = state.federation
    return FederationRead(
        id=fed["id"],
        name=fed["name"],
        description=fed["description"],
        home_fhs=state.home,
        created_by=fed["created_by"],
        created_at=fed["created_at"],
        my_attributes=sorted(state.attributes_of(principal.key)),
        participants=state.participants,
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


async def member_state(*, store: Store, fid: str, principal: Principal, me: str) -> FederationState:
    """A snapshot of a federation the principal belongs to through this FHS (NotFound otherwise)."""
    state = await load_state(store=store, fid=fid)
    require_member(state, principal, me)
    return state


async def create(*, runtime: Runtime, principal: Principal, body: FederationCreate) -> FederationRead:
    """Create a federation homed here; the creator becomes its first member and FedAdmin (operator grant)."""
    store, me = runtime.store, runtime.settings.fhs_id
    if not await operator_service.is_fedadmin(store=store, key=principal.key):
        raise Forbidden("the operator of this FHS has not granted you the capability to create federations")
    fid = new_federation_id()
    creator = {"key": principal.key, "issuer": principal.issuer, "subject": principal.subject, "home_fhs": me}
    federation = {
        "id": fid,
        "name": body.name,
        "description": body.description,
        "home_fhs": me,
        "participants": [me],
        "created_by": principal.key,
        "created_at": now_iso(),
    }
    event = make_event(
        type="federation.created",
        fid=fid,
        seq=1,
        origin=me,
        actor=principal.key,
        data={"federation": federation, "creator": creator},
    )
    await commit_event(store=store, state=None, event=event)
    return to_read(await load_state(store=store, fid=fid), principal)


async def get(*, store: Store, me: str, fid: str, principal: Principal) -> FederationRead:
    """A federation the principal belongs to."""
    return to_read(await member_state(store=store, fid=fid, principal=principal, me=me), principal)


async def list_for_member(*, store: Store, me: str, principal: Principal) -> list[FederationRead]:
    """Every federation the principal is a member of through this FHS."""
    found = []
    for doc in await store.list(FEDERATIONS):
        try:
            found.append(await get(store=store, me=me, fid=doc.key, principal=principal))
        except NotFound:
            continue
    return found


async def list_members(*, store: Store, me: str, fid: str, principal: Principal) -> list[MemberRead]:
    """The members of a federation (any member may list them)."""
    state = await member_state(store=store, fid=fid, principal=principal, me=me)
    return [member_to_read(m) for _, m in sorted(state.members.items())]


async def list_attributes(*, store: Store, me: str, fid: str, principal: Principal) -> list[dict[str, Any]]:
    """Attribute definitions of a federation."""
    state = await member_state(store=store, fid=fid, principal=principal, me=me)
    return [state.attributes[name] for name in sorted(state.attributes)]


async def read_audit(
    *, store: Store, me: str, fid: str, principal: Principal, after: int = 0, limit: int = 100
) -> list[dict[str, Any]]:
    """This FHS's audit log of the federation (FedAdmin)."""
    state = await load_state(store=store, fid=fid)
    require_attribute(state, principal, "FedAdmin", me)
    return await audit_service.read(store=store, fid=fid, after=after, limit=limit)


async def _member(runtime: Runtime, fid: str, key: str) -> MemberRead:
    state = await load_state(store=runtime.store, fid=fid)
    if key not in state.members:
        raise NotFound("no such member in this federation")
    return member_to_read(state.members[key])


async def delete(*, runtime: Runtime, fid: str, principal: Principal) -> None:
    """Delete a federation with its members, attributes and services (FedAdmin)."""
    await run_command(runtime=runtime, fid=fid, principal=principal, name="federation.delete", args={})


async def grant_member(*, runtime: Runtime, fid: str, principal: Principal, body: MemberGrant) -> MemberRead:
    """Grant membership (and optionally attributes) to an identity (FedAdmin)."""
    await run_command(
        runtime=runtime, fid=fid, principal=principal, name="member.grant", args=body.model_dump()
    )
    return await _member(runtime, fid, f"{body.issuer}#{body.subject}")


async def revoke_member(*, runtime: Runtime, fid: str, principal: Principal, key: str) -> None:
    """Revoke a membership (FedAdmin)."""
    await run_command(runtime=runtime, fid=fid, principal=principal, name="member.revoke", args={"key": key})


async def define_attribute(
    *, runtime: Runtime, fid: str, principal: Principal, body: AttributeCreate
) -> None:
    """Define a new attribute (FedAdmin)."""
    await run_command(
        runtime=runtime, fid=fid, principal=principal, name="attribute.define", args=body.model_dump()
    )


async def delete_attribute(*, runtime: Runtime, fid: str, principal: Principal, name: str) -> None:
    """Delete an attribute definition and its grants (FedAdmin)."""
    await run_command(
        runtime=runtime, fid=fid, principal=principal, name="attribute.delete", args={"name": name}
    )


async def grant_attribute(
    *, runtime: Runtime, fid: str, principal: Principal, key: str, name: str
) -> MemberRead:
    """Grant an attribute to a member (FedAdmin)."""
    await run_command(
        runtime=runtime, fid=fid, principal=principal, name="attribute.grant", args={"key": key, "name": name}
    )
    return await _member(runtime, fid, key)


async def revoke_attribute(
    *, runtime: Runtime, fid: str, principal: Principal, key: str, name: str
) -> MemberRead:
    """Revoke an attribute from a member (FedAdmin)."""
    await run_command(
        runtime=runtime,
        fid=fid,
        principal=principal,
        name="attribute.revoke",
        args={"key": key, "name": name},
    )
    return await _member(runtime, fid, key)


async def remove_participant(*, runtime: Runtime, fid: str, principal: Principal, fhs_id: str) -> None:
    """Take a peer FHS out of the federation (FedAdmin); its members and their services leave with it, and
    it deletes its copy when the removal reaches it."""
    await run_command(
        runtime=runtime, fid=fid, principal=principal, name="participant.remove", args={"fhs_id": fhs_id}
    )


async def add_participant(*, runtime: Runtime, fid: str, principal: Principal, fhs_id: str) -> FederationRead:
    """Bring a peer FHS into the federation (FedAdmin); it receives the federation's events from then on."""
    await run_command(
        runtime=runtime, fid=fid, principal=principal, name="participant.add", args={"fhs_id": fhs_id}
    )
    return await get(store=runtime.store, me=runtime.settings.fhs_id, fid=fid, principal=principal)
