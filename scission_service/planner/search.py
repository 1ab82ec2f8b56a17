"""Exact top-N partition search by label setting over (block boundary, resource, discrete state).

A label is a plan prefix that has run blocks ``[0, b)`` and whose last resource ``r`` is still running
(or, at ``b = 0``, the idle source device). From boundary ``b`` a label either runs block ``b`` on ``r``
or hops to a later resource and runs block ``b`` there. Discrete state that the future depends on is part
of the node key (source, required tiers/resources seen, hops, resources of the current tier, the
zero-time-quirk mode); accumulated metrics are kept in the label and compared by dominance. A label is
dropped only when ``top`` other labels of its node dominate it: better objective *for every completion*
and no worse on every constraint metric. All sums are folded in the canonical order the cost model
defines (segment = left fold of its block times; totals = left fold of segments/hops in chain order), so
the values equal an enumerator's bit for bit, and objective comparisons inside a tiny band are decided
component-wise, so floating-point rounding never changes the answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


class _Label:
    __slots__ = ("obj", "tkey", "closed", "cc", "seg", "tier_closed", "t", "b", "ret")

    def __init__(
        self,
        obj: float,
        tkey: tuple,
        closed: tuple[ClosedSegment, ...],
        cc: float,
        seg: float,
        tier_closed: tuple[float, float, float],
        t: float,
        b: float,
    ) -> None:
        self.obj = obj
        self.tkey = tkey
        self.closed = closed
        self.cc = cc  # compute of closed segments
        self.seg = seg  # compute of the open segment
        self.tier_closed = tier_closed
        self.t = t  # transfer seconds
        self.b = b  # transfer bytes
        self.ret: float | None = None  # bytes of the return hop (finals only)


@dataclass
class Prepared:
    """The query compiled against the problem (indices, allowed moves, caps)."""

    problem: PlanningProblem
    query: PlanQuery
    ids: list[str]
    ranks: list[int]
    times: list[list[float]]
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


def _objective_now(query: PlanQuery, cc: float, seg: float, t: float, b: float) -> float:
    return objective_value(query, (cc + seg) + t, b)


def _objective_parts(query: PlanQuery, label: _Label) -> tuple[float, ...]:
    if query.objective == "latency":
        return (label.cc, label.seg, label.t)
    if query.objective == "transfer":
        return (label.b,)
    return (label.cc, label.seg, label.t, label.b)


def _dominates(prep: Prepared, cur_rank: int, y: _Label, x: _Label) -> bool:
    """True when ``y`` is at least as good as ``x`` for every completion (``y`` sorts before ``x``)."""
    if y.obj >= x.obj - _BAND * x.obj:
        # near-tie: decide component-wise so rounding cannot flip the final order
        if any(
            a > c
            for a, c in zip(_objective_parts(prep.query, y), _objective_parts(prep.query, x), strict=True)
        ):
            return False
        if y.tkey > x.tkey:
            return False
    if prep.bytes_cap < INF and y.b > x.b:
        return False
    if cur_rank in prep.abs_caps and (y.tier_closed[cur_rank] > x.tier_closed[cur_rank] or y.seg > x.seg):
        return False
    for rank, percent in prep.pct_caps.items():
        if not _pct_dominates(y, x, rank, cur_rank, percent):
            return False
    return True


def _pct_dominates(y: _Label, x: _Label, rank: int, cur_rank: int, percent: float) -> bool:
    same = y.cc == x.cc and y.seg == x.seg and y.tier_closed[rank] == x.tier_closed[rank]
    if same:
        return True
    ty = y.tier_closed[rank] + (y.seg if rank == cur_rank else 0.0)
    tx = x.tier_closed[rank] + (x.seg if rank == cur_rank else 0.0)
    slack_y = percent * (y.cc + y.seg) - 100.0 * ty
    slack_x = percent * (x.cc + x.seg) - 100.0 * tx
    scale = percent * (x.cc + x.seg) + 100.0 * tx + 1e-300
    return slack_y > slack_x + _BAND * scale


def _filter(prep: Prepared, cur_rank: int, labels: list[_Label]) -> list[_Label]:
    """Keep the labels that fewer than ``top`` others dominate."""
    top = prep.query.top
    if len(labels) <= top:
        return labels
    labels.sort(key=lambda label: (label.obj, label.tkey))
    kept: list[_Label] = []
    simple = prep.bytes_cap == INF and cur_rank not in prep.abs_caps and not prep.pct_caps
    for x in labels:
        if len(kept) >= top:
            if simple and kept[top - 1].obj < x.obj - _BAND * x.obj:
                break  # sorted by objective: every later label is dominated by the first ``top``
            count = 0
            for y in kept:
                if _dominates(prep, cur_rank, y, x):
                    count += 1
                    if count >= top:
                        break
            if count >= top:
                continue
        kept.append(x)
    return kept


def search(prep: Prepared) -> list[Candidate]:
    """Run the label-setting search; return the complete plans that survive, best first."""
    problem, query = prep.problem, prep.query
    n_blocks = len(problem.blocks)
    need_tmask = sum(prep.required_tier_bits.values())
    need_rmask = sum(prep.required_resource_bits.values())
    quirk = problem.scission_zero_time_quirk
    # node key: (r, src, tmask, rmask, hops, used, mode, segzero); mode/segzero only move with the quirk
    nodes: dict[tuple, list[_Label]] = {}
    for src in prep.sources:
        key = (src, src, 0, 0, 0, frozenset((src,)), 0, quirk)
        nodes[key] = [_Label(0.0, ((prep.ids[src],),), (), 0.0, 0.0, (0.0, 0.0, 0.0), 0.0, 0.0)]

    for blk in range(n_blocks):
        idle = blk == 0
        nxt: dict[tuple, list[_Label]] = {}
        for key, labels in nodes.items():
            r, src, tmask, rmask, hops, used, mode, segzero = key
            rank = prep.ranks[r]
            # 1. run block ``blk`` on r (the idle source starts running here)
            if prep.allow[r][blk]:
                t = prep.times[r][blk]
                ok = not (mode == 1 and t != 0)
                new_mode = 0 if (mode == 2 and t != 0) else mode
                if ok:
                    cap = prep.abs_caps.get(rank, INF)
                    nkey = (
                        r, src, tmask | prep.required_tier_bits.get(rank, 0),
                        rmask | prep.required_resource_bits.get(r, 0), hops, used, new_mode,
                        segzero and t == 0,
                    )  # fmt: skip
                    bucket = nxt.setdefault(nkey, [])
                    for x in labels:
                        seg = x.seg + t
                        if x.tier_closed[rank] + seg > cap:
                            continue
                        bucket.append(
                            _Label(
                                _objective_now(query, x.cc, seg, x.t, x.b), x.tkey, x.closed, x.cc, seg,
                                x.tier_closed, x.t, x.b,
                            )
                        )  # fmt: skip
            # 2. hop to a later resource and run block ``blk`` there
            if prep.max_hops is not None and hops >= prep.max_hops:
                continue
            sent = problem.input_bytes if idle else prep.outs[r][blk - 1]
            for r2, latency, bandwidth in prep.hop_targets[r]:
                if r2 in used or not prep.allow[r2][blk]:
                    continue
                rank2 = prep.ranks[r2]
                if rank2 == rank:
                    if prep.per_tier is not None and len(used) + 1 > prep.per_tier:
                        continue
                    used2 = used | {r2}
                else:
                    used2 = frozenset((r2,))
                    if _misses_requirement(prep, rank2, tmask, rmask):
                        continue
                t2 = prep.times[r2][blk]
                # Scission's quirk: the first hop, or a hop from a resource that computed something, carries
                # 0 bytes when every later block takes 0 s (mode 1 = "all later blocks are 0 s",
                # mode 2 = "some later block is not"); any other hop carries its bytes.
                if quirk and (hops == 0 or not segzero) and mode == 0:
                    branches = [(0.0, 1), (sent, 2)]
                else:
                    branches = [(sent, mode)]
                for eff, hop_mode in branches:
                    if eff > prep.upload_cap[r]:
                        continue
                    if hop_mode == 1 and t2 != 0:
                        continue
                    run_mode = 0 if (hop_mode == 2 and t2 != 0) else hop_mode
                    hop_s = latency + (eff / bandwidth)
                    cap2 = prep.abs_caps.get(rank2, INF)
                    if t2 > cap2:
                        continue
                    nkey = (
                        r2, src, tmask | prep.required_tier_bits.get(rank2, 0),
                        rmask | prep.required_resource_bits.get(r2, 0), hops + 1, used2, run_mode,
                        quirk and t2 == 0,
                    )  # fmt: skip
                    bucket = nxt.setdefault(nkey, [])
                    for x in labels:
                        b2 = x.b + eff
                        if b2 > prep.bytes_cap:
                            continue
                        tier_closed = _add_at(x.tier_closed, rank, x.seg)
                        if tier_closed[rank2] + t2 > cap2:
                            continue
                        closed = (*x.closed, ClosedSegment(r, blk, eff))
                        cc = x.cc + x.seg
                        tt = x.t + hop_s
                        seg = 0.0 + t2
                        bucket.append(
                            _Label(
                                _objective_now(query, cc, seg, tt, b2),
                                (*x.tkey[:-1], (prep.ids[r], blk), (prep.ids[r2],)),
                                closed, cc, seg, tier_closed, tt, b2,
                            )
                        )  # fmt: skip
        nodes = {}
        for key, labels in nxt.items():
            if labels:
                nodes[key] = _filter(prep, prep.ranks[key[0]], labels)

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
            compute = x.cc + x.seg
            tier_time = _add_at(x.tier_closed, rank, x.seg)
            transfer_s = x.t + ret_s if ret_bytes is not None else x.t
            transfer_b = x.b + ret_bytes if ret_bytes is not None else x.b
            if phantom is not None:
                transfer_b = transfer_b + phantom
            if transfer_b > prep.bytes_cap:
                continue
            if not compute_caps_hold(prep.abs_caps, prep.pct_caps, tier_time, compute):
                continue
            value = objective_value(query, compute + transfer_s, transfer_b)
            closed = (*x.closed, ClosedSegment(r, n_blocks, 0.0))
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
