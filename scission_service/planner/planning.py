"""Public entry point: compile a query against a problem, search, and shape the answer."""

from __future__ import annotations

import math
from typing import TypedDict

from scission_service.planner.problem import TIER_RANK, TIERS, PlannerResource, PlanningProblem, Tier
from scission_service.planner.query import PlanQuery
from scission_service.planner.result import HopPlan, Plan, PlanResult, SegmentPlan
from scission_service.planner.search import INF, Candidate, Prepared, objective_value, search

MAX_EXPLAIN_ATOMS = 24


def plan_partitions(*, problem: PlanningProblem, query: PlanQuery | None = None) -> PlanResult:
    """Return the exact top-N plans for ``query``; a feasible=False result when none exists."""
    query = query or PlanQuery()
    candidates = search(compile_query(problem=problem, query=query))
    constraints = describe_constraints(query)
    if candidates:
        plans = [_shape(problem, query, rank, cand) for rank, cand in enumerate(candidates, start=1)]
        return PlanResult(
            feasible=True, model=problem.model_name, objective=query.objective, plans=plans,
            message=f"{len(plans)} plan(s)", constraints=constraints, conflicting_constraints=[],
        )  # fmt: skip
    conflicting = _conflicting(problem, query)
    notes = _unknown_resources(problem, query)
    if not constraints:
        message = "no configuration satisfies the query: no chain of resources can run the model"
        message += " (check that there is a device to source the input and links between the resources)"
    else:
        named = conflicting or constraints
        message = "no configuration satisfies " + "; ".join(named)
    if notes:
        message += f" (unknown resources: {', '.join(notes)})"
    return PlanResult(
        feasible=False, model=problem.model_name, objective=query.objective, plans=[], message=message,
        constraints=constraints, conflicting_constraints=conflicting,
    )  # fmt: skip


def compile_query(*, problem: PlanningProblem, query: PlanQuery) -> Prepared:
    """Resolve names, pins and caps of ``query`` against ``problem`` (never raises for semantics)."""
    resources = problem.resources
    ids = [res.id for res in resources]
    index = {rid: i for i, rid in enumerate(ids)}
    ranks = [TIER_RANK[res.tier] for res in resources]
    n_blocks = len(problem.blocks)
    allowed = [
        rid not in query.exclude_resources and (query.only_resources is None or rid in query.only_resources)
        for rid in ids
    ]
    can_run = [allowed[i] and resources[i].tier not in query.forbid_tiers for i in range(len(ids))]
    allow = [[can_run[i]] * n_blocks for i in range(len(ids))]
    for pin in query.pins:
        blocks = _pinned_blocks(problem, pin.layer, pin.block)
        if not blocks and not pin.forbid:
            allow = [[False] * n_blocks for _ in ids]  # pinned to something that does not exist
            continue
        for i, res in enumerate(resources):
            target = (pin.tier == res.tier) if pin.tier is not None else (pin.resource == res.id)
            if target == pin.forbid:
                for blk in blocks:
                    allow[i][blk] = False
    sources = [
        i for i, res in enumerate(resources)
        if res.tier == "device" and allowed[i] and (query.source is None or res.id == query.source)
    ]  # fmt: skip
    hop_targets: list[list[tuple[int, float, float]]] = []
    for i in range(len(ids)):
        targets = []
        for j in range(len(ids)):
            if j == i or ranks[j] < ranks[i] or not can_run[j]:
                continue
            link = problem.link(ids[i], ids[j])
            if link is not None:
                targets.append((j, link.latency_s, link.bandwidth_bytes_per_s))
        hop_targets.append(targets)
    return_links = {}
    if problem.return_to_source:
        for i in range(len(ids)):
            for src in sources:
                link = problem.link(ids[i], ids[src])
                if link is not None and i != src:
                    return_links[(i, src)] = (link.latency_s, link.bandwidth_bytes_per_s)
    upload_cap = [query.upload_caps_bytes.get(rid, INF) for rid in ids]
    required_tier_bits = {TIER_RANK[tier]: 1 << TIER_RANK[tier] for tier in query.require_tiers}
    required_resource_bits: dict[int, int] = {}
    for n, rid in enumerate(dict.fromkeys(query.require_resources)):
        if rid not in index:
            sources = []  # a required resource that does not exist: nothing is feasible
            continue
        required_resource_bits[index[rid]] = 1 << n
    abs_caps: dict[int, float] = {}
    pct_caps: dict[int, float] = {}
    for cap in query.compute_caps:
        rank = TIER_RANK[cap.tier]
        if cap.max_seconds is not None:
            abs_caps[rank] = min(abs_caps.get(rank, INF), cap.max_seconds)
        else:
            assert cap.max_percent is not None
            pct_caps[rank] = min(pct_caps.get(rank, INF), cap.max_percent)
    return Prepared(
        problem=problem, query=query, ids=ids, ranks=ranks,
        times=[list(res.block_times_s) for res in resources],
        overheads=[res.call_overhead_s for res in resources],
        outs=[list(res.output_bytes) for res in resources],
        allow=allow, sources=sources, hop_targets=hop_targets, return_links=return_links,
        upload_cap=upload_cap, required_tier_bits=required_tier_bits,
        required_resource_bits=required_resource_bits, abs_caps=abs_caps, pct_caps=pct_caps,
        bytes_cap=INF if query.max_total_transfer_bytes is None else query.max_total_transfer_bytes,
        per_tier=query.per_tier_limit, max_hops=query.max_hops,
    )  # fmt: skip


