"""The state of one federation as stored, loaded as one consistent snapshot, and its state hash.

Collections per federation ``fid``: ``federations`` (the federation document, whose version serialises every
write to the federation), ``members:{fid}``, ``attributes:{fid}``, ``services:{fid}``. The event log is
``events:{fid}`` and the audit log ``audit:{fid}``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from fhs.errors import InvalidInput, NotFound
from fhs.store.base import Document, Store

FEDERATIONS = "federations"
PREDEFINED_ATTRIBUTES = ("FedAdmin", "ServiceOwner", "Member")


def members_collection(fid: str) -> str:
    """Collection of the members of ``fid``."""
    return f"members:{fid}"


def attributes_collection(fid: str) -> str:
    """Collection of the attribute definitions of ``fid``."""
    return f"attributes:{fid}"


def services_collection(fid: str) -> str:
    """Collection of the services registered in ``fid``."""
    return f"services:{fid}"


def events_log(fid: str) -> str:
    """The event log of ``fid``."""
    return f"events:{fid}"


def audit_log(fid: str) -> str:
    """The audit log of ``fid``."""
    return f"audit:{fid}"


@dataclass
class FederationState:
    """A snapshot of one federation: its document (with version) and its members, attributes, services."""

    federation: dict[str, Any]
    version: int
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """The federation id."""
        return str(self.federation["id"])

    @property
    def home(self) -> str:
        """The FHS that sequences this federation's events."""
        return str(self.federation["home_fhs"])

    @property
    def removed_participants(self) -> list[str]:
        """FHSs that were taken out of the federation (they cannot rejoin it)."""
        return list(self.federation.get("removed_participants", []))

    def members_homed_at(self, fhs_id: str) -> set[str]:
        """Keys of the members whose home FHS is ``fhs_id``."""
        return {key for key, member in self.members.items() if member["home_fhs"] == fhs_id}

    @property
    def participants(self) -> list[str]:
        """The FHSs taking part in this federation (the home first)."""
        return list(self.federation.get("participants", [self.home]))

    def attributes_of(self, key: str) -> frozenset[str]:
        """The attributes granted to member ``key`` (empty if not a member)."""
        member = self.members.get(key)
        return frozenset(member["attributes"]) if member else frozenset()

    def is_member(self, key: str) -> bool:
        """True when ``key`` is a member of the federation."""
        return key in self.members

    def has_attribute(self, key: str, attribute: str) -> bool:
        """True when member ``key`` holds ``attribute``."""
        return attribute in self.attributes_of(key)

    def state_hash(self) -> str:
        """A digest of the replicated state (same on every FHS after quiescence)."""
        canonical = {
            "federation": {k: v for k, v in self.federation.items() if k not in {"seq"}},
            "members": self.members,
            "attributes": self.attributes,
            "services": self.services,
        }
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


async def load_state(*, store: Store, fid: str) -> FederationState:
    """Load a snapshot of federation ``fid``; NotFound when it does not exist."""
    doc = await store.get(FEDERATIONS, fid)
    if doc is None:
        raise NotFound(f"no federation {fid[:80]!r}")
    return FederationState(
        federation=doc.value,
        version=doc.version,
        members={d.key: d.value for d in await store.list(members_collection(fid))},
        attributes={d.key: d.value for d in await store.list(attributes_collection(fid))},
        services={d.key: d.value for d in await store.list(services_collection(fid))},
    )


async def load_excerpt(
    *, store: Store, fid: str, member: str | None = None, service: str | None = None
) -> FederationState:
    """A snapshot holding only the federation document and, when named and present, one member and one
    service: a few reads instead of whole collections, for per-call paths (invocations, peer checks).
    Decisions about the whole federation (commands, discovery, hashes) use :func:`load_state`."""
    doc, member_doc, service_doc = await asyncio.gather(
        _get_if_valid(store, FEDERATIONS, fid),
        _get_if_valid(store, members_collection(fid), member),
        _get_if_valid(store, services_collection(fid), service),
    )
    if doc is None:
        raise NotFound(f"no federation {fid[:80]!r}")
    return FederationState(
        federation=doc.value,
        version=doc.version,
        members={member: member_doc.value} if member and member_doc else {},
        services={service: service_doc.value} if service and service_doc else {},
    )


async def _get_if_valid(store: Store, collection: str, key: str | None) -> Document | None:
    """``store.get``, with no key, or one the store refuses (NUL, too long), read as absent: a caller's
    odd id is "not found", not a store error."""
    if key is None:
        return None
    try:
        return await store.get(collection, key)
    except InvalidInput:
        return None
