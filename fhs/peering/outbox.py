"""Outbox cursors: per (federation, participant), the last event sequence the participant acknowledged.

The home's event log is the outbox itself; a cursor is created in the same batch that commits the
``participant.added`` event, so a participant can never miss the federation it just joined. The batch of a
``participant.removed`` event caps the removed FHS's delivery at that event (a document of its own, which
the push loop never rewrites), so it learns of its removal and of nothing after it.
"""

from __future__ import annotations

from fhs.federations.state import events_log
from fhs.store.base import Put, Store

OUTBOX = "outbox"
DELIVERY_CAPS = "outbox_caps"
PULLS = "pulls"
"""Per federation homed elsewhere: the status of the last pull from its home."""


def outbox_key(fid: str, peer: str) -> str:
    """The cursor key of one federation towards one participant."""
    return f"{fid}|{peer}"


def outbox_cursor(fid: str, peer: str) -> Put:
    """The store operation creating a fresh cursor when a participant joins."""
    return Put(
        OUTBOX,
        outbox_key(fid, peer),
        {
            "fid": fid,
            "peer": peer,
            "acked": 0,
            "failures": 0,
            "next_try": 0.0,
            "last_ok": None,
            "last_error": None,
        },
        if_absent=True,
    )


def delivery_cap(fid: str, peer: str, last_seq: int) -> Put:
    """The store operation ending delivery to a removed participant after event ``last_seq``."""
    return Put(DELIVERY_CAPS, outbox_key(fid, peer), {"last_seq": last_seq}, if_absent=True)


async def delivery_end(store: Store, fid: str, peer: str) -> int:
    """The last event sequence ``peer`` may receive of ``fid``: the log's end, or its removal event."""
    end = await store.log_length(events_log(fid))
    cap = await store.get(DELIVERY_CAPS, outbox_key(fid, peer))
    return end if cap is None else min(end, int(cap.value["last_seq"]))