def _pinned_blocks(problem: PlanningProblem, layer: int | None, block: int | None) -> list[int]:
    if block is not None:
        return [block] if block < len(problem.blocks) else []
    return [i for i, span in enumerate(problem.blocks) if span.first_layer <= (layer or 0) <= span.last_layer]


def describe_constraints(query: PlanQuery) -> list[str]:
    """One human-readable line per active constraint of ``query``."""
    return [text for text, _ in _atoms(query)]


def _atoms(query: PlanQuery) -> list[tuple[str, PlanQuery]]:
    """Each constraint with the query that results from dropping it."""
    atoms: list[tuple[str, PlanQuery]] = []

    def without(field: str, value: object) -> PlanQuery:
        return query.model_copy(update={field: value})

    if query.source is not None:
        atoms.append((f"source is {query.source!r}", without("source", None)))
    if query.only_resources is not None:
        atoms.append((f"only resources {sorted(query.only_resources)}", without("only_resources", None)))
    for i, rid in enumerate(query.exclude_resources):
        rest = query.exclude_resources[:i] + query.exclude_resources[i + 1 :]
        atoms.append((f"resource {rid!r} excluded", without("exclude_resources", rest)))
    for i, rid in enumerate(query.require_resources):
        rest = query.require_resources[:i] + query.require_resources[i + 1 :]
        atoms.append((f"resource {rid!r} must run a block", without("require_resources", rest)))
    for i, tier in enumerate(query.require_tiers):
        other_tiers = query.require_tiers[:i] + query.require_tiers[i + 1 :]
        atoms.append((f"tier {tier} must be used", without("require_tiers", other_tiers)))
    for i, tier in enumerate(query.forbid_tiers):
        other_tiers = query.forbid_tiers[:i] + query.forbid_tiers[i + 1 :]
        atoms.append((f"tier {tier} must not be used", without("forbid_tiers", other_tiers)))
    for i, pin in enumerate(query.pins):
        atoms.append((pin.describe(), without("pins", query.pins[:i] + query.pins[i + 1 :])))
    for rid, upload_cap in query.upload_caps_bytes.items():
        other_caps = {k: v for k, v in query.upload_caps_bytes.items() if k != rid}
        label = f"{rid!r} uploads <= {upload_cap:g} bytes per hop"
        atoms.append((label, without("upload_caps_bytes", other_caps)))
    if query.max_total_transfer_bytes is not None:
        atoms.append(
            (
                f"total transfer <= {query.max_total_transfer_bytes:g} bytes",
                without("max_total_transfer_bytes", None),
            )
        )
    for i, cap in enumerate(query.compute_caps):
        atoms.append(
            (cap.describe(), without("compute_caps", query.compute_caps[:i] + query.compute_caps[i + 1 :]))
        )
    if query.max_hops is not None:
        atoms.append((f"at most {query.max_hops} hops", without("max_hops", None)))
    return atoms


def _conflicting(problem: PlanningProblem, query: PlanQuery) -> list[str]:
    """A minimal set of constraints that together admit no plan (deletion filter)."""
    atoms = _atoms(query)
    if not atoms or len(atoms) > MAX_EXPLAIN_ATOMS:
        return []
    probe = query.model_copy(update={"top": 1})
    if search(compile_query(problem=problem, query=_strip_all(probe))):
        current = probe
        keep: list[str] = []
        for text, _ in _atoms(probe):
            trial = _drop(current, text)
            if search(compile_query(problem=problem, query=trial)):
                keep.append(text)  # needed for infeasibility
            else:
                current = trial
        return keep
    return []


