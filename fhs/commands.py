"""Run federation commands: at the federation's home FHS, or forwarded to it (DESIGN §3, home sequencing).

The home loads a snapshot, lets the command decide on it, and commits the resulting event in one atomic
batch (event log, materialised state, audit entry, and any local extra operations). A concurrent write fails
the batch and the command is decided again on a fresh snapshot, so nothing is lost or half-applied. At a
non-home participant the command is forwarded to the home over the FHS-FHS API, and the caller then pulls
the new events so it reads its own write.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fhs.audit import service as audit_service
from fhs.errors import Conflict, InvalidInput, NotFound, UpstreamError
from fhs.federations.commands import FEDERATION_COMMANDS, Decide, require_member
from fhs.federations.events import Event, apply_event, make_event
from fhs.federations.state import FederationState, events_log, load_state
from fhs.identity.schemas import Principal
from fhs.peering import service as peers_service
from fhs.peering.outbox import delivery_cap, outbox_cursor
from fhs.registry.commands import REGISTRY_COMMANDS
from fhs.store.base import Append, Op, Store

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from fhs.runtime import Runtime

COMMANDS: dict[str, Decide] = {**FEDERATION_COMMANDS, **REGISTRY_COMMANDS}
MAX_RETRIES = 8


async def commit_event(
    *, store: Store, state: FederationState | None, event: Event, note: str = "", extra_ops: Sequence[Op] = ()
) -> None:
    """Write ``event`` with its materialisation, its log entry and an audit entry, atomically."""
    data = event["data"]
    target = str(
        data.get("key")
        or data.get("name")
        or data.get("id")
        or data.get("fhs_id")
        or data.get("service", {}).get("id")
        or data.get("member", {}).get("key")
        or event["federation"]
    )
    details = {"seq": event["seq"], "origin": event["origin"]} | ({"note": note} if note else {})
    ops: list[Op] = [
        *apply_event(state, event),
        *extra_ops,
        Append(events_log(event["federation"]), event),
        audit_service.federation_append(
            event["federation"],
            audit_service.entry(actor=event["actor"], action=event["type"], target=target, details=details),
        ),
    ]
    await store.write(ops)


async def run_at_home(
    *,
    runtime: Runtime,
    fid: str,
    actor: Principal,
    name: str,
    args: dict[str, Any],
    via: str,
    extra_ops: Sequence[Op] = (),
) -> Event:
    """Decide and commit a command at this FHS, which must be the federation's home."""
    decide = COMMANDS.get(name)
    if decide is None:
        raise NotFound(f"no command {name[:64]!r}")
    store, me = runtime.store, runtime.settings.fhs_id
    for _ in range(MAX_RETRIES):
        state = await load_state(store=store, fid=fid)
        if state.home != me:
            raise Conflict(
                f"this FHS is not the home of federation {fid!r}; send the command to {state.home}"
            )
        event_type, data, _target = decide(state, actor, args, via)
        if event_type == "participant.added" and not await peers_service.is_peer(
            store=store, fhs_id=data["fhs_id"]
        ):  # checked after the decision, so only a FedAdmin learns who the home's peers are
            raise InvalidInput(
                f"{data['fhs_id']!r} is not a peer of the home FHS {me}; its operator must peer first"
            )
        event = make_event(
            type=event_type,
            fid=fid,
            seq=int(state.federation["seq"]) + 1,
            origin=me,
            actor=actor.key,
            data=data,
        )
        try:
            await commit_event(
                store=store,
                state=state,
                event=event,
                extra_ops=[*extra_ops, *_delivery_ops(event)],
                note="" if via == me else f"via {via}",
            )
        except Conflict:
            continue
        runtime.replication.notify()
        return event
    raise Conflict("the federation is being changed concurrently; try again")


def _delivery_ops(event: Event) -> list[Op]:
    """What only the home commits with an event: a joining FHS's outbox cursor, a removed one's cap."""
    fid, data = event["federation"], event["data"]
    if event["type"] == "participant.added":
        return [outbox_cursor(fid, data["fhs_id"])]
    if event["type"] == "participant.removed":
        return [delivery_cap(fid, data["fhs_id"], int(event["seq"]))]
    return []


async def run_command(
    *,
    runtime: Runtime,
    fid: str,
    principal: Principal,
    name: str,
    args: dict[str, Any],
    extra_ops: Sequence[Op] = (),
) -> None:
    """Run a member's command here if this FHS is the home, else forward it to the home and catch up."""
    me = runtime.settings.fhs_id
    state = await load_state(store=runtime.store, fid=fid)
    require_member(state, principal, me)
    if state.home == me:
        await run_at_home(
            runtime=runtime, fid=fid, actor=principal, name=name, args=args, via=me, extra_ops=extra_ops
        )
        return
    if extra_ops:
        await runtime.store.write(list(extra_ops))
    seq = await runtime.peers.forward_command(
        peer_id=state.home, fid=fid, actor=principal, name=name, args=args
    )
    try:
        await runtime.replication.pull(fid=fid, until_seq=seq)
    except UpstreamError as exc:  # committed at the home; the sync loop catches up
        log.warning("committed at %s but not yet pulled: %s", state.home, exc.message)
