"""The replication manager (STYLE #9): pushes events of federations homed here to every participant, pulls
events of federations homed elsewhere, and keeps per-federation, per-peer sync status.

Durability: the home's event log *is* the outbox. An event is in the log before the member's request is
answered; a cursor per (federation, participant) in the store records what the participant acknowledged, so
a restart, a crash or an unreachable peer loses nothing: delivery resumes from the cursor with exponential
backoff. Participants also pull from the home on every round (anti-entropy), so a peer that was down catches
up by itself. Several replicas sharing a store may push the same events; receivers apply them idempotently.

Every ``peer_key_refresh_s`` the loop also does the FHS's housekeeping: refresh peers' key sets, forget
expired request assertions and trim the audit logs to ``audit_keep_entries``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fhs.audit import service as audit_service
from fhs.errors import FHSError
from fhs.federations.events import now_iso
from fhs.federations.state import FEDERATIONS, events_log, load_state
from fhs.identity.keys import FHSKeyring
from fhs.observability import REPLICATION_LAST_OK_AGE, REPLICATION_PENDING
from fhs.peering import server
from fhs.peering.messages import sign_event
from fhs.peering.outbox import OUTBOX, PULLS, delivery_end, outbox_key
from fhs.peering.schemas import FederationSync, LinkStatus
from fhs.store.base import Put

if TYPE_CHECKING:
    from fhs.runtime import Runtime

log = logging.getLogger(__name__)
PUSH_BATCH = 200
MAX_BACKOFF_S = 30.0


class Replication:
    """Background push/pull loop of one FHS process."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_key_refresh = 0.0
        self._metrics_at = -float("inf")

    async def record_metrics(self, *, max_age_s: float = 5.0) -> None:
        """Set the replication gauges (pending events, age of the last successful sync) per peer; at most
        every ``max_age_s`` (a scrape reads every federation's status, so a flood of scrapes must not)."""
        if time.monotonic() - self._metrics_at < max_age_s:
            return
        self._metrics_at = time.monotonic()
        pending: dict[str, int] = {}
        last_ok: dict[str, float] = {}
        for sync in await self.status():
            for link in sync.links:
                pending[link.peer] = pending.get(link.peer, 0) + link.pending
                if link.last_ok:
                    age = time.time() - datetime.fromisoformat(link.last_ok).timestamp()
                    last_ok[link.peer] = min(age, last_ok.get(link.peer, age))
        for peer, count in pending.items():
            REPLICATION_PENDING.labels(peer).set(count)
        for peer, age in last_ok.items():
            REPLICATION_LAST_OK_AGE.labels(peer).set(age)

    def notify(self) -> None:
        """Something was committed here: push soon."""
        self._wake.set()

    def start(self) -> None:
        """Start the loop (in the app's lifespan)."""
        self._task = asyncio.create_task(self._loop(), name="fhs-replication")

    async def stop(self) -> None:
        """Stop the loop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        interval = self._runtime.settings.sync_interval_s
        while True:
            try:
                await self.sync_once()
            except Exception:  # the loop must survive anything; the next round retries
                log.exception("replication round failed")
            # asyncio.timeout, not wait_for: on 3.11 wait_for can lose a cancellation racing the wake-up
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            self._wake.clear()

    async def sync_once(self) -> None:
        """One round: reload keys, push what participants miss, pull what the homes have."""
        await self._reload_keyring()
        await self.push_all()
        await self.pull_all()
        if time.monotonic() - self._last_key_refresh > self._runtime.settings.peer_key_refresh_s:
            self._last_key_refresh = time.monotonic()
            await self._refresh_all_peer_keys()
            await self._runtime.peer_assertions.purge()
            runtime = self._runtime
            await audit_service.trim(store=runtime.store, keep=runtime.settings.audit_keep_entries)

    async def _reload_keyring(self) -> None:
        doc = await self._runtime.store.get("system", "keyring")
        if doc is not None and doc.value != self._runtime.keyring.export():
            self._runtime.keyring = FHSKeyring.load_from(doc.value)

    async def _refresh_all_peer_keys(self) -> None:
        for doc in await self._runtime.store.list("peers"):
            try:
                await server.refresh_peer_keys(self._runtime, doc.key, force=True)
            except FHSError as exc:
                log.info("key refresh of peer %s failed: %s", doc.key, exc.message)

    async def push_all(self) -> None:
        """Push pending events to every participant whose backoff has elapsed."""
        for doc in await self._runtime.store.list(OUTBOX):
            if doc.value["next_try"] <= time.time():
                await self._push(doc.value)

    async def _push(self, cursor: dict[str, Any]) -> None:
        runtime, fid, peer = self._runtime, cursor["fid"], cursor["peer"]
        store, me = runtime.store, runtime.settings.fhs_id
        acked = int(cursor["acked"])
        end = await delivery_end(store, fid, peer)
        if acked >= end:
            return
        entries = await store.read_log(events_log(fid), after=acked, limit=min(PUSH_BATCH, end - acked))
        tokens = [sign_event(runtime.keyring, me=me, event=e.entry) for e in entries]
        try:
            seq = await runtime.peers.push_events(peer_id=peer, fid=fid, events=tokens)
        except FHSError as exc:
            failures = int(cursor["failures"]) + 1
            update = {
                "failures": failures,
                "last_error": exc.message[:300],
                "next_try": time.time() + min(MAX_BACKOFF_S, 0.25 * 2**failures),
            }
        else:
            update = {
                "acked": max(acked, seq),
                "failures": 0,
                "next_try": 0.0,
                "last_ok": now_iso(),
                "last_error": None,
            }
        current = await store.get(OUTBOX, outbox_key(fid, peer))
        if current is not None:
            merged = {**current.value, **update}
            merged["acked"] = max(int(current.value["acked"]), int(merged["acked"]))
            await store.write([Put(OUTBOX, outbox_key(fid, peer), merged)])

    async def pull_all(self) -> None:
        """Pull from the home of every federation homed elsewhere."""
        me = self._runtime.settings.fhs_id
        for doc in await self._runtime.store.list(FEDERATIONS):
            if doc.value.get("home_fhs") != me:
                with contextlib.suppress(FHSError):
                    await self.pull(fid=doc.key)

    async def pull(self, *, fid: str, until_seq: int | None = None) -> None:
        """Fetch and apply what the home of ``fid`` has beyond our sequence (a few rounds if needed)."""
        runtime = self._runtime
        store = runtime.store
        home = (await load_state(store=store, fid=fid)).home
        try:
            for _ in range(20):
                local = await store.log_length(events_log(fid))
                if until_seq is not None and local >= until_seq:
                    break
                tokens = await runtime.peers.pull_events(peer_id=home, fid=fid, after=local)
                if not tokens:
                    break
                if await server.receive_events(runtime, peer_id=home, fid=fid, tokens=tokens) <= local:
                    break
        except FHSError as exc:
            await store.write(
                [
                    Put(
                        PULLS,
                        fid,
                        {
                            "home": home,
                            "last_ok": await self._last_pull_ok(fid),
                            "last_error": exc.message[:300],
                        },
                    )
                ]
            )
            raise
        if await server.state_or_none(runtime, fid) is not None:  # not if this pull removed us from it
            await store.write([Put(PULLS, fid, {"home": home, "last_ok": now_iso(), "last_error": None})])

    async def _last_pull_ok(self, fid: str) -> str | None:
        doc = await self._runtime.store.get(PULLS, fid)
        return doc.value.get("last_ok") if doc else None

    async def status(self) -> list[FederationSync]:
        """Per federation known here: home, sequence, state hash, and each replication link."""
        store, me = self._runtime.store, self._runtime.settings.fhs_id
        cursors: dict[str, list[dict[str, Any]]] = {}
        for doc in await store.list(OUTBOX):
            cursors.setdefault(doc.value["fid"], []).append(doc.value)
        fids = sorted({d.key for d in await store.list(FEDERATIONS)} | set(cursors))
        result = []
        for fid in fids:
            seq = await store.log_length(events_log(fid))
            state = await server.state_or_none(self._runtime, fid)
            links = [
                LinkStatus(
                    peer=c["peer"],
                    direction="push",
                    acked_seq=int(c["acked"]),
                    pending=max(0, await delivery_end(store, fid, c["peer"]) - int(c["acked"])),
                    last_ok=c["last_ok"],
                    last_error=c["last_error"],
                )
                for c in sorted(cursors.get(fid, []), key=lambda c: c["peer"])
            ]
            home = state.home if state else me
            if state is not None and home != me:
                pull = await store.get(PULLS, fid)
                links.append(
                    LinkStatus(
                        peer=home,
                        direction="pull",
                        acked_seq=seq,
                        pending=0,
                        last_ok=pull.value["last_ok"] if pull else None,
                        last_error=pull.value["last_error"] if pull else None,
                    )
                )
            result.append(
                FederationSync(
                    federation=fid,
                    home=home,
                    seq=seq,
                    state_hash=state.state_hash() if state else None,
                    links=links,
                )
            )
        return result
