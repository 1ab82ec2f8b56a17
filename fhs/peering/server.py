"""The FHS-FHS API's domain logic: authenticate peers, accept and serve events, run forwarded commands and
invocations, publish signed keys (the router in fhs.peering.router is a thin adapter over this)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import jwt

from fhs.audit import service as audit_service
from fhs.commands import commit_event, run_at_home
from fhs.errors import Conflict, FHSError, Forbidden, NotFound, Unauthenticated
from fhs.federations.events import now_iso
from fhs.federations.state import (
    FEDERATIONS,
    FederationState,
    attributes_collection,
    events_log,
    load_excerpt,
    load_state,
    members_collection,
    services_collection,
)
from fhs.identity.pinned import UnknownSigningKey
from fhs.identity.schemas import Principal
from fhs.peering import service as peers_service
from fhs.peering.messages import sign_event, sign_keys, verify_event, verify_keys, verify_request
from fhs.peering.outbox import OUTBOX, PULLS, delivery_end, outbox_key
from fhs.peering.schemas import CommandForward
from fhs.registry.service import endpoints_collection
from fhs.store.base import Delete, Op, Put, Store

if TYPE_CHECKING:
    from fhs.runtime import Runtime

log = logging.getLogger(__name__)
MAX_EVENTS_PER_PULL = 500


async def refresh_peer_keys(runtime: Runtime, peer_id: str, *, force: bool = False) -> bool:
    """Fetch a peer's signed key set and pin it if one of its pinned keys signed it (once per cooldown)."""
    last = runtime.key_refreshes.get(peer_id, 0.0)
    if not force and time.monotonic() - last < runtime.settings.peer_key_refresh_s:
        return False
    runtime.key_refreshes[peer_id] = time.monotonic()
    peer = await peers_service.get_peer(store=runtime.store, fhs_id=peer_id)
    signed = await runtime.peers.fetch_keys(peer_id=peer_id)
    jwks = verify_keys(signed, jwks=peer["jwks"], peer=peer_id, leeway=runtime.settings.clock_skew_s)
    await peers_service.replace_peer_keys(store=runtime.store, fhs_id=peer_id, jwks=jwks)
    return True


async def _with_key_refresh(runtime: Runtime, peer_id: str, verify: Any) -> Any:
    peer = await peers_service.get_peer(store=runtime.store, fhs_id=peer_id)
    try:
        return verify(peer["jwks"])
    except UnknownSigningKey:
        try:
            refreshed = await refresh_peer_keys(runtime, peer_id)
        except FHSError as exc:
            log.warning("could not refresh keys of peer %s: %s", peer_id, exc.message)
            refreshed = False
        if not refreshed:
            raise
        peer = await peers_service.get_peer(store=runtime.store, fhs_id=peer_id)
        return verify(peer["jwks"])


async def record_refusal(runtime: Runtime, *, fid: str | None, peer: str, action: str, reason: str) -> None:
    """Audit a refused FHS-FHS message in the operator's log (and the federation's, when it exists here)."""
    entry = audit_service.entry(
        actor=f"fhs:{peer[:64]}",
        action=f"peer.{action}",
        target=fid or "-",
        decision="deny",
        details={"reason": reason[:300]},
    )
    await audit_service.record(store=runtime.store, fid=None, entries=[entry])
    if fid is not None and await state_or_none(runtime, fid) is not None:
        await audit_service.record(store=runtime.store, fid=fid, entries=[entry])


