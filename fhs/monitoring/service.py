"""Federation counters (invocations, denials, latency) derived from the audit log, and the federation view
a FedAdmin gets by collating every participating FHS over the FHS-FHS API."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

from fhs.errors import FHSError
from fhs.federations.commands import require_attribute
from fhs.federations.state import audit_log, load_state
from fhs.identity.schemas import Principal
from fhs.store.base import Store

if TYPE_CHECKING:
    from fhs.runtime import Runtime

PAGE = 1000


async def local_counters(*, store: Store, me: str, fid: str) -> dict[str, Any]:
    """This FHS's counters for ``fid``: decisions and completed invocations with latency percentiles."""
    counts = {"invocations": 0, "invoke_denials": 0, "discover_decisions": 0, "upstream_errors": 0}
    latencies: list[float] = []
    after = 0
    while True:
        page = await store.read_log(audit_log(fid), after=after, limit=PAGE)
        for item in page:
            entry = item.entry
            if entry["action"] == "invoke" and entry["decision"] == "deny":
                counts["invoke_denials"] += 1
            elif entry["action"] == "discover":
                counts["discover_decisions"] += 1
            elif entry["action"] == "invoke.completed":
                counts["invocations"] += 1
                latencies.append(float(entry["details"].get("latency_ms", 0.0)))
                counts["upstream_errors"] += int(entry["details"].get("status", 200) >= 500)
        if len(page) < PAGE:
            break
        after = page[-1].seq
    latency: dict[str, float] = {}
    if latencies:
        ordered = sorted(latencies)
        latency = {
            "p50_ms": statistics.median(ordered),
            "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        }
    return {"fhs": me, **counts, "latency": latency}


async def federation_view(*, runtime: Runtime, fid: str, principal: Principal) -> dict[str, Any]:
    """Counters of every participating FHS for a FedAdmin (a peer that does not answer is reported so)."""
    me = runtime.settings.fhs_id
    state = await load_state(store=runtime.store, fid=fid)
    require_attribute(state, principal, "FedAdmin", me)
    per_fhs = [await local_counters(store=runtime.store, me=me, fid=fid)]
    for peer in state.participants:
        if peer == me:
            continue
        try:
            per_fhs.append(await runtime.peers.fetch_monitoring(peer_id=peer, fid=fid))
        except FHSError as exc:
            per_fhs.append({"fhs": peer, "error": exc.message})
    totals = {
        key: sum(int(p.get(key, 0)) for p in per_fhs)
        for key in ("invocations", "invoke_denials", "discover_decisions", "upstream_errors")
    }
    return {"federation": fid, "totals": totals, "per_fhs": per_fhs}