def _strip_all(query: PlanQuery) -> PlanQuery:
    current = query
    for text, _ in _atoms(query):
        current = _drop(current, text)
    return current


def _drop(query: PlanQuery, text: str) -> PlanQuery:
    for atom_text, reduced in _atoms(query):
        if atom_text == text:
            return reduced
    return query


def _unknown_resources(problem: PlanningProblem, query: PlanQuery) -> list[str]:
    known = {res.id for res in problem.resources}
    named = set(query.require_resources) | set(query.only_resources or []) | set(query.upload_caps_bytes)
    named |= set(query.exclude_resources) | {pin.resource for pin in query.pins if pin.resource}
    if query.source:
        named.add(query.source)
    return sorted(named - known)


class _PathCosts(TypedDict):
    """What :func:`evaluate_path` returns."""

    segments: list[tuple[PlannerResource, int, int, float]]
    hops: list[HopPlan]
    compute: float
    tier_time: dict[Tier, float]
    transfer_s: float
    transfer_b: float


def evaluate_path(problem: PlanningProblem, query: PlanQuery, cand: Candidate) -> _PathCosts:
    """Canonical costs of a candidate, folded in chain order (shared by the shaping code)."""
    ids = dict(enumerate(problem.resources))
    segments: list[tuple[PlannerResource, int, int, float]] = []
    hops: list[HopPlan] = []
    compute = 0.0
    tier_time = dict.fromkeys(TIERS, 0.0)
    transfer_s = 0.0
    transfer_b = 0.0
    start = 0
    closed = cand.closed
    for pos, seg in enumerate(closed):
        res = ids[seg.resource]
        if seg.end > start:
            seg_s = res.call_overhead_s
            for blk in range(start, seg.end):
                seg_s += res.block_times_s[blk]
            compute += seg_s
            tier_time[res.tier] += seg_s
            segments.append((res, start, seg.end - 1, seg_s))
        if pos + 1 < len(closed):
            nxt = ids[closed[pos + 1].resource]
            link = problem.link(res.id, nxt.id)
            assert link is not None
            hop_s = link.transfer_s(seg.sent_bytes)
            transfer_s += hop_s
            transfer_b += seg.sent_bytes
            hops.append(HopPlan(source=res.id, destination=nxt.id, bytes=seg.sent_bytes, transfer_s=hop_s))
        start = seg.end
    if cand.return_bytes is not None:
        last, src = ids[closed[-1].resource], ids[cand.source]
        link = problem.link(last.id, src.id)
        assert link is not None
        hop_s = link.transfer_s(cand.return_bytes)
        transfer_s += hop_s
        transfer_b += cand.return_bytes
        hops.append(
            HopPlan(
                source=last.id, destination=src.id, bytes=cand.return_bytes, transfer_s=hop_s, kind="return"
            )
        )
    if cand.phantom_bytes is not None:
        last = ids[closed[-1].resource]
        transfer_b += cand.phantom_bytes
        hops.append(
            HopPlan(source=last.id, destination="", bytes=cand.phantom_bytes, transfer_s=0.0, kind="phantom")
        )
    return {
        "segments": segments, "hops": hops, "compute": compute, "tier_time": tier_time,
        "transfer_s": transfer_s, "transfer_b": transfer_b,
    }  # fmt: skip


def _shape(problem: PlanningProblem, query: PlanQuery, rank: int, cand: Candidate) -> Plan:
    costs = evaluate_path(problem, query, cand)
    compute = float(costs["compute"])
    transfer_s = float(costs["transfer_s"])
    transfer_b = float(costs["transfer_b"])
    latency = compute + transfer_s
    value = objective_value(query, latency, transfer_b)
    assert value == cand.objective or (math.isnan(value) and math.isnan(cand.objective))
    segments = [
        SegmentPlan(
            resource=res.id,
            tier=res.tier,
            first_block=first,
            last_block=last,
            first_layer=problem.blocks[first].first_layer,
            last_layer=problem.blocks[last].last_layer,
            compute_s=seg_s,
        )  # fmt: skip
        for res, first, last, seg_s in costs["segments"]
    ]
    return Plan(
        rank=rank, objective_value=value, latency_s=latency, compute_s=compute, transfer_s=transfer_s,
        transfer_bytes=transfer_b, source=problem.resources[cand.source].id, segments=segments,
        hops=costs["hops"], tier_compute_s=costs["tier_time"],
    )  # fmt: skip
