"""Shapes of partition queries and plan execution (Member API)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from scission_service.planner import PlanQuery, PlanResult

NAMED_LINKS: dict[str, tuple[float, float]] = {
    # name: (latency s, bandwidth bytes/s) — Scission (UCC 2020) network profiles
    "3g": (0.067, 1.6e6 / 8),
    "4g": (0.055, 12.4e6 / 8),
    "wired": (0.020, 20e6 / 8),
    "edge-cloud": (0.025, 50e6 / 8),
}


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LinkSpec(_Base):
    """A link's latency and bandwidth."""

    latency_s: float = Field(ge=0, le=60, allow_inf_nan=False)
    bandwidth_bytes_per_s: float = Field(gt=0, allow_inf_nan=False)


class ResourceLink(LinkSpec):
    """A link between two specific resources (encoded service ids)."""

    source: str = Field(max_length=300)
    destination: str = Field(max_length=300)


class NetworkProfile(_Base):
    """The network the plans are costed on: device uplink, edge-cloud link, optional per-resource links."""

    device_uplink: Literal["3g", "4g", "wired"] | LinkSpec = "4g"
    edge_cloud: Literal["edge-cloud", "wired"] | LinkSpec = "edge-cloud"
    links: list[ResourceLink] = Field(default_factory=list, max_length=256)

    def tier_links(self) -> dict[tuple[str, str], tuple[float, float]]:
        """Per tier pair: (latency s, bandwidth bytes/s)."""

        def resolve(value: str | LinkSpec) -> tuple[float, float]:
            return (
                NAMED_LINKS[value]
                if isinstance(value, str)
                else (value.latency_s, value.bandwidth_bytes_per_s)
            )

        uplink, backbone = resolve(self.device_uplink), resolve(self.edge_cloud)
        return {
            ("device", "edge"): uplink,
            ("device", "cloud"): uplink,
            ("edge", "cloud"): backbone,
            ("device", "device"): uplink,
            ("edge", "edge"): backbone,
            ("cloud", "cloud"): backbone,
        }


class PartitionQueryCreate(_Base):
    """Where should each part of ``model`` run, for this member, in this federation?"""

    model: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="the model name resources serve"
    )
    input_shape: list[int] | None = Field(None, min_length=1, max_length=8)
    network: NetworkProfile = Field(default_factory=NetworkProfile)
    query: PlanQuery = Field(default_factory=PlanQuery)
    benchmark_missing: bool = Field(
        False, description="start benchmarks where data is missing and wait for them"
    )
    benchmark_timeout_s: float = Field(300.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _positive_shape(self) -> PartitionQueryCreate:
        if self.input_shape is not None and any(d <= 0 or d > 100_000 for d in self.input_shape):
            raise ValueError("input_shape dimensions must be positive integers")
        return self


class ConsideredResource(_Base):
    """A resource the planner was given (the member may discover and invoke it)."""

    id: str
    name: str
    tier: str
    fhs: str
    model_digest: str


class ExcludedResource(_Base):
    """A discoverable resource that was left out, and why."""

    id: str
    name: str
    reason: str


class PartitionQueryRead(_Base):
    """A partition query's answer: ranked plans over resources named by encoded id and tier."""

    id: str
    federation: str
    model: str
    model_digest: str | None
    input_shape: list[int] | None
    network: NetworkProfile
    considered: list[ConsideredResource]
    excluded: list[ExcludedResource]
    missing_benchmarks: list[ExcludedResource]
    result: PlanResult | None
    message: str
    created_at: str


class HopReport(_Base):
    """One executed segment: predicted vs measured compute and transfer."""

    hop: int
    resource: str
    tier: str
    first_block: int
    last_block: int
    input_bytes: int
    output_bytes: int
    predicted_compute_s: float
    measured_compute_s: float
    predicted_transfer_s: float
    measured_transfer_s: float


class PlanExecutionRead(_Base):
    """The output tensor of an executed plan and what each hop cost."""

    query: str
    rank: int
    output: dict[str, Any]
    hops: list[HopReport]
    predicted_latency_s: float
    measured_latency_s: float
