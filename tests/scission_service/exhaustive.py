"""Exhaustive reference enumerator for the planner (tests and bench only; deliberately naive).

It lists every chain (source device, then resources in non-decreasing tier order, each once, each running a
non-empty contiguous block range), evaluates each from the definitions in ``docs/planner.md`` and sorts by
(objective, key). It shares nothing with the planner's search except the input classes.
"""

from __future__ import annotations

from collections.abc import Iterator

from scission_service.planner import PlanningProblem, PlanQuery

RANK = {"device": 0, "edge": 1, "cloud": 2}

Chain = list[tuple[int, int, int]]  # (resource index, start, end); the idle source is (src, 0, 0)


def chains(problem: PlanningProblem, query: PlanQuery) -> Iterator[tuple[int, Chain]]:
    """Every chain the cost model admits, before constraint checks (only tier order and limits)."""
    res = problem.resources
    n = len(problem.blocks)
    per_tier = query.per_tier_limit

    def extend(chain: Chain, pos: int) -> Iterator[Chain]:
        if pos == n:
            yield list(chain)
            return
        last = chain[-1][0]
        hops = len(chain) - 1
        if query.max_hops is not None and hops >= query.max_hops:
            return
        used = {c[0] for c in chain}
        for j, r in enumerate(res):
            if j in used or RANK[r.tier] < RANK[res[last].tier]:
                continue
            same = sum(1 for c in chain if res[c[0]].tier == r.tier)
            if per_tier is not None and same + 1 > per_tier:
                continue
            for end in range(pos + 1, n + 1):
                chain.append((j, pos, end))
                yield from extend(chain, end)
                chain.pop()

    for src, r in enumerate(res):
        if r.tier != "device":
            continue
        yield from ((src, c) for c in extend([(src, 0, 0)], 0))
        for end in range(1, n + 1):
            yield from ((src, c) for c in extend([(src, 0, end)], end))


def evaluate(
    problem: PlanningProblem, query: PlanQuery, src: int, chain: Chain
) -> tuple[float, tuple] | None:
    """(objective, key) of a chain, or None when it violates the query."""
    res = problem.resources
    ids = [r.id for r in res]
    if query.source is not None and ids[src] != query.source:
        return None
    for idx, start, end in chain:
        rid, tier = ids[idx], res[idx].tier
        if rid in query.exclude_resources or (
            query.only_resources is not None and rid not in query.only_resources
        ):
            return None
        if end > start and tier in query.forbid_tiers:
            return None
        for blk in range(start, end):
            for pin in query.pins:
                span = problem.blocks[blk]
                hit = (
                    pin.block == blk
                    if pin.block is not None
                    else span.first_layer <= pin.layer <= span.last_layer
                )
                if not hit:
                    continue
                target = pin.tier == tier if pin.tier is not None else pin.resource == rid
                if target == pin.forbid:
                    return None
    for pin in query.pins:  # a "must" pin whose block is not run anywhere it is allowed
        if pin.forbid:
            continue
        blocks = [
            b for b, span in enumerate(problem.blocks)
            if (pin.block == b if pin.block is not None else span.first_layer <= pin.layer <= span.last_layer)
        ]  # fmt: skip
        if not blocks:
            return None
    running = [(idx, s, e) for idx, s, e in chain if e > s]
    for tier in query.require_tiers:
        if not any(res[idx].tier == tier for idx, _, _ in running):
            return None
    for rid in query.require_resources:
        if not any(ids[idx] == rid for idx, _, _ in running):
            return None
    seg_times = []
    for idx, start, end in chain:
        total = res[idx].call_overhead_s if end > start else 0.0
        for blk in range(start, end):
            total += res[idx].block_times_s[blk]
        seg_times.append(total)
    compute = 0.0
    tier_time = {"device": 0.0, "edge": 0.0, "cloud": 0.0}
    for (idx, start, end), seg in zip(chain, seg_times, strict=True):
        if end > start:
            compute += seg
            tier_time[res[idx].tier] += seg
    transfer_s = 0.0
    transfer_b = 0.0
    for pos in range(len(chain) - 1):
        idx, start, end = chain[pos]
        nxt = chain[pos + 1][0]
        link = problem.link(ids[idx], ids[nxt])
        if link is None:
            return None
        sent = problem.input_bytes if end == 0 else res[idx].output_bytes[end - 1]
        # Scission's quirk: a hop carries 0 bytes when everything after it takes 0 s, unless the sender is
        # not the source and itself took 0 s (then the original keeps the bytes)
        if (
            problem.scission_zero_time_quirk
            and all(t == 0 for t in seg_times[pos + 1 :])
            and (pos == 0 or seg_times[pos] != 0)
        ):
            sent = 0.0
        if sent > query.upload_caps_bytes.get(ids[idx], float("inf")):
            return None
        transfer_s += link.latency_s + (sent / link.bandwidth_bytes_per_s)
        transfer_b += sent
    last = chain[-1][0]
    if problem.return_to_source and last != src:
        link = problem.link(ids[last], ids[src])
        if link is None:
            return None
        sent = res[last].output_bytes[-1]
        if sent > query.upload_caps_bytes.get(ids[last], float("inf")):
            return None
        transfer_s += link.latency_s + (sent / link.bandwidth_bytes_per_s)
        transfer_b += sent
    if (
        problem.scission_zero_time_quirk
        and len(chain) > 1
        and res[last].tier == "edge"
        and seg_times[-1] == 0
    ):
        phantom = res[last].output_bytes[-1]  # the original counts a last 0-s edge's output as sent
        if phantom > query.upload_caps_bytes.get(ids[last], float("inf")):
            return None
        transfer_b += phantom
    if query.max_total_transfer_bytes is not None and transfer_b > query.max_total_transfer_bytes:
        return None
    for cap in query.compute_caps:
        value = tier_time[cap.tier]
        if cap.max_seconds is not None and value > cap.max_seconds:
            return None
        if cap.max_percent is not None and compute != 0 and (value / compute) * 100 > cap.max_percent:
            return None
    latency = compute + transfer_s
    if query.objective == "latency":
        objective = latency
    elif query.objective == "transfer":
        objective = transfer_b
    else:
        objective = query.latency_weight * latency + query.transfer_weight * (transfer_b / 1e6)
    return objective, tuple((ids[idx], end) for idx, _, end in chain)


def enumerate_top(
    problem: PlanningProblem, query: PlanQuery, limit: int | None = None
) -> list[tuple[float, tuple]]:
    """The exact top-N (objective, key) pairs by brute force (optionally over the first ``limit`` chains)."""
    found = []
    for count, (src, chain) in enumerate(chains(problem, query)):
        if limit is not None and count >= limit:
            break
        scored = evaluate(problem, query, src, chain)
        if scored is not None:
            found.append(scored)
    found.sort()
    return found[: query.top]


def plan_key(plan: object) -> tuple:
    """The enumerator's key of a planner ``Plan``."""
    segments = plan.segments  # type: ignore[attr-defined]
    source = plan.source  # type: ignore[attr-defined]
    key = []
    if not segments or segments[0].resource != source:
        key.append((source, 0))
    key += [(seg.resource, seg.last_block + 1) for seg in segments]
    return tuple(key)
