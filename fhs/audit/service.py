"""Audit entries (actor, action, target, decision, policy, time) and reading them back."""

from __future__ import annotations

from typing import Any

from fhs.federations.events import now_iso
from fhs.federations.state import FEDERATIONS, audit_log
from fhs.store.base import Append, Store

OPERATOR_LOG = "audit:_operator"


def entry(
    *,
    actor: str,
    action: str,
    target: str,
    decision: str = "allow",
    policy: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One audit entry; ``decision`` is ``allow`` or ``deny``."""
    return {
        "at": now_iso(),
        "actor": actor,
        "action": action,
        "target": target,
        "decision": decision,
        "policy": policy,
        "details": details or {},
    }


def federation_append(fid: str, audit_entry: dict[str, Any]) -> Append:
    """The store operation appending ``audit_entry`` to the audit log of ``fid``."""
    return Append(audit_log(fid), audit_entry)


async def record(*, store: Store, fid: str | None, entries: list[dict[str, Any]]) -> None:
    """Append decision entries to the audit log of ``fid`` (or the operator log when None) in one write.

    Decision entries are written without a disk flush of their own (the next durable write flushes them):
    one fsync per call would double the proxy's cost, and losing the last entries needs a power cut.
    """
    if entries:
        log = audit_log(fid) if fid else OPERATOR_LOG
        await store.write([Append(log, e) for e in entries], durable=False)


async def read(*, store: Store, fid: str | None, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
    """Audit entries of ``fid`` (or the operator log) with sequence above ``after``, oldest first."""
    log = audit_log(fid) if fid else OPERATOR_LOG
    return [{"seq": e.seq, **e.entry} for e in await store.read_log(log, after=after, limit=limit)]


async def trim(*, store: Store, keep: int) -> int:
    """Keep the newest ``keep`` entries of the operator log and of every federation's log; return how many
    entries were deleted. Sequence numbers stay as they were, so readers paging with ``after`` go on."""
    logs = [OPERATOR_LOG] + [audit_log(doc.key) for doc in await store.list(FEDERATIONS)]
    return sum([await store.trim_log(log, keep_last=keep) for log in logs])
