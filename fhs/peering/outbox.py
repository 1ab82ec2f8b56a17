"""Outbox cursors: per (federation, participant), the last event sequence the participant acknowledged.

The home's event log is the outbox itself; a cursor is created in the same batch that commits the
``participant.added`` event, so a participant can never miss the federation it just joined.
"""

from __future__ import annotations

from fhs.store.base import Put

OUTBOX = "outbox"


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
