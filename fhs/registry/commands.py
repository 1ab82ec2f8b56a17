"""Registry commands as pure decisions, run by the federation's home FHS (see fhs.federations.commands).

Service documents are replicated to every participating FHS *without* their endpoint URL: the endpoint
stays in the owning FHS's local ``endpoints:{fid}`` collection and never leaves it (DESIGN §4).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from fhs.errors import Conflict, Forbidden, InvalidInput, NotFound
from fhs.federations.commands import Decide, Plan, parse_args, require_attribute, require_member
from fhs.federations.schemas import FedBase
from fhs.federations.state import FederationState
from fhs.identity.schemas import Principal
from fhs.ids import service_home
from fhs.policy.service import validate_policy
from fhs.registry.schemas import Metadata

REPLICATED_FIELDS = {
    "id",
    "name",
    "type",
    "metadata",
    "fhs",
    "owner",
    "created_at",
    "updated_at",
    "discovery_policy",
    "access_policy",
}


class ServiceDoc(FedBase):
    """A replicated service document (no endpoint)."""

    id: str = Field(max_length=300)
    name: str = Field(min_length=1, max_length=128)
    type: str = Field(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")
    metadata: Metadata
    fhs: str = Field(max_length=64)
    owner: dict[str, str]
    created_at: str = Field(max_length=64)
    updated_at: str = Field(max_length=64)
    discovery_policy: str = Field(max_length=65536)
    access_policy: str = Field(max_length=65536)


class ServiceChanges(FedBase):
    """Changes to a replicated service document."""

    id: str = Field(max_length=300)
    changes: dict[str, Any]
    updated_at: str = Field(max_length=64)


def _require_owner(state: FederationState, actor: Principal, sid: str, via: str) -> dict[str, Any]:
    require_member(state, actor, via)
    service = state.services.get(sid)
    if service is None:
        raise NotFound("no such service")
    if service["owner"]["key"] != actor.key:
        raise Forbidden("only the service's owner may change it")
    return service


def register_service(state: FederationState, actor: Principal, args: dict[str, Any], via: str) -> Plan:
    """Register a service owned by ``actor`` at FHS ``via`` (ServiceOwner)."""
    doc = parse_args(ServiceDoc, args)
    require_attribute(state, actor, "ServiceOwner", via)
    if doc.fhs != via or service_home(doc.id) != via:
        raise Forbidden("a service is registered through the FHS that holds its endpoint")
    if doc.owner.get("key") != actor.key:
        raise Forbidden("a service is owned by the member who registers it")
    if doc.id in state.services:
        raise Conflict("a service with this id exists")
    validate_policy(doc.discovery_policy)
    validate_policy(doc.access_policy)
    return "service.registered", {"service": doc.model_dump()}, doc.id


def update_service(state: FederationState, actor: Principal, args: dict[str, Any], via: str) -> Plan:
    """Change a service's replicated fields (its owner, through the service's FHS)."""
    body = parse_args(ServiceChanges, args)
    service = _require_owner(state, actor, body.id, via)
    unknown = set(body.changes) - {"name", "metadata", "discovery_policy", "access_policy"}
    if unknown:
        raise InvalidInput(f"these fields cannot be changed: {', '.join(sorted(unknown))}")
    updated = parse_args(ServiceDoc, {**service, **body.changes, "updated_at": body.updated_at})
    for field in ("discovery_policy", "access_policy"):
        if field in body.changes:
            validate_policy(getattr(updated, field))
    return "service.updated", {"service": updated.model_dump()}, body.id


def delete_service(state: FederationState, actor: Principal, args: dict[str, Any], via: str) -> Plan:
    """Remove a service (its owner, or a FedAdmin)."""
    sid = str(args.get("id", ""))
    require_member(state, actor, via)
    service = state.services.get(sid)
    if service is None:
        raise NotFound("no such service")
    if service["owner"]["key"] != actor.key and not state.has_attribute(actor.key, "FedAdmin"):
        raise Forbidden("only the service's owner or a FedAdmin may remove it")
    return "service.deleted", {"id": sid}, sid


REGISTRY_COMMANDS: dict[str, Decide] = {
    "service.register": register_service,
    "service.update": update_service,
    "service.delete": delete_service,
}