def claimed_sender(assertion: str | None) -> str:
    """The unverified ``iss`` of an assertion, for audit entries only ("unknown" if unreadable)."""
    try:
        claimed = jwt.decode(assertion or "", options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        return "unknown"
    return str(claimed)[:64] if claimed else "unknown"


async def authenticate_peer(
    runtime: Runtime, *, assertion: str | None, method: str, path: str, body: bytes
) -> tuple[str, dict[str, Any]]:
    """The peer that sent this request and its assertion's claims; Unauthenticated otherwise."""
    if not assertion:
        raise Unauthenticated("the FHS-FHS API needs an X-FHS-Assertion signed by a peer FHS")
    claimed = claimed_sender(assertion)
    if not await peers_service.is_peer(store=runtime.store, fhs_id=claimed):
        raise Unauthenticated(f"{claimed!r} is not a peer of this FHS")
    me = runtime.settings.fhs_id
    claims: dict[str, Any] = await _with_key_refresh(
        runtime,
        claimed,
        lambda jwks: verify_request(
            assertion,
            jwks=jwks,
            peer=claimed,
            me=me,
            method=method,
            path=path,
            body=body,
            leeway=runtime.settings.clock_skew_s,
        ),
    )
    if not await runtime.peer_assertions.first_use(f"{claimed}|{claims['jti']}", float(claims["exp"])):
        raise Unauthenticated("peer assertion replayed (jti already used)")
    return claimed, claims


def _require_participant(state: FederationState, peer_id: str) -> None:
    if peer_id not in state.participants:
        raise Forbidden(f"{peer_id} does not participate in federation {state.id}")


async def receive_events(runtime: Runtime, *, peer_id: str, fid: str, tokens: list[str]) -> int:
    """Verify and apply events from a federation's home, in order and idempotently; return our sequence."""
    store, me = runtime.store, runtime.settings.fhs_id
    events = [
        await _with_key_refresh(
            runtime, peer_id, lambda jwks, t=t: verify_event(t, jwks=jwks, origin=peer_id)
        )
        for t in tokens
    ]
    if any(e.get("federation") != fid for e in events):
        raise Unauthenticated("an event in the batch belongs to another federation")
    for event in events:
        # The sequence comes from the same snapshot whose version guards the write: applying an event twice
        # (a push racing a pull, two replicas) makes the second batch fail instead of appending it again.
        state = await state_or_none(runtime, fid)
        local = int(state.federation["seq"]) if state else await store.log_length(events_log(fid))
        seq = int(event.get("seq", 0))
        if seq <= local:
            continue  # duplicate or replay: already applied
        if seq > local + 1:
            break  # gap: the rest comes with the next pull
        if local and state is None:
            break  # deleted here; nothing after the deletion applies
        if state is None:
            data = event.get("data", {})
            if (
                event.get("type") != "federation.created"
                or data.get("federation", {}).get("home_fhs") != peer_id
            ):
                raise Unauthenticated("a federation's first event must be its creation by its home")
            if not any(
                e.get("type") == "participant.added" and e.get("data", {}).get("fhs_id") == me for e in events
            ):
                raise Forbidden(f"{me} does not participate in federation {fid}")
        elif state.home != peer_id:
            raise Forbidden(f"{peer_id} is not the home of federation {fid}")
        removes_me = event.get("type") == "participant.removed" and event["data"].get("fhs_id") == me
        # taken out of the federation: forget the local copy in the same batch (the event log stays, so any
        # later event is ignored like after a deletion)
        forget = await _forget_ops(store, state) if removes_me and state is not None else []
        try:
            await commit_event(
                store=store, state=state, event=event, note=f"replicated from {peer_id}", extra_ops=forget
            )
        except Conflict:
            continue  # another replica or a concurrent pull applied it first
    return await store.log_length(events_log(fid))


async def _forget_ops(store: Store, state: FederationState) -> list[Op]:
    """Delete this FHS's copy of a federation it was removed from, endpoint URLs and pull status included."""
    fid = state.id
    ops: list[Op] = [Delete(FEDERATIONS, fid)]
    ops += [Delete(members_collection(fid), key) for key in state.members]
    ops += [Delete(attributes_collection(fid), key) for key in state.attributes]
    ops += [Delete(services_collection(fid), key) for key in state.services]
    ops += [Delete(endpoints_collection(fid), doc.key) for doc in await store.list(endpoints_collection(fid))]
    return [*ops, Delete(PULLS, fid)]


async def state_or_none(runtime: Runtime, fid: str) -> FederationState | None:
    """The federation's snapshot, or None when it does not exist (or no longer) here."""
    try:
        return await load_state(store=runtime.store, fid=fid)
    except NotFound:
        return None


async def serve_events(runtime: Runtime, *, peer_id: str, fid: str, after: int) -> list[str]:
    """Signed events after ``after`` of a federation homed here, for a participant (also after deletion)."""
    store, me = runtime.store, runtime.settings.fhs_id
    cursor = await store.get(OUTBOX, outbox_key(fid, peer_id))
    if cursor is None:
        raise NotFound(f"no federation {fid[:80]!r} shared with {peer_id}")
    end = await delivery_end(store, fid, peer_id)  # a removed participant gets nothing after its removal
    if after > int(cursor.value["acked"]) or cursor.value["last_error"]:
        # a pull acknowledges what the participant holds, and shows it is reachable again: resume pushing now
        acked = max(int(cursor.value["acked"]), min(after, end))
        await store.write(
            [
                Put(
                    OUTBOX,
                    outbox_key(fid, peer_id),
                    {
                        **cursor.value,
                        "acked": acked,
                        "failures": 0,
                        "next_try": 0.0,
                        "last_error": None,
                        "last_ok": now_iso(),
                    },
                )
            ]
        )
    if after >= end:
        return []
    entries = await store.read_log(events_log(fid), after=after, limit=min(MAX_EVENTS_PER_PULL, end - after))
    keyring = runtime.keyring
    return [sign_event(keyring, me=me, event=e.entry) for e in entries if e.entry.get("origin") == me]


async def handle_command(runtime: Runtime, *, peer_id: str, fid: str, body: CommandForward) -> int:
    """Run a command a participant forwarded for one of its members; returns the event's sequence."""
    state = await load_state(store=runtime.store, fid=fid)
    _require_participant(state, peer_id)
    actor = Principal(issuer=str(body.actor.get("issuer", "")), subject=str(body.actor.get("subject", "")))
    event = await run_at_home(
        runtime=runtime, fid=fid, actor=actor, name=body.name, args=body.args, via=peer_id
    )
    return int(event["seq"])


async def invocation_principal(
    runtime: Runtime, *, peer_id: str, fid: str, claims: dict[str, Any]
) -> Principal:
    """The member a peer's forwarded invocation acts for, checked against the federation's participants."""
    if claims.get("federation") != fid:
        raise Unauthenticated("the peer assertion was made for another federation")
    member = claims.get("member")
    if not isinstance(member, dict) or not member.get("iss") or not member.get("sub"):
        raise Unauthenticated("the peer assertion does not name a member")
    _require_participant(await load_excerpt(store=runtime.store, fid=fid), peer_id)
    return Principal(issuer=str(member["iss"]), subject=str(member["sub"]))


def signed_keys(runtime: Runtime) -> dict[str, list[str]]:
    """This FHS's JWKS signed with each published key (peers pin rotated keys from this)."""
    return {"signed_jwks": sign_keys(runtime.keyring, me=runtime.settings.fhs_id)}


async def require_participant(runtime: Runtime, *, peer_id: str, fid: str) -> None:
    """NotFound/Forbidden unless ``peer_id`` takes part in federation ``fid``."""
    _require_participant(await load_excerpt(store=runtime.store, fid=fid), peer_id)
