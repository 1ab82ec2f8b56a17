"""The planning problem: resources with per-block timings, links between them, the input size.

Pure Python (no TensorFlow, no web framework). The cost model is the Scission one (Scission §III):
a hop costs ``latency_s + bytes / bandwidth_bytes_per_s``; a plan's latency is the sum of the block
times on each resource plus the sum of its hops.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from scission_service.benchmark_data import BenchmarkData

Tier = Literal["device", "edge", "cloud"]
TIERS: tuple[Tier, ...] = ("device", "edge", "cloud")
TIER_RANK: dict[str, int] = {tier: rank for rank, tier in enumerate(TIERS)}


class PlanningProblemError(ValueError):
    """The planner's input (resources, links, blocks) is malformed; the message says what to fix."""


@dataclass(frozen=True)
class Link:
    """A network link: one-way latency in seconds and bandwidth in bytes per second."""

    latency_s: float
    bandwidth_bytes_per_s: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.latency_s) and self.latency_s >= 0):
            raise PlanningProblemError(f"link latency must be a finite number >= 0, got {self.latency_s!r}")
        if not (math.isfinite(self.bandwidth_bytes_per_s) and self.bandwidth_bytes_per_s > 0):
            raise PlanningProblemError(
                f"link bandwidth must be a finite number > 0 bytes/s, got {self.bandwidth_bytes_per_s!r}"
            )

    def transfer_s(self, size_bytes: float) -> float:
        """Seconds to send ``size_bytes`` over this link (latency + size / bandwidth)."""
        return self.latency_s + (size_bytes / self.bandwidth_bytes_per_s)


@dataclass(frozen=True)
class BlockSpan:
    """The Keras layer range of one block (inclusive)."""

    first_layer: int
    last_layer: int


@dataclass(frozen=True)
class PlannerResource:
    """One candidate resource: its tier, the time of each block on it and each block's output size.

    ``call_overhead_s`` is the fixed cost of one segment call on this resource (the benchmark's
    ``call_overhead_s``, already taken off every block time), charged once per segment it runs: a segment's
    time is ``call_overhead_s + sum(block times)``. 0 for the original Scission data, which has none.
    """

    id: str
    tier: Tier
    block_times_s: tuple[float, ...]
    output_bytes: tuple[float, ...]
    call_overhead_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.id:
            raise PlanningProblemError("a resource id must not be empty")
        if self.tier not in TIER_RANK:
            raise PlanningProblemError(
                f"resource {self.id!r}: tier must be one of {TIERS}, got {self.tier!r}"
            )
        if len(self.block_times_s) != len(self.output_bytes):
            raise PlanningProblemError(
                f"resource {self.id!r}: as many block times as output sizes are needed"
            )
        for value in (*self.block_times_s, *self.output_bytes, self.call_overhead_s):
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise PlanningProblemError(
                    f"resource {self.id!r}: block times, output sizes and the call overhead must be finite "
                    "numbers >= 0"
                )


