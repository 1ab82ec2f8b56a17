"""Exact top-N partition search by label setting over (block boundary, resource, discrete state).

A label is a plan prefix that has run blocks ``[0, b)`` and whose last resource ``r`` is still running
(or, at ``b = 0``, the idle source device). From boundary ``b`` a label either runs block ``b`` on ``r``
or hops to a later resource and runs block ``b`` there. Discrete state that the future depends on is part
of the node key (source, required tiers/resources seen, hops, resources of the current tier, the
zero-time-quirk mode); accumulated metrics are kept in the label and compared by dominance. A label is
dropped only when ``top`` other labels of its node dominate it: better objective *for every completion*
and no worse on every constraint metric. All sums are folded in the canonical order the cost model
defines (segment = left fold of its resource's call overhead and its block times; totals = left fold of
segments/hops in chain order), so the values equal an enumerator's bit for bit, and objective comparisons
inside a tiny band are decided component-wise, so floating-point rounding never changes the answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from operator import itemgetter

from scission_service.planner.problem import TIER_RANK, TIERS, PlanningProblem
from scission_service.planner.query import PlanQuery

INF = math.inf
_BAND = 1e-11  # relative band in which objective order is decided component-wise


@dataclass(frozen=True)
class ClosedSegment:
    """A finished segment in a plan path: resource index, end boundary, bytes it sent on."""

    resource: int
    end: int
    sent_bytes: float


# A label is a plain tuple (cheap to build):
# (obj, closed, cc, seg, tier_closed, t, b) -- ``cc`` is the compute of the closed segments, ``seg``
# that of the open one, ``tier_closed`` that of the closed segments per tier (kept at 0 unless a compute
# cap needs it), ``t``/``b`` the transfer seconds/bytes. ``closed`` is a cons list
# ``(prev, resource, end, sent_bytes)`` (``None`` when empty), turned into ClosedSegments only for finals.
# The tie-break key (the plan's (resource id, end) pairs in chain order, then the open resource's id) is
# built from ``closed`` only when two labels of a node tie (``_tie_key``).
_Label = tuple
_OBJ, _CLOSED, _CC, _SEG, _TIER, _T, _B = range(7)
_OBJ_KEY = itemgetter(_OBJ)
_PARTS: dict[str, tuple[int, ...]] = {"latency": (_CC, _SEG, _T), "transfer": (_B,)}
_PARTS_WEIGHTED = (_CC, _SEG, _T, _B)
# a label with r's open segment closed at the current boundary: (cc, tier_closed, closed, t, b)
_Closing = tuple[float, tuple[float, float, float], tuple | None, float, float]


@dataclass
class Prepared:
    """The query compiled against the problem (indices, allowed moves, caps)."""

    problem: PlanningProblem
    query: PlanQuery
    ids: list[str]
    ranks: list[int]
    times: list[list[float]]
    overheads: list[float]  # charged once per segment: a segment's time folds [overhead, block times...]
    outs: list[list[float]]
    allow: list[list[bool]]
    sources: list[int]
    hop_targets: list[list[tuple[int, float, float]]]  # (target, latency_s, bandwidth)
    return_links: dict[tuple[int, int], tuple[float, float]]
    upload_cap: list[float]
    required_tier_bits: dict[int, int]
    required_resource_bits: dict[int, int]
    abs_caps: dict[int, float]
    pct_caps: dict[int, float]
    bytes_cap: float
    per_tier: int | None
    max_hops: int | None


@dataclass(frozen=True)
class Candidate:
    """A complete plan found by the search, with its canonical objective and tie-break key."""

    objective: float
    key: tuple
    source: int
    closed: tuple[ClosedSegment, ...]  # every segment incl. the last one; idle source has end 0
    return_bytes: float | None
    phantom_bytes: float | None = None


def objective_value(query: PlanQuery, latency: float, transfer_bytes: float) -> float:
    """The objective of a complete plan (the same formula the tests' enumerator uses)."""
    if query.objective == "latency":
        return latency
    if query.objective == "transfer":
        return transfer_bytes
    return query.latency_weight * latency + query.transfer_weight * (transfer_bytes / 1e6)


def _tie_key(ids: list[str], r: int, label: _Label) -> tuple:
    """The label's tie-break key: its closed segments' (resource id, end) in chain order, then (id of r,)."""
    return (*((ids[seg.resource], seg.end) for seg in _closed_segments(label[_CLOSED])), (ids[r],))


def _dominates(prep: Prepared, parts: tuple[int, ...], r: int, y: _Label, x: _Label) -> bool:
    """True when ``y`` is at least as good as ``x`` for every completion (``y`` sorts before ``x``)."""
    cur_rank = prep.ranks[r]
    if y[_OBJ] >= x[_OBJ] - _BAND * x[_OBJ]:
        # near-tie: decide component-wise so rounding cannot flip the final order
        for i in parts:
            if y[i] > x[i]:
                return False
        if _tie_key(prep.ids, r, y) > _tie_key(prep.ids, r, x):
            return False
    if prep.bytes_cap < INF and y[_B] > x[_B]:
        return False
    if cur_rank in prep.abs_caps and (y[_TIER][cur_rank] > x[_TIER][cur_rank] or y[_SEG] > x[_SEG]):
        return False
    for rank, percent in prep.pct_caps.items():
        if not _pct_dominates(y, x, rank, cur_rank, percent):
            return False
    return True


def _pct_dominates(y: _Label, x: _Label, rank: int, cur_rank: int, percent: float) -> bool:
    y_cc, y_seg, y_tier = y[_CC], y[_SEG], y[_TIER][rank]
    x_cc, x_seg, x_tier = x[_CC], x[_SEG], x[_TIER][rank]
    if y_cc == x_cc and y_seg == x_seg and y_tier == x_tier:
        return True
    ty = y_tier + (y_seg if rank == cur_rank else 0.0)
    tx = x_tier + (x_seg if rank == cur_rank else 0.0)
    slack_y = percent * (y_cc + y_seg) - 100.0 * ty
    slack_x = percent * (x_cc + x_seg) - 100.0 * tx
    scale = percent * (x_cc + x_seg) + 100.0 * tx + 1e-300
    return slack_y > slack_x + _BAND * scale


def _filter(prep: Prepared, parts: tuple[int, ...], r: int, labels: list[_Label]) -> list[_Label]:
    """Keep the labels of node resource ``r`` that fewer than ``top`` others dominate."""
    top = prep.query.top
    if len(labels) <= top:
        return labels
    # Sorting by objective alone (a float key: far cheaper) may keep an exact tie that a smaller tie-break
    # key dominates; keeping a label is always safe, only dropping one needs ``top`` dominators.
    labels.sort(key=_OBJ_KEY)
    kept = labels[:top]
    if prep.bytes_cap == INF and prep.ranks[r] not in prep.abs_caps and not prep.pct_caps:
        # simple: dominance is objective order with the component-wise near-tie rule (inlined _dominates)
        worst = kept[top - 1][_OBJ]
        for x in labels[top:]:
            x_obj = x[_OBJ]
            low = x_obj - _BAND * x_obj
            if worst < low:
                break  # sorted by objective: every later label is dominated by the first ``top``
            x_key: tuple | None = None
            count = 0
            for y in kept:
                if y[_OBJ] >= low:
                    if any(y[i] > x[i] for i in parts):
                        continue
                    x_key = x_key or _tie_key(prep.ids, r, x)
                    if _tie_key(prep.ids, r, y) > x_key:
                        continue
                count += 1
                if count >= top:
                    break
            if count < top:
                kept.append(x)
        return kept
    for x in labels[top:]:
        count = 0
        for y in kept:
            if _dominates(prep, parts, r, y, x):
                count += 1
                if count >= top:
                    break
        if count < top:
            kept.append(x)
    return kept


def search(prep: Prepared) -> list[Candidate]:
    """Run the label-setting search; return the complete plans that survive, best first."""
    problem, query = prep.problem, prep.query
    n_blocks = len(problem.blocks)
    need_tmask = sum(prep.required_tier_bits.values())
    need_rmask = sum(prep.required_resource_bits.values())
    quirk = problem.scission_zero_time_quirk
    ids, ranks, times, allow, outs = prep.ids, prep.ranks, prep.times, prep.allow, prep.outs
    overheads = prep.overheads
    upload_cap, bytes_cap, per_tier, max_hops = prep.upload_cap, prep.bytes_cap, prep.per_tier, prep.max_hops
    has_requirements = bool(prep.required_tier_bits or prep.required_resource_bits)
    latency_only = query.objective == "latency"
    parts = _PARTS.get(query.objective, _PARTS_WEIGHTED)
    track_tiers = bool(prep.abs_caps or prep.pct_caps)  # per-tier compute matters only to compute caps
    # per-resource constants
    n_res = len(ids)
    res_cap = [prep.abs_caps.get(ranks[i], INF) for i in range(n_res)]
    res_tbits = [prep.required_tier_bits.get(ranks[i], 0) for i in range(n_res)]
    res_rbits = [prep.required_resource_bits.get(i, 0) for i in range(n_res)]
    res_alone = [frozenset((i,)) for i in range(n_res)]
    # zero_tail[b]: some resource may run each block from b on in 0 s (the quirk's 0-byte hops need that)
    zero_tail = [True] * (n_blocks + 1)
    for b in range(n_blocks - 1, -1, -1):
        zero_tail[b] = zero_tail[b + 1] and any(allow[i][b] and times[i][b] == 0 for i in range(n_res))
    # node key: (r, src, tmask, rmask, hops, used, mode, segzero); mode/segzero only move with the quirk;
    # hops is the hop count under a hop limit, else 0/1 (whether any hop was made)
    nodes: dict[tuple, list[_Label]] = {}
    for src in prep.sources:
        key = (src, src, 0, 0, 0, res_alone[src], 0, quirk)
        nodes[key] = [(0.0, None, 0.0, 0.0, (0.0, 0.0, 0.0), 0.0, 0.0)]

    for blk in range(n_blocks):
        idle = blk == 0
        nxt: dict[tuple, list[_Label]] = {}
        for key, labels in nodes.items():
            r, src, tmask, rmask, hops, used, mode, segzero = key
            rank = ranks[r]
            # 1. run block ``blk`` on r (the idle source starts running here)
            if allow[r][blk]:
                t = times[r][blk]
                # the idle source's open segment is still 0.0: its first block brings the call overhead
                t_run = overheads[r] + t if idle else t
                if not (mode == 1 and t != 0):
                    new_mode = 0 if (mode == 2 and t != 0) else mode
                    cap = res_cap[r]
                    nkey = (
                        r, src, tmask | res_tbits[r], rmask | res_rbits[r], hops, used, new_mode,
                        segzero and t == 0,
                    )  # fmt: skip
                    bucket = nxt.setdefault(nkey, [])
                    if latency_only and not cap < INF:  # the common case, kept lean
                        bucket += [
                            ((cc + (seg := seg0 + t_run)) + tt, closed, cc, seg, tier, tt, b)
                            for _, closed, cc, seg0, tier, tt, b in labels
                        ]
                    else:
                        for _, closed, cc, seg0, tier, tt, b in labels:
                            seg = seg0 + t_run
                            if tier[rank] + seg > cap:
                                continue
                            latency_s = (cc + seg) + tt
                            obj = latency_s if latency_only else objective_value(query, latency_s, b)
                            bucket.append((obj, closed, cc, seg, tier, tt, b))
            # 2. hop to a later resource and run block ``blk`` there
            if max_hops is not None and hops >= max_hops:
                continue
            sent = problem.input_bytes if idle else outs[r][blk - 1]
            # without a hop limit only "no hop yet" vs "some hop" matters (the quirk and _finish ask just
            # that), so chains that differ only in their hop count share one node
            next_hops = hops + 1 if max_hops is not None else 1
            closing: list[_Closing] | None = None
            for r2, latency, bandwidth in prep.hop_targets[r]:
                if r2 in used or not allow[r2][blk]:
                    continue
                rank2 = ranks[r2]
                if rank2 == rank:
                    if per_tier is not None and len(used) + 1 > per_tier:
                        continue
                    used2 = used | {r2}
                else:
                    used2 = res_alone[r2]
                    if has_requirements and _misses_requirement(prep, rank2, tmask, rmask):
                        continue
                t2 = times[r2][blk]
                # Scission's quirk: the first hop, or a hop from a resource that computed something, carries
                # 0 bytes when every later block takes 0 s (mode 1 = "all later blocks are 0 s",
                # mode 2 = "some later block is not"); any other hop carries its bytes.
                # Where no chain can run every block from ``blk`` on in 0 s (``zero_tail``), the "0 bytes"
                # branch can never complete and the "some later block is not" claim always holds (mode 0).
                if quirk and (hops == 0 or not segzero) and mode == 0:
                    branches: tuple[tuple[float, int], ...] = (
                        ((0.0, 1), (sent, 2)) if zero_tail[blk] else ((sent, 0),)
                    )
                else:
                    branches = ((sent, mode),)
                cap2 = res_cap[r2]
                seg2 = overheads[r2] + t2
                for eff, hop_mode in branches:
                    if eff > upload_cap[r]:
                        continue
                    if hop_mode == 1 and t2 != 0:
                        continue
                    run_mode = 0 if (hop_mode == 2 and t2 != 0) else hop_mode
                    hop_s = latency + (eff / bandwidth)
                    if seg2 > cap2:
                        continue
                    nkey = (
                        r2, src, tmask | res_tbits[r2], rmask | res_rbits[r2], next_hops, used2, run_mode,
                        quirk and t2 == 0,
                    )  # fmt: skip
                    bucket = nxt.setdefault(nkey, [])
                    if closing is None:  # what closing r's segment at ``blk`` makes of each label
                        closing = [
                            (cc + seg, _add_at(tier, rank, seg) if track_tiers else tier, closed, tt, b)
                            for _, closed, cc, seg, tier, tt, b in labels
                        ]
                    if latency_only and not bytes_cap < INF and not cap2 < INF:  # the common case, kept lean
                        bucket += [
                            ((cc + seg2) + (tt := t0 + hop_s), (closed, r, blk, eff), cc, seg2, tier_closed,
                             tt, b0 + eff)
                            for cc, tier_closed, closed, t0, b0 in closing
                        ]  # fmt: skip
                        continue
                    for cc, tier_closed, closed, t0, b0 in closing:
                        b2 = b0 + eff
                        if b2 > bytes_cap:
                            continue
                        if tier_closed[rank2] + seg2 > cap2:
                            continue
                        tt = t0 + hop_s
                        latency_s = (cc + seg2) + tt
                        obj = latency_s if latency_only else objective_value(query, latency_s, b2)
                        closed2 = (closed, r, blk, eff)
                        bucket.append((obj, closed2, cc, seg2, tier_closed, tt, b2))
        nodes = {}
        for key, labels in nxt.items():
            if labels:
                nodes[key] = _filter(prep, parts, key[0], labels)

    return _finish(prep, nodes, need_tmask, need_rmask)


def _misses_requirement(prep: Prepared, new_rank: int, tmask: int, rmask: int) -> bool:
    """True when moving up to ``new_rank`` would leave a required lower tier/resource unused forever."""
    for rank, bit in prep.required_tier_bits.items():
        if rank < new_rank and not tmask & bit:
            return True
    for r, bit in prep.required_resource_bits.items():
        if prep.ranks[r] < new_rank and not rmask & bit:
            return True
    return False


def _add_at(values: tuple[float, float, float], rank: int, amount: float) -> tuple[float, float, float]:
    if rank == 0:
        return (values[0] + amount, values[1], values[2])
    if rank == 1:
        return (values[0], values[1] + amount, values[2])
    return (values[0], values[1], values[2] + amount)


def _closed_segments(closed: tuple | None) -> list[ClosedSegment]:
    """Unroll a label's cons list of closed segments into chain order."""
    out: list[ClosedSegment] = []
    while closed is not None:
        closed, resource, end, sent = closed
        out.append(ClosedSegment(resource, end, sent))
    out.reverse()
    return out


def _finish(
    prep: Prepared, nodes: dict[tuple, list[_Label]], need_tmask: int, need_rmask: int
) -> list[Candidate]:
    problem, query = prep.problem, prep.query
    n_blocks = len(problem.blocks)
    out: list[Candidate] = []
    for key, labels in nodes.items():
        r, src, tmask, rmask, hops, _used, mode, segzero = key
        if mode == 2 or (tmask & need_tmask) != need_tmask or (rmask & need_rmask) != need_rmask:
            continue
        rank = prep.ranks[r]
        ret_bytes: float | None = None
        ret_s = 0.0
        if problem.return_to_source and r != src:
            link = prep.return_links.get((r, src))
            if link is None:
                continue
            ret_bytes = prep.outs[r][n_blocks - 1]
            if ret_bytes > prep.upload_cap[r]:
                continue
            ret_s = link[0] + (ret_bytes / link[1])
        phantom: float | None = None
        if problem.scission_zero_time_quirk and rank == TIER_RANK["edge"] and segzero and hops >= 1:
            phantom = prep.outs[r][n_blocks - 1]  # Scission counts a last 0-s edge's output as sent
            if phantom > prep.upload_cap[r]:
                continue
        for x in labels:
            compute = x[_CC] + x[_SEG]
            tier_time = _add_at(x[_TIER], rank, x[_SEG])
            transfer_s = x[_T] + ret_s if ret_bytes is not None else x[_T]
            transfer_b = x[_B] + ret_bytes if ret_bytes is not None else x[_B]
            if phantom is not None:
                transfer_b = transfer_b + phantom
            if transfer_b > prep.bytes_cap:
                continue
            if not compute_caps_hold(prep.abs_caps, prep.pct_caps, tier_time, compute):
                continue
            value = objective_value(query, compute + transfer_s, transfer_b)
            closed = (*_closed_segments(x[_CLOSED]), ClosedSegment(r, n_blocks, 0.0))
            key_full = tuple((prep.ids[seg.resource], seg.end) for seg in closed)
            out.append(Candidate(value, key_full, src, closed, ret_bytes, phantom))
    out.sort(key=lambda cand: (cand.objective, cand.key))
    return out[: query.top]


def compute_caps_hold(
    abs_caps: dict[int, float], pct_caps: dict[int, float], tier_time: tuple[float, ...], compute: float
) -> bool:
    """Check per-tier compute caps on a complete plan (Scission's formula for percentages)."""
    for rank, cap in abs_caps.items():
        if tier_time[rank] > cap:
            return False
    for rank, percent in pct_caps.items():
        if compute != 0 and (tier_time[rank] / compute) * 100 > percent:
            return False
    return True


__all__ = ["Candidate", "ClosedSegment", "Prepared", "TIERS", "TIER_RANK", "compute_caps_hold", "search"]
