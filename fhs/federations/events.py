"""Federation events: every change to a federation is an event, applied by one pure function.

An event is a JSON document ``{"type", "federation", "seq", "origin", "actor", "at", "data"}``. The same
:func:`apply_event` materialises an event whether it was made here or replicated from a peer, so the
replicated state is exactly the state the origin computed. Applying returns store operations; the caller
writes them in one atomic batch together with the federation document bump and the log appends.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fhs.federations.state import (
    FEDERATIONS,
    PREDEFINED_ATTRIBUTES,
    FederationState,
    attributes_collection,
    members_collection,
    services_collection,
)
from fhs.store.base import Delete, Expect, Op, Put

Event = dict[str, Any]


def now_iso() -> str:
    """The current UTC time as ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def make_event(*, type: str, fid: str, seq: int, origin: str, actor: str, data: dict[str, Any]) -> Event:
    """Build an event document."""
    return {
        "type": type,
        "federation": fid,
        "seq": seq,
        "origin": origin,
        "actor": actor,
        "at": now_iso(),
        "data": data,
    }


def _federation_created(state: FederationState | None, event: Event) -> list[Op]:
    data, fid = event["data"], event["federation"]
    ops: list[Op] = [Put(FEDERATIONS, fid, {**data["federation"], "seq": event["seq"]}, if_absent=True)]
    ops += [
        Put(attributes_collection(fid), name, {"name": name, "description": desc, "predefined": True})
        for name, desc in zip(
            PREDEFINED_ATTRIBUTES,
            ("may administer the federation", "may register services", "every member"),
            strict=True,
        )
    ]
    creator = data["creator"]
    ops.append(
        Put(
            members_collection(fid),
            creator["key"],
            {
                **creator,
                "attributes": sorted({"FedAdmin", "ServiceOwner", "Member"}),
                "granted_by": event["actor"],
                "granted_at": event["at"],
            },
        )
    )
    return ops


def _federation_deleted(state: FederationState | None, event: Event) -> list[Op]:
    assert state is not None
    fid = event["federation"]
    ops: list[Op] = [Expect(FEDERATIONS, fid, state.version), Delete(FEDERATIONS, fid)]
    ops += [Delete(members_collection(fid), key) for key in state.members]
    ops += [Delete(attributes_collection(fid), key) for key in state.attributes]
    ops += [Delete(services_collection(fid), key) for key in state.services]
    return ops


def _member_granted(state: FederationState | None, event: Event) -> list[Op]:
    member = event["data"]["member"]
    return [
        Put(
            members_collection(event["federation"]),
            member["key"],
            {
                **member,
                "attributes": sorted(set(member.get("attributes", [])) | {"Member"}),
                "granted_by": event["actor"],
                "granted_at": event["at"],
            },
        )
    ]


def _member_revoked(state: FederationState | None, event: Event) -> list[Op]:
    assert state is not None
    fid, key = event["federation"], event["data"]["key"]
    ops: list[Op] = [Delete(members_collection(fid), key)]
    ops += [
        Delete(services_collection(fid), sid)
        for sid, svc in state.services.items()
        if svc["owner"]["key"] == key
    ]
    return ops


def _attribute_defined(state: FederationState | None, event: Event) -> list[Op]:
    data = event["data"]
    return [
        Put(
            attributes_collection(event["federation"]),
            data["name"],
            {"name": data["name"], "description": data.get("description", ""), "predefined": False},
        )
    ]


def _attribute_deleted(state: FederationState | None, event: Event) -> list[Op]:
    assert state is not None
    fid, name = event["federation"], event["data"]["name"]
    ops: list[Op] = [Delete(attributes_collection(fid), name)]
    for key, member in state.members.items():
        if name in member["attributes"]:
            ops.append(
                Put(
                    members_collection(fid),
                    key,
                    {**member, "attributes": [a for a in member["attributes"] if a != name]},
                )
            )
    return ops


def _attribute_granted(state: FederationState | None, event: Event) -> list[Op]:
    assert state is not None
    fid, data = event["federation"], event["data"]
    member = state.members[data["key"]]
    return [
        Put(
            members_collection(fid),
            data["key"],
            {**member, "attributes": sorted(set(member["attributes"]) | {data["name"]})},
        )
    ]


def _attribute_revoked(state: FederationState | None, event: Event) -> list[Op]:
    assert state is not None
    fid, data = event["federation"], event["data"]
    member = state.members[data["key"]]
    return [
        Put(
            members_collection(fid),
            data["key"],
            {**member, "attributes": sorted(set(member["attributes"]) - {data["name"]})},
        )
    ]


def _service_put(state: FederationState | None, event: Event) -> list[Op]:
    service = event["data"]["service"]
    return [Put(services_collection(event["federation"]), service["id"], service)]


def _service_deleted(state: FederationState | None, event: Event) -> list[Op]:
    return [Delete(services_collection(event["federation"]), event["data"]["id"])]


def _participant_added(state: FederationState | None, event: Event) -> list[Op]:
    return []  # the federation document itself changes: see apply_event


def _participant_removed(state: FederationState | None, event: Event) -> list[Op]:
    assert state is not None
    fid, leaving = event["federation"], state.members_homed_at(event["data"]["fhs_id"])
    ops: list[Op] = [Delete(members_collection(fid), key) for key in sorted(leaving)]
    ops += [
        Delete(services_collection(fid), sid)
        for sid, svc in state.services.items()
        if svc["owner"]["key"] in leaving
    ]
    return ops  # and the federation document: see apply_event


APPLIERS: dict[str, Callable[[FederationState | None, Event], list[Op]]] = {
    "federation.created": _federation_created,
    "federation.deleted": _federation_deleted,
    "member.granted": _member_granted,
    "member.revoked": _member_revoked,
    "attribute.defined": _attribute_defined,
    "attribute.deleted": _attribute_deleted,
    "attribute.granted": _attribute_granted,
    "attribute.revoked": _attribute_revoked,
    "service.registered": _service_put,
    "service.updated": _service_put,
    "service.deleted": _service_deleted,
    "participant.added": _participant_added,
    "participant.removed": _participant_removed,
}


def apply_event(state: FederationState | None, event: Event) -> list[Op]:
    """The store operations that materialise ``event`` on top of ``state`` (None only for creation).

    They include the federation document's update, conditional on the snapshot's version, so a batch built
    on a stale snapshot fails as a whole.
    """
    ops = APPLIERS[event["type"]](state, event)
    if state is None or event["type"] == "federation.deleted":
        return ops
    doc = {**state.federation, "seq": event["seq"]}
    if event["type"] == "participant.added":
        doc["participants"] = [*state.participants, event["data"]["fhs_id"]]
    if event["type"] == "participant.removed":
        gone = event["data"]["fhs_id"]
        doc["participants"] = [p for p in state.participants if p != gone]
        doc["removed_participants"] = [*state.removed_participants, gone]
    return [Put(FEDERATIONS, state.id, doc, if_version=state.version), *ops]