@dataclass(frozen=True)
class PlanningProblem:
    """Everything the planner needs besides the query.

    ``links`` maps a resource-id pair, ``tier_links`` a tier pair, to a :class:`Link`. A hop a→b uses the
    first of: link (a, b), link (b, a), tier link (tier a, tier b), tier link (tier b, tier a). A pair
    without any link cannot be a hop. ``return_to_source`` charges sending the final output back to the
    source device. ``scission_zero_time_quirk`` reproduces the original tool exactly: a hop after which
    every block runs in exactly 0 s carries 0 bytes (only for Scission compatibility).
    """

    resources: tuple[PlannerResource, ...]
    blocks: tuple[BlockSpan, ...]
    input_bytes: float
    links: Mapping[tuple[str, str], Link] = field(default_factory=dict)
    tier_links: Mapping[tuple[str, str], Link] = field(default_factory=dict)
    return_to_source: bool = False
    scission_zero_time_quirk: bool = False
    model_name: str = ""

    def __post_init__(self) -> None:
        if not self.resources:
            raise PlanningProblemError("at least one resource is needed")
        if not self.blocks:
            raise PlanningProblemError("the model needs at least one block")
        ids = [resource.id for resource in self.resources]
        duplicates = sorted({rid for rid in ids if ids.count(rid) > 1})
        if duplicates:
            raise PlanningProblemError(f"resource ids must be unique; repeated: {', '.join(duplicates)}")
        for resource in self.resources:
            if len(resource.block_times_s) != len(self.blocks):
                raise PlanningProblemError(
                    f"resource {resource.id!r} has {len(resource.block_times_s)} blocks, the model has "
                    f"{len(self.blocks)}: every resource must be benchmarked on the same partitioning"
                )
        if self.scission_zero_time_quirk and any(r.call_overhead_s for r in self.resources):
            raise PlanningProblemError(
                "the Scission zero-time quirk applies to Scission's own data, which has no call overhead"
            )
        if not (math.isfinite(self.input_bytes) and self.input_bytes >= 0):
            raise PlanningProblemError(
                f"input size must be a finite number >= 0 bytes, got {self.input_bytes!r}"
            )
        for pair in (*self.links, *self.tier_links):
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise PlanningProblemError(f"a link key must be a (source, destination) pair, got {pair!r}")
        for a, b in self.tier_links:
            if a not in TIER_RANK or b not in TIER_RANK:
                raise PlanningProblemError(f"tier link ({a}, {b}) names an unknown tier; tiers are {TIERS}")

    def link(self, source: str, destination: str) -> Link | None:
        """The link used for a hop from resource ``source`` to ``destination``, or None."""
        direct = self.links.get((source, destination)) or self.links.get((destination, source))
        if direct is not None:
            return direct
        tiers = {resource.id: resource.tier for resource in self.resources}
        ta, tb = tiers.get(source), tiers.get(destination)
        if ta is None or tb is None:
            return None
        return self.tier_links.get((ta, tb)) or self.tier_links.get((tb, ta))


def problem_from_benchmarks(
    benchmarks: Sequence[tuple[str, BenchmarkData]],
    *,
    links: Mapping[tuple[str, str], Link] | None = None,
    tier_links: Mapping[tuple[str, str], Link] | None = None,
    input_bytes: float | None = None,
    return_to_source: bool = False,
) -> PlanningProblem:
    """Build a problem from ``(resource_id, BenchmarkData)`` pairs of the same model and partitioning."""
    if not benchmarks:
        raise PlanningProblemError("no benchmark data given")
    _, first = benchmarks[0]
    spans = tuple(BlockSpan(block.first_layer, block.last_layer) for block in first.blocks)
    resources = []
    for resource_id, data in benchmarks:
        if data.model_name != first.model_name or data.model_digest != first.model_digest:
            raise PlanningProblemError(
                f"{resource_id!r} benchmarked model {data.model_name!r} ({data.model_digest[:12]}), "
                f"expected {first.model_name!r} ({first.model_digest[:12]}): plans never mix models"
            )
        own = tuple(BlockSpan(block.first_layer, block.last_layer) for block in data.blocks)
        if own != spans:
            raise PlanningProblemError(f"{resource_id!r} was benchmarked with a different block partitioning")
        resources.append(
            PlannerResource(
                id=resource_id,
                tier=data.resource.tier,
                block_times_s=tuple(block.median_s for block in data.blocks),
                output_bytes=tuple(float(block.output_bytes) for block in data.blocks),
                call_overhead_s=data.call_overhead_s,
            )
        )
    return PlanningProblem(
        resources=tuple(resources),
        blocks=spans,
        input_bytes=float(first.input_bytes if input_bytes is None else input_bytes),
        links=dict(links or {}),
        tier_links=dict(tier_links or {}),
        return_to_source=return_to_source,
        model_name=first.model_name,
    )


def resources_by_tier(resources: Iterable[PlannerResource]) -> dict[str, list[PlannerResource]]:
    """Group resources by tier, in tier order."""
    grouped: dict[str, list[PlannerResource]] = {tier: [] for tier in TIERS}
    for resource in resources:
        grouped[resource.tier].append(resource)
    return grouped
