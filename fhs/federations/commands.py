"""Federation commands as pure decisions: (snapshot, actor, arguments, via FHS) -> event to commit.

A command is named and its arguments are JSON, so the federation's home FHS can run a command that a member
issued at another participating FHS (DESIGN §3: the home sequences every event). ``via`` is the FHS the actor
authenticated to; an FHS may only act for members whose home it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError

from fhs.errors import Conflict, Forbidden, InvalidInput, NotFound
from fhs.federations.schemas import NAME_PATTERN, AttributeCreate, FedBase, MemberGrant
from fhs.federations.state import PREDEFINED_ATTRIBUTES, FederationState
from fhs.identity.schemas import Principal
from fhs.ids import member_id, member_key

Plan = tuple[str, dict[str, Any], str]
"""What a command decided: (event type, event data, audit target)."""
Decide = Callable[[FederationState, Principal, dict[str, Any], str], Plan]


def require_member(state: FederationState, principal: Principal, via: str) -> None:
    """Members act only through their home FHS; everyone else must not learn the federation exists."""
    member = state.members.get(principal.key)
    if member is None or member["home_fhs"] != via:
        raise NotFound(f"no federation {state.id!r}")


def require_attribute(state: FederationState, principal: Principal, attribute: str, via: str) -> None:
    """Members without ``attribute`` get Forbidden (non-members NotFound)."""
    require_member(state, principal, via)
    if not state.has_attribute(principal.key, attribute):
        raise Forbidden(f"this action needs the {attribute} attribute in federation {state.id!r}")


T = TypeVar("T", bound=BaseModel)


def parse_args(model: type[T], args: dict[str, Any]) -> T:
    """Validate command arguments (they may come from a peer FHS)."""
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        raise InvalidInput(f"invalid command arguments: {exc.errors()[0]['msg']}") from None


class MemberRef(FedBase):
    """Arguments naming a member (and optionally an attribute)."""

    key: str = Field(min_length=3, max_length=1100)
    name: str | None = Field(None, pattern=NAME_PATTERN)


class ParticipantRef(FedBase):
    """A peer FHS to bring into, or take out of, the federation."""

    fhs_id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")


def _fedadmins_after(state: FederationState, *, without: str) -> int:
    return sum(1 for k, m in state.members.items() if k != without and "FedAdmin" in m["attributes"])


def _check_attributes_defined(state: FederationState, names: list[str]) -> None:
    unknown = sorted(set(names) - set(state.attributes))
    if unknown:
        raise InvalidInput(
            f"attributes not defined in this federation: {', '.join(unknown)}; define them first"
        )


def delete_federation(state: FederationState, actor: Principal, args: dict[str, Any], via: str) -> Plan:
    """Delete the federation with everything in it (FedAdmin)."""
    require_attribute(state, actor, "FedAdmin", via)
    return "federation.deleted", {}, state.id


def grant_member(state: FederationState, actor: Principal, args: dict[str, Any], via: str) -> Plan:
    """Grant membership to an identity of a participating domain (FedAdmin)."""
    body = parse_args(MemberGrant, args)
    require_attribute(state, actor, "FedAdmin", via)
    key = member_key(body.issuer, body.subject)
    if state.is_member(key):
        raise Conflict("already a member; grant attributes instead")
    _check_attributes_defined(state, body.attributes)
    home = body.home_fhs or via
    if home not in state.participants:
        raise InvalidInput(
            f"FHS {home!r} does not participate in this federation; add it as a participant first"
        )
    member = {
        "key": key,
        "issuer": body.issuer,
        "subject": body.subject,
        "home_fhs": home,
        "attributes": sorted(set(body.attributes)),
    }
    return "member.granted", {"member": member}, member_id(key)


def revoke_member(state: FederationState, actor: Principal, args: dict[str, Any], via: str) -> Plan:
    """Revoke a membership; services the member owns go with it (FedAdmin)."""
    key = parse_args(MemberRef, args).key
    require_attribute(state, actor, "FedAdmin", via)
    if not state.is_member(key):
        raise NotFound("no such member in this federation")
    if state.has_attribute(key, "FedAdmin") and _fedadmins_after(state, without=key) == 0:
        raise Conflict("cannot remove the last FedAdmin; grant FedAdmin to another member first")
    return "member.revoked", {"key": key}, member_id(key)


def define_attribute(state: FederationState, actor: Principal, args: dict[str, Any], via: str) -> Plan:
    """Define a new attribute (FedAdmin)."""
    body = parse_args(AttributeCreate, args)
    require_attribute(state, actor, "FedAdmin", via)
    if body.name in state.attributes:
        raise Conflict(f"attribute {body.name!r} already exists")
    return "attribute.defined", body.model_dump(), body.name


def delete_attribute(state: FederationState, actor: Principal, args: dict[str, Any], via: str) -> Plan:
    """Delete an attribute definition and every grant of it (FedAdmin; predefined ones stay)."""
    name = parse_args(AttributeCreate, {"name": args.get("name")}).name
    require_attribute(state, actor, "FedAdmin", via)
    if name not in state.attributes:
        raise NotFound(f"no attribute {name!r}")
    if name in PREDEFINED_ATTRIBUTES:
        raise Conflict(f"{name} is predefined and cannot be deleted")
    return "attribute.deleted", {"name": name}, name


def grant_attribute(state: FederationState, actor: Principal, args: dict[str, Any], via: str) -> Plan:
    """Grant an attribute to a member (FedAdmin)."""
    ref = parse_args(MemberRef, args)
    require_attribute(state, actor, "FedAdmin", via)
    if not state.is_member(ref.key):
        raise NotFound("no such member in this federation")
    _check_attributes_defined(state, [str(ref.name)])
    return "attribute.granted", {"key": ref.key, "name": ref.name}, f"{member_id(ref.key)}/{ref.name}"


def revoke_attribute(state: FederationState, actor: Principal, args: dict[str, Any], via: str) -> Plan:
    """Revoke an attribute from a member (FedAdmin); ``Member`` goes only with the membership."""
    ref = parse_args(MemberRef, args)
    require_attribute(state, actor, "FedAdmin", via)
    if not state.is_member(ref.key):
        raise NotFound("no such member in this federation")
    if ref.name == "Member":
        raise Conflict("Member is held by every member; revoke the membership instead")
    if ref.name not in state.attributes_of(ref.key):
        raise NotFound(f"the member does not hold {ref.name!r}")
    if ref.name == "FedAdmin" and _fedadmins_after(state, without=ref.key) == 0:
        raise Conflict("cannot revoke the last FedAdmin; grant FedAdmin to another member first")
    return "attribute.revoked", {"key": ref.key, "name": ref.name}, f"{member_id(ref.key)}/{ref.name}"


def add_participant(state: FederationState, actor: Principal, args: dict[str, Any], via: str) -> Plan:
    """Bring a peer FHS into the federation (FedAdmin; the home must be peered with it)."""
    body = parse_args(ParticipantRef, args)
    require_attribute(state, actor, "FedAdmin", via)
    if body.fhs_id in state.participants:
        raise Conflict(f"{body.fhs_id} already participates")
    if body.fhs_id in state.removed_participants:
        raise Conflict(
            f"{body.fhs_id} was removed from this federation and cannot rejoin it (its copy was deleted); "
            "create a new federation to work with it again"
        )
    return "participant.added", {"fhs_id": body.fhs_id}, body.fhs_id


def remove_participant(state: FederationState, actor: Principal, args: dict[str, Any], via: str) -> Plan:
    """Take a peer FHS out of the federation (FedAdmin): its members, and the services they own, leave too."""
    body = parse_args(ParticipantRef, args)
    require_attribute(state, actor, "FedAdmin", via)
    if body.fhs_id not in state.participants:
        raise NotFound(f"{body.fhs_id} does not participate in this federation")
    if body.fhs_id == state.home:
        raise Conflict("the home FHS cannot leave its federation; delete the federation instead")
    leaving = state.members_homed_at(body.fhs_id)
    if not any("FedAdmin" in m["attributes"] for k, m in state.members.items() if k not in leaving):
        raise Conflict(
            f"no FedAdmin would be left: every FedAdmin is a member of {body.fhs_id}; "
            "grant FedAdmin to a member of another domain first"
        )
    return "participant.removed", {"fhs_id": body.fhs_id}, body.fhs_id


FEDERATION_COMMANDS: dict[str, Decide] = {
    "federation.delete": delete_federation,
    "member.grant": grant_member,
    "member.revoke": revoke_member,
    "attribute.define": define_attribute,
    "attribute.delete": delete_attribute,
    "attribute.grant": grant_attribute,
    "attribute.revoke": revoke_attribute,
    "participant.add": add_participant,
    "participant.remove": remove_participant,
}
